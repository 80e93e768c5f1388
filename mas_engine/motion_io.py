"""The motion file: the plain-data boundary between generation and retargeting.

One ``.npz`` (no pickles) per motion:
- ``joints``: float32, frames x joints x 3, metres, Z up, the floor at Z = 0;
- ``fps``: float; ``joint_names``: str array (joints); ``parents``: int array (-1 for the root);
- ``layout``: the keypoint layout's name; ``model``, ``seed`` and the sampling settings
  (``views``, ``steps``, ``noise_3d``) as scalars.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from rigs.keypoints import KeypointLayout

from .atomic import atomic_write
from .errors import MasError


def save_motion(path, joints: np.ndarray, fps: float, layout: KeypointLayout, **meta) -> Path:
    """Write a motion atomically (a temporary file renamed into place)."""
    joints = np.asarray(joints, dtype=np.float32)
    if joints.ndim != 3 or joints.shape[1:] != (layout.num_joints, 3):
        raise MasError(f"motion must be frames x {layout.num_joints} x 3, got {joints.shape}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, lambda tmp: np.savez(
        tmp, joints=joints, fps=np.float32(fps), joint_names=np.array(layout.joints),
        parents=np.array(layout.parents, dtype=np.int32), layout=np.array(layout.name),
        **{k: np.array(v) for k, v in meta.items()}))


def load_motion(path) -> dict:
    """Read a motion file into a dict of numpy values (scalars unwrapped)."""
    try:
        with np.load(path, allow_pickle=False) as f:
            out = {k: (f[k].item() if f[k].ndim == 0 else f[k]) for k in f.files}
    except FileNotFoundError:
        raise MasError(f"motion file {path} not found") from None
    except (ValueError, OSError) as e:
        raise MasError(f"{path} is not a MAS motion file: {e}") from None
    for key in ("joints", "fps", "joint_names", "parents"):
        if key not in out:
            raise MasError(f"{path} is not a MAS motion file: no '{key}'")
    return out


def resample(joints: np.ndarray, fps_in: float, fps_out: float) -> np.ndarray:
    """A motion (frames x ...) at another frame rate, by linear interpolation; same duration.

    frames_out = round((frames - 1) * fps_out / fps_in) + 1, so first and last frames are kept.
    """
    joints = np.asarray(joints)
    if not (fps_in > 0 and fps_out > 0) or not (np.isfinite(fps_in) and np.isfinite(fps_out)):
        raise MasError(f"frame rates must be positive and finite, got {fps_in} -> {fps_out}")
    F = joints.shape[0]
    if F < 2 or abs(fps_in - fps_out) < 1e-9:
        return joints.copy()
    n = int(round((F - 1) * fps_out / fps_in)) + 1
    t = np.arange(n) * (fps_in / fps_out)
    i0 = np.clip(np.floor(t).astype(int), 0, F - 2)
    w = np.clip(t - i0, 0.0, 1.0).reshape((-1,) + (1,) * (joints.ndim - 1))
    return ((1 - w) * joints[i0] + w * joints[i0 + 1]).astype(joints.dtype)
