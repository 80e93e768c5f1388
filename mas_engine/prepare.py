"""``mas prepare``: a folder of 3D capture, or of pose-estimator 2D keypoints, -> a 2D training set, with a report."""
from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from rigs.keypoints import COCO17, COCO17_BALL, HORSE17, HUMAN16

from . import validate
from .bvh import read_bvh
from .capture import bandai_to_human16, dog_to_horse17, read_spl_trial
from .dataset import (CONFIDENCE_THRESHOLD, MonocularConfig, assemble_set, build_monocular_set, is_validation_clip,
                      save_monocular_set, smooth_detections, windows_of_clip)
from .errors import MasError, MissingDependency
from .importers import VIDEO_SUFFIXES, normalise_track, read_coco_json, read_deeplabcut, read_openpose, read_video
from .motion_io import resample


def _read_bandai(path: Path):
    motion = read_bvh(path)
    joints, layout = bandai_to_human16(motion)
    return joints, motion.fps, layout


def _read_dog(path: Path):
    motion = read_bvh(path)
    joints, layout = dog_to_horse17(motion)
    return joints, motion.fps, layout


# capture kinds: file pattern, reader of one file -> (joints frames x J x 3 m Z up, fps, layout), layout
CAPTURE_KINDS = {
    "bandai": ("*.bvh", _read_bandai, HUMAN16),
    "dog": ("*.bvh", _read_dog, HORSE17),
    "spl": ("*.json", read_spl_trial, COCO17_BALL),
}
# what models trained on each kind must say (into the data set's meta, then the model card)
LICENCES = {
    "bandai": "Trained on 2D projections of the Bandai Namco Research Motiondataset (CC BY-NC 4.0): "
              "non-commercial use only.",
    "dog": "Trained on 2D projections of the dog motion capture of Zhang et al. 2018, 'Mode-Adaptive Neural "
           "Networks for Quadruped Motion Control' (AI4Animation, CC BY-NC 4.0): non-commercial use only. "
           "A quadruped model trained on dog capture, not on horse capture.",
    "spl": "Trained on 2D projections of MLSE SPL Open Data, basketball free throws (CC BY-NC-SA 4.0): "
           "non-commercial use only; share-alike.",
}


def _load_one(args):
    kind, path = args
    try:
        joints, fps, layout = CAPTURE_KINDS[kind][1](path)
        return path.stem, joints, fps, layout, None
    except MasError as e:
        return path.stem, None, None, None, str(e)
    except (ValueError, IndexError, KeyError, OSError, UnicodeDecodeError) as e:   # a damaged file: named, skipped
        return path.stem, None, None, None, f"cannot read {path.name} as {kind} capture ({type(e).__name__}: {e})"


def capture_files(folder, kind: str, names_file=None) -> list[Path]:
    if kind not in CAPTURE_KINDS:
        raise MasError(f"unknown capture kind {kind!r}; known: {', '.join(CAPTURE_KINDS)}")
    folder = Path(folder)
    if not folder.is_dir():
        raise MasError(f"capture folder {folder} does not exist")
    files = sorted(folder.glob(CAPTURE_KINDS[kind][0]))
    if names_file:
        wanted = {Path(w.strip()).stem for w in open(names_file) if w.strip()}
        files = [f for f in files if f.stem in wanted]
    if not files:
        raise MasError(f"no {CAPTURE_KINDS[kind][0]} files in {folder}")
    return files


