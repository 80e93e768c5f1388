"""The bad-input catalogue: every case is a wrong or hostile input to the command line or the Python
API. Each must end with exit status 2 (or a MasError from the API) and one clear line naming the
problem, no traceback, and leave every file in the test's world byte-identical (nothing written,
nothing replaced). Then the security cases: a pickled payload never runs, a planted symlink is never
written through, nothing escapes its folder, a killed batch keeps what was finished, and two
processes writing into one folder leave whole files."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from mas_engine.catalogue import MODELS_DIR
from mas_engine.checkpoint import save_checkpoint
from mas_cli.cli import main
from mas_engine.dataset import MonocularConfig, build_monocular_set, save_monocular_set
from mas_engine.errors import MasError
from mas_engine.model import ModelConfig, MotionDenoiser
from mas_engine.motion_io import save_motion
from rigs.keypoints import HUMAN16

from conftest import tiny_card, walking_figure

ROOT = Path(__file__).resolve().parents[1]
MARKER = "PWNED_BY_A_DATA_FILE"


def _motion_npz(path, **over):
    """A motion file with some keys replaced (over) or removed (value None)."""
    d = {"joints": walking_figure(40).astype(np.float32), "fps": np.float32(30), "joint_names": np.array(HUMAN16.joints),
         "parents": np.array(HUMAN16.parents, np.int32), "layout": np.array("human16")}
    d.update(over)
    np.savez(path, **{k: v for k, v in d.items() if v is not None})


def _hostile_h5(path: Path, marker: Path) -> None:
    """An HDF5 file laid out like pandas' 'fixed' store of an object column: a pickled payload that
    would create ``marker`` if anything unpickled it (what pandas.read_hdf does)."""
    import pickle

    import h5py

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))
    blob = np.frombuffer(pickle.dumps(Payload(), protocol=0), np.uint8)
    with h5py.File(path, "w") as h:
        g = h.create_group("df_with_missing")
        g.attrs["pandas_type"] = np.bytes_(b"frame")
        ds = g.create_dataset("block0_values", (1,), dtype=h5py.vlen_dtype(np.uint8))
        ds[0] = blob
        ds.attrs["CLASS"], ds.attrs["PSEUDOATOM"] = np.bytes_(b"VLARRAY"), np.bytes_(b"object")
        t = h.create_group("table_like")
        t.attrs["values_block_0_kind"] = np.bytes_(pickle.dumps(Payload(), protocol=0))


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Every bad file the cases use, made once; the cases must leave all of it untouched."""
    w = tmp_path_factory.mktemp("world")
    torch.manual_seed(0)
    cfg = ModelConfig(num_joints=16, max_frames=48, width=32, layers=1, heads=2, ff_width=64, diffusion_steps=20)
    save_checkpoint(w / "tiny", MotionDenoiser(cfg), tiny_card())
    card = json.loads((w / "tiny.json").read_text())
    for name, change in {"fps0": {"fps": 0}, "fpsinf": {"fps": float("inf")},
                         "huge": {"model": dict(card["model"], max_frames=10 ** 9)},
                         "wide": {"model": dict(card["model"], width=10 ** 7)},
                         "noformat": {"format": None}, "newer": {"version": 99},
                         "scale0": {"normalisation": {"scale": 0}}}.items():
        c = {k: v for k, v in dict(card, **change).items() if v is not None}
        (w / f"{name}.json").write_text(json.dumps(c))
        shutil.copy(w / "tiny.safetensors", w / f"{name}.safetensors")
    (w / "notjson.json").write_text("{not json")
    shutil.copy(w / "tiny.safetensors", w / "notjson.safetensors")
    shutil.copy(w / "tiny.json", w / "garbage.json")
    (w / "garbage.safetensors").write_bytes(b"\x00" * 64)
    small = ModelConfig(num_joints=16, max_frames=48, width=16, layers=1, heads=2, ff_width=32, diffusion_steps=20)
    save_checkpoint(w / "other", MotionDenoiser(small), tiny_card())
    shutil.copy(w / "tiny.json", w / "mismatch.json")
    shutil.copy(w / "other.safetensors", w / "mismatch.safetensors")
    shutil.copy(w / "tiny.json", w / "fifo.json")
    os.mkfifo(w / "fifo.safetensors")
    os.mkfifo(w / "fifo.npz")
    # motions
    _motion_npz(w / "good.npz")
    (w / "empty.npz").write_bytes(b"")
    (w / "truncated.npz").write_bytes((w / "good.npz").read_bytes()[:300])
    _motion_npz(w / "nojoints.npz", joints=None)
    _motion_npz(w / "zeroframes.npz", joints=np.zeros((0, 16, 3), np.float32))
    _motion_npz(w / "oneframe.npz", joints=np.zeros((1, 16, 3), np.float32))
    _motion_npz(w / "names15.npz", joints=np.zeros((10, 15, 3), np.float32))
    _motion_npz(w / "strings.npz", joints=np.full((10, 16, 3), "a"))
    _motion_npz(w / "flat.npz", joints=np.zeros((10, 48), np.float32))
    _motion_npz(w / "fpsinf.npz", fps=np.float32(np.inf))
    _motion_npz(w / "fps0.npz", fps=np.float32(0))
    _motion_npz(w / "fpsneg.npz", fps=np.float32(-30))
    _motion_npz(w / "nan.npz", joints=np.full((10, 16, 3), np.nan, np.float32))
    _motion_npz(w / "badlayout.npz", layout=np.array("octopus8"))
    (w / "adir.npz").mkdir()
    (w / "text.npz").write_text("this is not a zip")
    (w / "exists.bvh").write_text("the user's own file")
    (w / "afile").write_text("a file where a folder should be")
    (w / "notes.txt").write_text("x")
    (w / "model.pkl").write_bytes(b"\x80\x04.")
    # 2D data: a tiny set, a run folder with a training state, an empty folder, hostile DeepLabCut
    clips = [(f"clip{i}", walking_figure(60, heading=0.3 * i), 30.0) for i in range(4)]
    built = build_monocular_set(clips, HUMAN16, MonocularConfig(min_frames=20, max_frames=48, val_fraction=0.0))
    save_monocular_set(w / "data.npz", built)
    assert main(["train", str(w / "data.npz"), "--out", str(w / "run"), "--steps", "2", "--save-every", "2",
                 "--width", "32", "--layers", "1", "--heads", "2", "--ff-width", "64", "--max-frames", "48"]) == 0
    (w / "emptyfolder").mkdir()
    (w / "dlc").mkdir()
    _hostile_h5(w / "dlc" / "evil.h5", w / MARKER)
    (w / "coco").mkdir()
    (w / "coco" / "broken.json").write_text("[{")
    return w


