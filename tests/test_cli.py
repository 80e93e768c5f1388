import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mas_engine.catalogue import shipped_models
from mas_cli.cli import main
from mas_engine.motion_io import load_motion

ROOT = Path(__file__).resolve().parents[1]


def test_generate_writes_one_motion_file_per_seed(tmp_path, tiny_checkpoint, capsys):
    rc = main(["generate", "--model", str(tiny_checkpoint), "--num", "3", "--seconds", "1", "--seed", "10",
               "--steps", "5", "--views", "3", "--out", str(tmp_path), "--device", "cpu"])
    assert rc == 0
    files = sorted(tmp_path.glob("*.npz"))
    assert [f.name for f in files] == ["tiny_seed00010.npz", "tiny_seed00011.npz", "tiny_seed00012.npz"]
    m = load_motion(files[1])
    assert m["joints"].shape == (30, 16, 3) and m["joints"].dtype == np.float32
    assert np.isfinite(m["joints"]).all()
    assert m["fps"] == 30.0 and m["seed"] == 11 and m["model"] == "tiny" and m["views"] == 3
    assert list(m["joint_names"][:2]) == ["pelvis", "right_hip"] and m["parents"][0] == -1
    assert not list(tmp_path.glob("*.tmp*"))


def test_generate_with_preview_writes_a_gif(tmp_path, tiny_checkpoint):
    assert main(["generate", "--model", str(tiny_checkpoint), "--seconds", "0.5", "--steps", "3",
                 "--out", str(tmp_path), "--preview"]) == 0
    gif = tmp_path / "tiny_seed00000.gif"
    assert gif.exists() and gif.read_bytes()[:3] == b"GIF"