def prepare_capture(folder, out, kind: str = "bandai", names_file=None, cfg: MonocularConfig | None = None,
                    workers: int | None = None, log=print) -> dict:
    """Read every capture file, build the monocular 2D set and write it atomically to ``out``."""
    from tqdm import tqdm

    cfg = cfg or MonocularConfig()
    check_output(out)
    files = capture_files(folder, kind, names_file)
    workers = workers or min(os.cpu_count() or 1, 8)
    rejected = []

    def clips():
        with ProcessPoolExecutor(workers) as pool:
            for name, joints, fps, _, err in tqdm(pool.map(_load_one, [(kind, f) for f in files], chunksize=8),
                                                       total=len(files), desc="reading capture", unit="clip"):
                if err:
                    rejected.append((name, err))
                else:
                    yield name, joints, fps

    try:
        built = build_monocular_set(clips(), CAPTURE_KINDS[kind][2], cfg)
    except MasError as e:
        if rejected:
            reasons = "; ".join(f"{n}: {w}" for n, w in rejected[:3])
            raise MasError(f"no usable training windows in {folder}: {len(rejected)} file(s) rejected ({reasons})") from None
        raise
    rejected += built["rejected"]
    built["meta"]["licence"] = LICENCES[kind]
    save_monocular_set(out, built)
    n_tr, n_va = len(built["train_length"]), len(built["val_length"])
    frames = int(built["train_length"].sum() + built["val_length"].sum())
    conf = np.concatenate([built["train_pose"][..., 2].ravel(), built["val_pose"][..., 2].ravel()])
    hist, edges = np.histogram(conf[conf > 0], bins=10, range=(0, 1))
    report = {"clips": len(files) - len(rejected), "rejected": rejected, "train_windows": n_tr, "val_windows": n_va,
              "frames": frames, "scale_m": built["meta"]["scale"], "confidence_histogram": hist.tolist()}
    log(f"wrote {out}: {n_tr} training and {n_va} validation windows from {report['clips']} clips, "
        f"{frames} frames ({frames / cfg.fps / 3600:.2f} h), scale {report['scale_m']:.3f} m")
    _log_report(hist, rejected, log)
    return report


def check_output(out) -> None:
    """The set's file must be new (never replaced unasked) and its folder writable, before the work."""
    out = Path(out)
    if out.suffix.lower() != ".npz":
        raise MasError(f"output {out}: give a .npz file name")
    if os.path.lexists(out):
        raise MasError(f"{out} exists; remove it or choose another --out (a data set is never replaced)")
    validate.output_folder(out.parent)


def _log_report(hist, rejected, log) -> None:
    log("confidence histogram (0..1 in tenths): " + " ".join(str(h) for h in hist))
    for name, why in rejected:
        log(f"rejected {name}: {why}")


# ---------------------------------------------------------------- 2D keypoints from pose estimators

FORMATS_2D = ("coco", "openpose", "deeplabcut", "video")
USER_DATA_NOTE = "Trained on the user's own 2D keypoint data: check the licence of that data before sharing the model."