def snapshot(folder: Path) -> dict:
    """Every path under folder with its content's hash (FIFOs and folders by kind only)."""
    out = {}
    for p in sorted(folder.rglob("*")):
        if p.is_fifo():
            out[str(p)] = "fifo"
        elif p.is_dir():
            out[str(p)] = "dir"
        else:
            out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def run_cli(argv, capsys):
    old = signal.getsignal(signal.SIGTERM)
    try:
        rc = main([str(a) for a in argv])
    except SystemExit as e:          # argparse: a usage line and an error line
        rc = e.code
    finally:
        signal.signal(signal.SIGTERM, old)
    return rc, capsys.readouterr().err


G = ["generate", "--model", "{w}/tiny", "--seconds", "1", "--steps", "2", "--views", "2", "--out", "{w}/out"]
R = ["retarget", "{w}/good.npz", "--out", "{w}/new.bvh"]
CASES = [
    # generate: numbers out of range
    ("seconds inf", G + ["--seconds", "inf"], "--seconds"),
    ("seconds nan", G + ["--seconds", "nan"], "positive number"),
    ("seconds 0", G + ["--seconds", "0"], "positive number"),
    ("seconds negative", G + ["--seconds", "-1"], "positive number"),
    ("seconds absurd", G + ["--seconds", "1e9"], "--seconds"),
    ("longer than 10 minutes", G + ["--seconds", "601"], "longer than model"),
    ("seed negative", G + ["--seed", "-1"], "seed must be"),
    ("seed beyond 64 bits", G + ["--seed", str(2 ** 64)], "seed must be"),
    ("seed range beyond 64 bits", G + ["--seed", str(2 ** 63 - 1), "--num", "2"], "seed must be"),
    ("seed not a number", G + ["--seed", "x"], "invalid int"),
    ("num 0", G + ["--num", "0"], "positive integer"),
    ("num absurd", G + ["--num", "10000000"], "number of motions"),
    ("views 1", G + ["--views", "1"], "views"),
    ("views absurd", G + ["--views", "100000"], "views"),
    ("steps 0", G + ["--steps", "0"], "positive integer"),
    ("steps beyond the model", G + ["--steps", "1000"], "steps must be"),
    ("elevation 90", G + ["--elevation", "90"], "elevation"),
    ("elevation -90", G + ["--elevation", "-90"], "elevation"),
    ("elevation nan", G + ["--elevation", "nan"], "elevation"),
    ("distance 1e-9", G + ["--distance", "1e-9"], "distance"),
    ("distance inf", G + ["--distance", "inf"], "distance"),
    ("distance nan", G + ["--distance", "nan"], "positive number"),
    ("batch size absurd", G + ["--batch-size", "1000000"], "batch size"),
    ("format unknown", G + ["--format", "obj"], "invalid choice"),
    ("travel unknown", G + ["--travel", "glide"], "invalid choice"),
    ("rig file missing", G + ["--format", "bvh", "--rig", "{w}/nope.bvh"], "not found"),
    ("rig unknown", G + ["--format", "bvh", "--rig", "octopus"], "unknown rig"),
    ("device absent", G + ["--device", "cuda"], "no CUDA GPU"),
    ("device unknown", G + ["--device", "tpu"], "unknown device"),
    # generate: models that are not what they claim
    ("model empty name", G + ["--model", ""], "no model given"),
    ("model unknown", G + ["--model", "nosuchmodel"], "unknown model"),
    ("model path missing", G + ["--model", "{w}/missing.json"], "checkpoint not found"),
    ("card fps 0", G + ["--model", "{w}/fps0"], "fps"),
    ("card fps inf", G + ["--model", "{w}/fpsinf"], "fps"),
    ("card absurd max_frames", G + ["--model", "{w}/huge"], "max_frames"),
    ("card absurd width", G + ["--model", "{w}/wide"], "width"),
    ("card without format", G + ["--model", "{w}/noformat"], "not a MAS checkpoint card"),
    ("card from a newer version", G + ["--model", "{w}/newer"], "newer version"),
    ("card scale 0", G + ["--model", "{w}/scale0"], "scale"),
    ("card not json", G + ["--model", "{w}/notjson"], "cannot read checkpoint card"),
    ("weights garbage", G + ["--model", "{w}/garbage"], "cannot read weights"),
    ("weights of another model", G + ["--model", "{w}/mismatch"], "do not fit"),
    ("weights a FIFO", G + ["--model", "{w}/fifo"], "not a regular file"),
    # generate: output places
    ("out is a file", G + ["--out", "{w}/afile"], "is a file"),
    ("out cannot be made", G + ["--out", "/proc/mas-cannot-be-here"], "cannot write into output folder"),
    # retarget: motion files
    ("motion missing", ["retarget", "{w}/missing.npz", "--out", "{w}/x.bvh"], "not found"),
    ("motion empty", ["retarget", "{w}/empty.npz", "--out", "{w}/x.bvh"], "not a"),
    ("motion truncated", ["retarget", "{w}/truncated.npz", "--out", "{w}/x.bvh"], "not a"),
    ("motion text", ["retarget", "{w}/text.npz", "--out", "{w}/x.bvh"], "not a"),
    ("motion without joints", ["retarget", "{w}/nojoints.npz", "--out", "{w}/x.bvh"], "no 'joints'"),
    ("motion zero frames", ["retarget", "{w}/zeroframes.npz", "--out", "{w}/x.bvh"], "at least 2 frame"),
    ("motion one frame", ["retarget", "{w}/oneframe.npz", "--out", "{w}/x.bvh"], "at least 2 frame"),
    ("motion 15 joints 16 names", ["retarget", "{w}/names15.npz", "--out", "{w}/x.bvh"], "15 joints but 16"),
    ("motion joints strings", ["retarget", "{w}/strings.npz", "--out", "{w}/x.bvh"], "must be numbers"),
    ("motion joints 2-D", ["retarget", "{w}/flat.npz", "--out", "{w}/x.bvh"], "frames x joints x 3"),
    ("motion fps inf", ["retarget", "{w}/fpsinf.npz", "--out", "{w}/x.bvh"], "frame rate"),
    ("motion fps 0", ["retarget", "{w}/fps0.npz", "--out", "{w}/x.bvh"], "frame rate"),
    ("motion fps negative", ["retarget", "{w}/fpsneg.npz", "--out", "{w}/x.bvh"], "frame rate"),
    ("motion NaN", ["retarget", "{w}/nan.npz", "--out", "{w}/x.bvh"], "NaN"),
    ("motion unknown layout", ["retarget", "{w}/badlayout.npz", "--out", "{w}/x.bvh"], "unknown keypoint layout"),
    ("motion a folder", ["retarget", "{w}/adir.npz", "--out", "{w}/x.bvh"], "not a regular file"),
    ("motion a FIFO", ["retarget", "{w}/fifo.npz", "--out", "{w}/x.bvh"], "not a regular file"),
    ("retarget out suffix", ["retarget", "{w}/good.npz", "--out", "{w}/x.txt"], ".bvh, .npz, .fbx or .glb"),
    ("retarget out exists", ["retarget", "{w}/good.npz", "--out", "{w}/exists.bvh"], "--overwrite"),
    ("retarget rig missing", R + ["--rig", "{w}/nope.bvh"], "not found"),
    ("retarget rig unknown", R + ["--rig", "octopus"], "unknown rig"),
    ("retarget horse rig on a human", R + ["--rig", "horse"], "horse17"),
    ("retarget smpl pickle", R + ["--rig", "smpl", "--smpl-model", "{w}/model.pkl"], "pickle"),
    # prepare
    ("prepare folder missing", ["prepare", "{w}/nope", "--out", "{w}/set.npz"], "does not exist"),
    ("prepare out exists", ["prepare", "{w}/emptyfolder", "--out", "{w}/good.npz"], "exists"),
    ("prepare out not npz", ["prepare", "{w}/emptyfolder", "--out", "{w}/set.txt"], ".npz"),
    ("prepare empty folder", ["prepare", "{w}/emptyfolder", "--out", "{w}/set.npz"], "no *.bvh files"),
    ("prepare time scale 0", ["prepare", "{w}/emptyfolder", "--out", "{w}/set.npz", "--time-scales", "1,0"], "--time-scales"),
    ("prepare time scale word", ["prepare", "{w}/emptyfolder", "--out", "{w}/set.npz", "--time-scales", "fast"], "--time-scales"),
    ("prepare time scales with 2D", ["prepare", "{w}/coco", "--from", "coco", "--out", "{w}/set.npz", "--time-scales", "1,2"], "3D capture"),
    ("prepare kind unknown", ["prepare", "{w}/emptyfolder", "--out", "{w}/set.npz", "--kind", "cats"], "unknown capture kind"),
    ("prepare size 0", ["prepare", "{w}/coco", "--from", "coco", "--out", "{w}/set.npz", "--size", "0"], "--size"),
    ("prepare size negative", ["prepare", "{w}/coco", "--from", "coco", "--out", "{w}/set.npz", "--size", "-1"], "--size"),
    ("prepare size nan", ["prepare", "{w}/coco", "--from", "coco", "--out", "{w}/set.npz", "--size", "nan"], "--size"),
    ("prepare fps 0", ["prepare", "{w}/coco", "--from", "coco", "--out", "{w}/set.npz", "--fps", "0"], "frame rate"),
    ("prepare fps inf", ["prepare", "{w}/coco", "--from", "coco", "--out", "{w}/set.npz", "--fps", "inf"], "frame rate"),
    ("prepare broken json", ["prepare", "{w}/coco", "--from", "coco", "--out", "{w}/set.npz"], "broken.json"),
    ("prepare layout unknown", ["prepare", "{w}/dlc", "--from", "deeplabcut", "--out", "{w}/set.npz", "--layout", "cat"], "unknown layout"),
    ("prepare hostile h5", ["prepare", "{w}/dlc", "--from", "deeplabcut", "--out", "{w}/set.npz"], "evil.h5"),
    ("prepare min above max", ["prepare", "{w}/emptyfolder", "--out", "{w}/set.npz", "--min-frames", "0"], "positive integer"),
    # train
    ("train data missing", ["train", "{w}/nope.npz", "--out", "{w}/run2"], "not found"),
    ("train data is a motion", ["train", "{w}/good.npz", "--out", "{w}/run2"], "not a MAS 2D data set"),
    ("train resume other width", ["train", "{w}/data.npz", "--out", "{w}/run", "--steps", "4", "--width", "64",
                                  "--layers", "1", "--heads", "2", "--ff-width", "64", "--max-frames", "48"], "width 32 (asked 64)"),
    ("train resume no more steps", ["train", "{w}/data.npz", "--out", "{w}/run", "--steps", "2", "--width", "32",
                                    "--layers", "1", "--heads", "2", "--ff-width", "64", "--max-frames", "48"], "already trained 2"),
    ("train lr nan", ["train", "{w}/data.npz", "--out", "{w}/run2", "--lr", "nan"], "positive number"),
    ("train teacher guidance nan", ["train", "{w}/data.npz", "--out", "{w}/run2", "--distill-guidance", "{w}/tiny",
                                    "--teacher-guidance", "nan"], "--teacher-guidance must be between 0 and 10"),
    ("train away from without a teacher", ["train", "{w}/data.npz", "--out", "{w}/run2", "--teacher-away-from",
                                           "any,0"], "give --distill-guidance"),
    ("train guided below without a teacher", ["train", "{w}/data.npz", "--out", "{w}/run2", "--teacher-guided-below",
                                              "100,50"], "give --distill-guidance"),
    ("train absurd max frames", ["train", "{w}/data.npz", "--out", "{w}/run2", "--max-frames", "1000000000"], "max_frames"),
    ("train heads do not divide", ["train", "{w}/data.npz", "--out", "{w}/run2", "--heads", "3"], "multiple of heads"),
    ("train init other architecture", ["train", "{w}/data.npz", "--out", "{w}/run2", "--init", "{w}/tiny",
                                       "--max-frames", "48"], "another architecture"),
    # export
    ("export name escapes", ["export", "{w}/tiny.json", "--name", "../escaped", "--dest", "{w}/models"], "no folders"),
    ("export name absolute", ["export", "{w}/tiny.json", "--name", "/tmp/escaped", "--dest", "{w}/models"], "no folders"),
    ("export name empty", ["export", "{w}/tiny.json", "--name", "", "--dest", "{w}/models"], "model name"),
    ("export name exists", ["export", "{w}/tiny.json", "--name", "tiny", "--dest", "{w}"], "--overwrite"),
    ("export shipped name", ["export", "{w}/tiny.json", "--name", "human"], "--overwrite"),
    ("export pace shares without classes", ["export", "{w}/tiny.json", "--name", "x", "--dest", "{w}/models",
                                            "--pace-shares", "0.5,0.5"], "no pace classes"),
    ("export checkpoint missing", ["export", "{w}/nope.json", "--name", "x", "--dest", "{w}/models"], "not found"),
    # evaluate, bench
    ("evaluate-3d capture missing", ["evaluate-3d", "{w}/nope", "--model", "{w}/tiny", "--num", "2"], "does not exist"),
    ("evaluate-3d row unknown", ["evaluate-3d", "{w}/emptyfolder", "--model", "{w}/tiny", "--rows", "bogus"], "unknown row"),
    ("evaluate capture missing", ["evaluate", "{w}/nope", "--model", "{w}/tiny", "--quick", "--out", "{w}/ev"], "does not exist"),
    ("evaluate pace unknown to the model", ["evaluate", "{w}/emptyfolder", "--model", "{w}/tiny", "--pace", "3",
                                           "--out", "{w}/ev"], "trained without pace classes"),
    ("evaluate row unknown", ["evaluate", "{w}/emptyfolder", "--model", "{w}/tiny", "--rows", "bogus", "--out", "{w}/ev"],
     "unknown row"),
    ("bench seconds inf", ["bench", "--model", "{w}/tiny", "--seconds", "inf"], "--seconds"),
    ("bench views 1", ["bench", "--model", "{w}/tiny", "--views", "1"], "views"),
    ("bench-retarget file missing", ["bench-retarget", "{w}/nope.npz"], "not found"),
]


