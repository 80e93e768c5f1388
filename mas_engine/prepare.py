"""``mas prepare``: a folder of 3D capture -> a monocular 2D training set, with a report."""
from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from .bvh import read_bvh
from rigs.keypoints import COCO17_BALL, HORSE17, HUMAN16

from .capture import bandai_to_human16, dog_to_horse17, read_spl_trial
from .dataset import MonocularConfig, build_monocular_set, save_monocular_set
from .errors import MasError

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

    built = build_monocular_set(clips(), CAPTURE_KINDS[kind][2], cfg)
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
    log("confidence histogram (0..1 in tenths): " + " ".join(str(h) for h in hist))
    for name, why in rejected:
        log(f"rejected {name}: {why}")
    return report