def inputs_2d(folder, fmt: str) -> list[Path]:
    """What one video is, per format: a COCO results .json, an OpenPose folder of per-frame files
    (the folder itself or each of its subfolders), a DeepLabCut .csv / .h5, a video file."""

    folder = Path(folder)
    if not folder.is_dir():
        raise MasError(f"input folder {folder} does not exist")
    if fmt == "coco":
        found = sorted(folder.glob("*.json"))
    elif fmt == "openpose":
        found = [folder] if any(folder.glob("*_keypoints.json")) else \
            sorted(d for d in folder.iterdir() if d.is_dir() and any(d.glob("*_keypoints.json")))
    elif fmt == "deeplabcut":
        found = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".csv", ".h5"))
    elif fmt == "video":
        found = sorted(p for p in folder.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
    else:
        raise MasError(f"unknown 2D format {fmt!r}; use {', '.join(FORMATS_2D)}")
    if not found:
        raise MasError(f"no {fmt} keypoint files in {folder}")
    return found


def build_2d_set(tracks, layout, cfg: MonocularConfig, size_m: float = 0.5) -> dict:
    """Windows of 2D tracks (``importers.Track2D``) as a training set, like ``build_monocular_set``:
    each track in the set's units (``importers.normalise_track``), resampled to cfg.fps, centred
    on its window's mean root (or per frame with root_motion=False)."""

    rng = np.random.default_rng(cfg.seed)
    data = {"train": ([], []), "val": ([], [])}
    rejected = []
    r = layout.root
    for t in tracks:
        try:
            kp = smooth_detections(resample(normalise_track(t.keypoints, layout, size_m), t.fps, cfg.fps),
                                   cfg.smooth_frames)
        except MasError as e:
            rejected.append((t.name, str(e)))
            continue
        wins = windows_of_clip(kp.shape[0], cfg, rng)
        if not wins:
            rejected.append((t.name, f"shorter than {cfg.min_frames} frames at {cfg.fps:g} fps"))
            continue
        split = "val" if is_validation_clip(t.name, cfg.val_fraction) else "train"
        kept = 0
        for start, length in wins:
            w = kp[start:start + length].copy()
            conf = w[..., 2] >= CONFIDENCE_THRESHOLD
            if conf.mean() < 0.5:           # mostly undetected: not worth learning from
                continue
            centre = w[conf[:, r], r, :2].mean(0) if conf[:, r].any() else w[..., :2][conf].mean(0)
            if cfg.root_motion:
                w[..., :2] -= centre
            else:
                per_frame = np.where(conf[:, r:r + 1], w[:, r:r + 1, :2], centre)
                w[..., :2] -= per_frame
            w[~conf, :2] = np.where(np.isfinite(w[~conf, :2]), w[~conf, :2], 0.0)
            pose = np.zeros((cfg.max_frames, layout.num_joints, 3), np.float32)
            pose[:length] = w
            data[split][0].append(pose)
            data[split][1].append(length)
            kept += 1
        if not kept:
            rejected.append((t.name, "no window with at least half of its keypoints confidently detected"))
    return assemble_set(data, layout, cfg, rejected, source="2d keypoints", subject_size_m=size_m,
                        licence=USER_DATA_NOTE)


def prepare_2d(folder, out, fmt: str, layout=None, fps: float | None = None, cfg: MonocularConfig | None = None,
               body_parts: dict | None = None, size_m: float = 0.5, log=print) -> dict:
    """A folder of pose-estimator output or of videos -> a 2D training set, with a report. One bad
    file is reported with its reason and the rest is still prepared; the output is written
    atomically. fps: the videos' frame rate (keypoint files: default 30; video files: default
    each file's own)."""



    cfg = cfg or MonocularConfig()
    layout = layout or COCO17
    validate.number("--size (the subject's spread in metres)", size_m, 0.01, 100.0, "0.5 fits a standing adult")
    check_output(out)
    if fps is not None and not (np.isfinite(fps) and 1.0 <= fps <= 1000.0):
        raise MasError(f"frame rate {fps} is not plausible; give the videos' frame rate with --fps (1 to 1000)")
    if fmt in ("coco", "openpose", "video") and layout.name != "coco17":
        raise MasError(f"{fmt} input gives COCO keypoints: use --layout coco17 (a layout of your own is for DeepLabCut)")
    key_fps = fps or 30.0                   # keypoint files carry no frame rate
    tracks, rejected = [], []
    files = inputs_2d(folder, fmt)
    for k, p in enumerate(files):
        try:
            if fmt == "coco":
                got = read_coco_json(p, key_fps, layout)
            elif fmt == "openpose":
                got = read_openpose(p, key_fps, layout)
            elif fmt == "video":
                log(f"[{k + 1}/{len(files)}] {p.name}: finding the person (MediaPipe Pose)")
                got = read_video(p, fps, layout, progress=lambda n, total: log(f"  frame {n}" + (f" of {total}" if total > 0 else "")))
            else:
                got = read_deeplabcut(p, key_fps, layout, body_parts)
        except MissingDependency:
            raise                           # not this file's fault: every file would fail the same way
        except MasError as e:
            rejected.append((p.name, str(e).replace(f"{p}: ", "")))
            continue
        if not got:
            rejected.append((p.name, "no subject followed for long enough (at least 10 frames)"))
        tracks += got
    if not tracks:
        _log_report([], rejected, log)
        reasons = "; ".join(f"{n}: {w}" for n, w in rejected[:3]) + (" ..." if len(rejected) > 3 else "")
        raise MasError(f"nothing to prepare in {folder}: every file was rejected ({reasons})")
    built = build_2d_set(tracks, layout, cfg, size_m)
    rejected += built["rejected"]
    save_monocular_set(out, built)
    n_tr, n_va = len(built["train_length"]), len(built["val_length"])
    frames = int(sum(len(t.keypoints) for t in tracks))
    minutes = sum(len(t.keypoints) / t.fps for t in tracks) / 60
    conf = np.concatenate([t.keypoints[..., 2].ravel() for t in tracks])
    hist, _ = np.histogram(conf, bins=10, range=(0, 1))
    report = {"files": len(files), "tracks": len(tracks), "rejected": rejected, "frames": frames,
              "train_windows": n_tr, "val_windows": n_va, "confidence_histogram": hist.tolist()}
    log(f"wrote {out}: {n_tr} training and {n_va} validation windows from {len(tracks)} tracks "
        f"({frames} frames, {minutes:.1f} min), layout {layout.name}")
    _log_report(hist, rejected, log)
    return report
