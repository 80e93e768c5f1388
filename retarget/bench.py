"""``mas bench-retarget``: speed and quality of retargeting, as a printed table.

For every motion given (generated .npz files, and/or real capture BVH clips mapped to the
keypoint layout: Bandai or dog BVH, SPL JSON), fit the rig and report frames, seconds, keypoint error, and jitter and
foot skating before and after the fit.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from mas_engine.errors import MasError
from mas_engine.motion_io import load_motion, resample
from mas_engine.prepare import CAPTURE_KINDS

from .retarget import retarget


def _read_capture(p: Path):
    """A capture clip of any known kind (Bandai or dog BVH, SPL JSON) -> (joints, fps, layout)."""
    errors = []
    for kind, (pattern, reader, _) in CAPTURE_KINDS.items():
        if p.match(pattern):
            try:
                return reader(p)
            except MasError as e:
                errors.append(f"{kind}: {e}")
    raise MasError(f"{p}: not a capture clip of a known kind ({'; '.join(errors) or 'unknown file type'})")


def _motions(paths, frames):
    for p in paths:
        p = Path(p)
        if p.suffix.lower() in (".bvh", ".json"):
            joints, fps, layout = _read_capture(p)
            joints = resample(joints, fps, 30.0)
            yield p.stem, "capture", {"joints": joints[:frames], "fps": 30.0, "joint_names": np.array(layout.joints),
                                      "layout": layout.name}
        else:
            m = load_motion(p)
            m["joints"] = m["joints"][:frames]
            yield p.stem, "generated", m


def run_bench(paths, rig="human", frames=180, smpl_model=None, log=print) -> list[dict]:
    rows = []
    for name, kind, motion in _motions(paths, frames):
        retarget(motion, rig=rig, smpl_model=smpl_model)            # warm-up (first-call costs)
        t0 = time.perf_counter()
        _, rep = retarget(motion, rig=rig, smpl_model=smpl_model)
        rows.append(dict(rep, name=name, kind=kind, frames=len(motion["joints"]), seconds=time.perf_counter() - t0))
    log(f"retarget onto rig {rig!r}; torch {torch.__version__}, {torch.get_num_threads()} threads")
    log("| motion | kind | frames | seconds | keypoint error | jitter before -> after (m/s^2) | foot skating before -> after |")
    log("|---|---|---:|---:|---:|---:|---:|")
    for r in rows:
        skate = (f"{100 * r['skating_before']:.1f}% -> {100 * r['skating_after']:.1f}%" if "skating_before" in r else "-")
        log(f"| {r['name']} | {r['kind']} | {r['frames']} | {r['seconds']:.2f} | {1000 * r['marker_error_m']:.1f} mm | "
            f"{r['jitter_before']:.2f} -> {r['jitter_after']:.2f} | {skate} |")
    return rows