@pytest.mark.parametrize("name, argv, message", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_clear_line_and_changes_nothing(world, capsys, name, argv, message):
    argv = [a.replace("{w}", str(world)) for a in argv]
    before = snapshot(world)
    shipped_before = snapshot(MODELS_DIR)
    rc, err = run_cli(argv, capsys)
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert rc == 2, f"{name}: exit {rc}, stderr {err!r}"
    assert "Traceback" not in err
    assert lines and "error:" in lines[-1], err
    assert len([ln for ln in lines if "error" in ln]) == 1, err
    assert message in lines[-1], f"{name}: {lines[-1]!r} does not say {message!r}"
    assert snapshot(world) == before, f"{name}: files changed"
    assert snapshot(MODELS_DIR) == shipped_before
    assert not (world / MARKER).exists()


def test_catalogue_is_large_enough():
    assert len(CASES) + len(API_CASES) >= 80


# --- the Python API: the same rules at its boundary ---

def _api_generate(w, **kw):
    from mas_cli.generate import generate_to_files
    return generate_to_files(**dict(dict(model=str(w / "tiny"), seconds=1, steps=2, views=2, out=w / "out",
                                         log=lambda s: None), **kw))


def _api_sample(w, frames=30, **settings):
    from mas_engine.checkpoint import load_checkpoint
    from mas_engine.sampler import MasSettings, sample_mas
    return sample_mas(load_checkpoint(w / "tiny"), [0], frames, MasSettings(**settings))


def _api_retarget(w, **motion):
    from retarget.retarget import retarget
    m = dict(joints=walking_figure(40), fps=30.0, joint_names=HUMAN16.joints, layout="human16", parents=HUMAN16.parents)
    m.update(motion)
    return retarget(m)


API_CASES = [
    ("api seconds inf", lambda w: _api_generate(w, seconds=float("inf")), "--seconds"),
    ("api seed float", lambda w: _api_generate(w, seed=1.5), "seed must be an integer"),
    ("api seed negative", lambda w: _api_generate(w, seed=-3), "seed must be"),
    ("api num 0", lambda w: _api_generate(w, num=0), "number of motions"),
    ("api format unknown", lambda w: _api_generate(w, formats="mp4"), "unknown format"),
    ("api out is a file", lambda w: _api_generate(w, out=w / "afile"), "is a file"),
    ("api views 1", lambda w: _api_sample(w, views=1), "views"),
    ("api elevation inf", lambda w: _api_sample(w, elevation_deg=float("inf")), "elevation"),
    ("api distance 0", lambda w: _api_sample(w, distance_m=0.0), "distance"),
    ("api frames 1", lambda w: _api_sample(w, frames=1), "at least 2 frame"),
    ("api travel unknown", lambda w: _api_sample(w, travel="glide"), "travel 'glide' is not known"),
    ("api load fifo", lambda w: __import__("mas_engine.motion_io", fromlist=["x"]).load_motion(w / "fifo.npz"), "not a regular file"),
    ("api retarget unknown layout", lambda w: _api_retarget(w, layout="octopus"), "unknown keypoint layout"),
    ("api retarget names mismatch", lambda w: _api_retarget(w, joint_names=HUMAN16.joints[::-1]), "do not match"),
    ("api retarget fps 0", lambda w: _api_retarget(w, fps=0.0), "frame rate"),
    ("api dlc hostile", lambda w: __import__("mas_engine.importers", fromlist=["x"]).read_deeplabcut(
        w / "dlc" / "evil.h5", 30.0, HUMAN16), "not a DeepLabCut .h5 of plain numbers"),
]


@pytest.mark.parametrize("name, call, message", API_CASES, ids=[c[0] for c in API_CASES])
def test_bad_api_input_is_a_mas_error_and_changes_nothing(world, name, call, message):
    before = snapshot(world)
    with pytest.raises(MasError) as e:
        call(world)
    assert message in str(e.value) and "\n" not in str(e.value)
    assert snapshot(world) == before
    assert not (world / MARKER).exists()


# --- security and the write path ---

def test_results_get_the_usual_file_mode(tmp_path):
    """A result is readable as any file the user makes (not mkstemp's owner-only 0600), and a
    replaced file keeps its mode."""
    import stat

    from mas_engine.atomic import FILE_MODE, atomic_write

    new = atomic_write(tmp_path / "a.txt", lambda tmp: tmp.write_text("x"))
    assert stat.S_IMODE(new.stat().st_mode) == FILE_MODE == 0o666 & ~_current_umask()
    new.chmod(0o640)
    atomic_write(new, lambda tmp: tmp.write_text("y"))
    assert stat.S_IMODE(new.stat().st_mode) == 0o640 and new.read_text() == "y"


def _current_umask() -> int:
    import os

    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def test_a_planted_symlink_is_never_written_through(tmp_path):
    from mas_engine.atomic import atomic_write

    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    out = tmp_path / "out"
    out.mkdir()
    # the old predictable temporary names, and the target itself, as links to the victim
    for name in ("m.npz.tmp.npz", ".m.npz.tmp.npz", "m.npz"):
        (out / name).symlink_to(victim)
    save_motion(out / "m.npz", walking_figure(10), 30.0, HUMAN16)
    assert victim.read_text() == "precious"
    assert not (out / "m.npz").is_symlink() and np.load(out / "m.npz")["joints"].shape == (10, 16, 3)
    with pytest.raises(MasError, match="--overwrite"):
        atomic_write(out / "m.npz", lambda tmp: tmp.write_text("x"), overwrite=False)
    assert sorted(p.name for p in out.iterdir()) == sorted([".m.npz.tmp.npz", "m.npz", "m.npz.tmp.npz"])


def test_a_failing_writer_leaves_nothing(tmp_path):
    from mas_engine.atomic import atomic_write

    def boom(tmp):
        tmp.write_text("half")
        raise RuntimeError("disk full")
    with pytest.raises(RuntimeError):
        atomic_write(tmp_path / "r.json", boom)
    assert list(tmp_path.iterdir()) == []


def test_deeplabcut_h5_is_read_without_pickle(tmp_path):
    """Both pandas layouts (DeepLabCut writes 'table'; older files 'fixed') read through h5py give the
    numbers pandas wrote (tests/fixtures, written by pandas 3.1.1 + PyTables 3.11.1)."""
    from mas_engine.importers import _dlc_rows
    fx = ROOT / "tests" / "fixtures"
    rows = _dlc_rows(fx / "dlc_table.h5")
    assert [r[0] for r in rows[:3]] == ["scorer", "bodyparts", "coords"]
    assert rows[1][1:4] == ["snout"] * 3 and rows[2][1:4] == ["x", "y", "likelihood"]
    assert len(rows) == 3 + 6 and float(rows[3][1]) == pytest.approx(63.69616873214543) and rows[5][1] == "nan"
    multi = _dlc_rows(fx / "dlc_fixed_multi.h5")
    assert [r[0] for r in multi[:4]] == ["scorer", "individuals", "bodyparts", "coords"]
    assert multi[1][1] == "ind1" and multi[1][-1] == "ind2" and len(multi) == 4 + 5


def _mas(*args, **kw):
    return subprocess.Popen([sys.executable, "-m", "mas_cli", *map(str, args)], cwd=ROOT,
                            env=dict(os.environ, PYTHONPATH=str(ROOT)), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def test_a_killed_batch_keeps_the_finished_motions_and_no_temporaries(world, tmp_path):
    out = tmp_path / "out"
    p = _mas("generate", "--model", world / "tiny", "--num", "40", "--batch-size", "1", "--seconds", "1",
             "--steps", "20", "--views", "2", "--out", out, "--preview", "--device", "cpu")
    deadline = time.time() + 120
    while time.time() < deadline and len(list(out.glob("*.gif"))) < 2:
        time.sleep(0.05)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 130, err
    done = sorted(out.glob("*.npz"))
    assert 2 <= len(done) < 40
    for f in done:
        assert np.load(f)["joints"].shape == (30, 16, 3)
    assert not [f for f in out.iterdir() if f.name.startswith(".")], "temporary files left behind"


def test_two_processes_writing_one_folder_leave_whole_files(world, tmp_path):
    out = tmp_path / "out"
    procs = [_mas("generate", "--model", world / "tiny", "--num", "6", "--batch-size", "2", "--seconds", "1",
                  "--steps", "3", "--views", "2", "--out", out, "--device", "cpu") for _ in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    files = sorted(out.iterdir())
    assert [f.name for f in files] == [f"tiny_seed{s:05d}.npz" for s in range(6)]
    for f in files:
        assert np.load(f)["joints"].shape == (30, 16, 3)


def test_generate_skips_existing_files_unless_overwrite(world, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    mine = out / "tiny_seed00001.npz"
    mine.write_bytes(b"the user's earlier work")
    base = ["generate", "--model", world / "tiny", "--num", "3", "--seconds", "1", "--steps", "2", "--views", "2",
            "--out", out]
    rc, _ = run_cli(base, capsys)
    assert rc == 0 and mine.read_bytes() == b"the user's earlier work"
    assert sorted(f.name for f in out.iterdir()) == ["tiny_seed00000.npz", "tiny_seed00001.npz", "tiny_seed00002.npz"]
    rc, _ = run_cli(base + ["--overwrite"], capsys)
    assert rc == 0 and np.load(mine)["joints"].shape == (30, 16, 3)


def test_export_writes_inside_its_folder_and_keeps_an_existing_model(world, tmp_path, capsys):
    dest = tmp_path / "models"
    rc, _ = run_cli(["export", world / "tiny.json", "--name", "mine", "--dest", dest], capsys)
    assert rc == 0 and sorted(p.name for p in dest.iterdir()) == ["mine.json", "mine.safetensors"]
    before = snapshot(dest)
    rc, err = run_cli(["export", world / "other.json", "--name", "mine", "--dest", dest], capsys)
    assert rc == 2 and snapshot(dest) == before
    rc, _ = run_cli(["export", world / "other.json", "--name", "mine", "--dest", dest, "--overwrite"], capsys)
    assert rc == 0 and snapshot(dest) != before


def test_floors_only_point_down():
    """rigs < mas_engine < retarget < mas_app < blender_addon < mas_cli (docs/ARCHITECTURE.md): no package imports
    one above it (imports inside functions included), only blender_addon imports bpy, and its
    Blender-free modules do not."""
    import ast

    floors = ["rigs", "mas_engine", "retarget", "mas_app", "blender_addon", "mas_cli"]
    banned = {pkg: set(floors[i + 1:]) | {"bpy", "mathutils"} for i, pkg in enumerate(floors)}
    banned["blender_addon"] = {"mas_cli"}
    banned["mas_cli"] = set()           # the top: it may use bpy for FBX and glTF files
    for free in ("dependencies", "model_list", "jobs"):
        banned[f"blender_addon/{free}.py"] = {"bpy", "mathutils", "mas_cli"}
    wrong = []
    for where, names_banned in banned.items():
        files = [ROOT / where] if where.endswith(".py") else (ROOT / where).rglob("*.py")
        for f in files:
            for node in ast.walk(ast.parse(f.read_text())):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                    [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level else []
                wrong += [f"{f.relative_to(ROOT)} imports {n}" for n in names if n.split(".")[0] in names_banned]
    assert not wrong, wrong