@pytest.mark.parametrize("args, message", [
    (["--model", "nosuchmodel"], "unknown model 'nosuchmodel'"),
    (["--model", "/nonexistent/ckpt"], "checkpoint not found"),
    (["--seconds", "1000"], "longer than model"),
    (["--views", "1", "--seconds", "1"], "at least 2 views"),
    (["--steps", "500", "--seconds", "1"], "steps must be between 1 and 20"),
    (["--device", "tpu"], "unknown device"),
])
def test_generate_errors_are_one_clear_line(tmp_path, tiny_checkpoint, capsys, args, message):
    full = ["generate", "--model", str(tiny_checkpoint), "--out", str(tmp_path)] + args
    assert main(full) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not list(tmp_path.glob("*.npz"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present")
def test_asking_for_a_missing_gpu_says_so(tmp_path, tiny_checkpoint, capsys):
    assert main(["generate", "--model", str(tiny_checkpoint), "--device", "cuda", "--out", str(tmp_path)]) == 2
    assert "sees no CUDA GPU" in capsys.readouterr().err


def test_console_script_entry_point_runs(tmp_path):
    r = subprocess.run([sys.executable, "-m", "mas_cli", "--help"], capture_output=True, text=True,
                       cwd=ROOT, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert r.returncode == 0 and "generate" in r.stdout


def test_the_shipped_human_model_is_present_small_and_generates(tmp_path):
    shipped = shipped_models()
    assert "human" in shipped, "the human model must ship in mas_engine/models/"
    weights = shipped["human"].with_suffix(".safetensors")
    assert weights.stat().st_size <= 10 * 1024 * 1024
    assert main(["generate", "--model", "human", "--seconds", "1", "--steps", "10", "--out", str(tmp_path)]) == 0
    m = load_motion(tmp_path / "human_seed00000.npz")
    assert m["joints"].shape == (30, 16, 3) and np.isfinite(m["joints"]).all()
    assert "non-commercial" in open(shipped["human"]).read()


def test_generation_split_over_processes_with_torchrun(tmp_path, tiny_checkpoint):
    import os
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m",
           "mas_cli", "generate", "--model", str(tiny_checkpoint), "-n", "5", "--seed", "3",
           "--seconds", "0.5", "--steps", "3", "--out", str(tmp_path), "--device", "cpu"]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert sorted(f.name for f in tmp_path.glob("*.npz")) == [f"tiny_seed{s:05d}.npz" for s in range(3, 8)]
    # a seed made by another process is the same motion as made alone
    main(["generate", "--model", str(tiny_checkpoint), "--seed", "4", "--seconds", "0.5", "--steps", "3",
          "--out", str(tmp_path / "alone"), "--device", "cpu"])
    np.testing.assert_allclose(load_motion(tmp_path / "tiny_seed00004.npz")["joints"],
                               load_motion(tmp_path / "alone" / "tiny_seed00004.npz")["joints"], atol=1e-4)


def test_bench_prints_a_table(tiny_checkpoint, capsys):
    from mas_engine.bench import run_bench

    rows = run_bench(model=str(tiny_checkpoint), device="cpu", seconds=0.5, steps=3, batch=2)
    out = capsys.readouterr().out
    assert "| cpu | fast | 1 |" in out and "| cpu | reference | 1 |" in out and "| cpu | fast | 2 |" in out
    assert "largest joint difference" in out and "GFLOP per motion" in out and "the floor is" in out
    assert all(r["seconds_per_motion"] > 0 and 0 <= r["triangulation_share"] <= 1 for r in rows)


def test_model_flops_grow_with_views_and_steps_and_count_every_layer(tiny_checkpoint):
    from mas_engine.bench import model_flops_per_motion
    from mas_engine.checkpoint import load_checkpoint

    loaded = load_checkpoint(tiny_checkpoint)
    one = model_flops_per_motion(loaded, 24, 2, 1)
    assert model_flops_per_motion(loaded, 24, 4, 10) == 20 * one
    c = loaded.config                 # the layers' matrix products alone: a lower bound the count must pass
    tokens = 24 // c.frames_per_token + 1
    per_layer = 2 * tokens * (4 * c.width * c.width + 2 * c.width * c.ff_width)
    assert per_layer * c.layers * 2 <= one < 2 * per_layer * c.layers * 2


def test_bench_scaling_sweeps_tables_and_plot(tiny_checkpoint, tmp_path, capsys):
    from mas_engine.bench import growth_exponent, run_scaling

    x = [1, 2, 4, 8]
    assert growth_exponent(x, [3 * v for v in x]) == pytest.approx(1.0)
    assert growth_exponent(x, [0.5 * v * v for v in x]) == pytest.approx(2.0)
    # the tiny model holds 1.6 s: 2 s runs in overlapping windows, and says so
    res = run_scaling(str(tiny_checkpoint), device="cpu", png=tmp_path / "s.png", json_out=tmp_path / "s.json",
                      sweeps={"seconds": [0.5, 2], "views": [2, 4], "batch": [1, 2], "steps": [2, 4]})
    out = capsys.readouterr().out
    assert "| 2 * |" in out and "overlapping windows" in out and (tmp_path / "s.png").stat().st_size > 10_000
    rows = res["sweeps"]["seconds"]["rows"]
    assert [r["windowed"] for r in rows] == [False, True] and rows[1]["wall_s"] > 0
    assert [r["steps"] for r in res["sweeps"]["steps"]["rows"]] == [2, 4]
    assert json.loads((tmp_path / "s.json").read_text())["sweeps"]["batch"]["rows"][1]["batch"] == 2


def test_bones_are_rigid_unless_asked_for_the_papers_mas(tmp_path):
    from mas_engine.metrics import bone_length_variation
    from rigs.keypoints import HUMAN16

    cv = {}
    for flag in ([], ["--no-rigid-bones"]):
        out = tmp_path / ("paper" if flag else "default")
        assert main(["generate", "--model", "human", "--seconds", "2", "--steps", "25", "--device", "cpu",
                     "--out", str(out)] + flag) == 0
        cv[bool(flag)] = bone_length_variation(load_motion(out / "human_seed00000.npz")["joints"], HUMAN16)
    assert cv[False] < 0.005 and cv[True] > 0.02
