"""The motion file: the plain-data boundary between generation and retargeting.

One ``.npz`` (no pickles) per motion:
- ``joints``: float32, frames x joints x 3, metres, Z up, the floor at Z = 0;
- ``fps``: float; ``joint_names``: str array (joints); ``parents``: int array (-1 for the root);
- ``layout``: the keypoint layout's name; ``model``, ``seed`` and the sampling settings
  (``views``, ``steps``, ``noise_3d``) as scalars; a loop's ``loop`` and ``loop_travel`` (3, metres,
  Z = 0: the frame after the last is the first moved on by it).

In memory the same is a ``Motion``, what the generator hands to the rig (``retarget``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rigs.keypoints import KeypointLayout, get_layout

from .atomic import atomic_write
from .errors import MasError


@dataclass
class Motion:
    """A 3D motion: ``joints`` frames x joints x 3 (metres, Z up, the floor at Z = 0) at ``fps``,
    in ``layout``'s joint order; ``meta``: how it was made (model, seed, settings)."""

    joints: np.ndarray
    fps: float
    layout: KeypointLayout
    meta: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, m: dict, where: str = "the motion") -> "Motion":
        """A motion as ``load_motion`` gives it (a built-in layout's name and matching joint names)."""
        try:
            layout = get_layout(str(m.get("layout", "")))
        except KeyError as e:
            raise MasError(f"{where}: {e.args[0]}") from None
        if list(layout.joints) != [str(n) for n in np.atleast_1d(m["joint_names"])]:
            raise MasError(f"{where}: its joint names do not match its layout {layout.name}")
        fps = float(m["fps"])
        if not (np.isfinite(fps) and fps > 0):
            raise MasError(f"{where}: the frame rate {fps} is not positive")
        meta = {k: v for k, v in m.items() if k not in ("joints", "fps", "joint_names", "parents", "layout")}
        return cls(np.asarray(m["joints"], np.float64), fps, layout, meta)


def save_motion(path, joints: np.ndarray, fps: float, layout: KeypointLayout, overwrite: bool = True, **meta) -> Path:
    """Write a motion atomically (a temporary file renamed into place); ``overwrite=False`` never replaces a file."""
    joints = np.asarray(joints, dtype=np.float32)
    if joints.ndim != 3 or joints.shape[1:] != (layout.num_joints, 3):
        raise MasError(f"motion must be frames x {layout.num_joints} x 3, got {joints.shape}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, lambda tmp: np.savez(
        tmp, joints=joints, fps=np.float32(fps), joint_names=np.array(layout.joints),
        parents=np.array(layout.parents, dtype=np.int32), layout=np.array(layout.name),
        **{k: np.array(v) for k, v in meta.items()}), overwrite=overwrite)


def load_motion(path, min_frames: int = 2) -> dict:
    """Read a motion file into a dict of numpy values (scalars unwrapped), checked by ``check_motion``."""
    path = Path(path)
    if path.exists() and not path.is_file():
        raise MasError(f"motion file {path} is not a regular file; give a .npz from 'mas generate'")
    try:
        with np.load(path, allow_pickle=False) as f:
            out = {k: (f[k].item() if f[k].ndim == 0 else f[k]) for k in f.files}
    except FileNotFoundError:
        raise MasError(f"motion file {path} not found") from None
    except (ValueError, OSError, EOFError, KeyError) as e:
        raise MasError(f"{path} is not a MAS motion file (an .npz from 'mas generate'): {e}") from None
    except Exception as e:  # noqa: BLE001 - zipfile raises its own kinds on a truncated or damaged file
        raise MasError(f"{path} is not a readable .npz (damaged or truncated: {type(e).__name__}); "
                       f"generate it again") from None
    for key in ("joints", "fps", "joint_names", "parents"):
        if key not in out:
            raise MasError(f"{path} is not a MAS motion file: no '{key}'")
    check_motion(out, str(path), min_frames)
    return out


def check_motion(m: dict, where: str = "the motion", min_frames: int = 2) -> None:
    """Raise MasError unless m holds a usable motion: joints frames x J x 3 finite numbers (at least
    ``min_frames``; 1 is a pose), J joint names and parents, a positive finite frame rate below 10,000."""
    joints = np.asarray(m["joints"])
    if joints.dtype.kind not in "fiu":
        raise MasError(f"{where}: joints must be numbers, got {joints.dtype}")
    if joints.ndim != 3 or joints.shape[-1] != 3:
        raise MasError(f"{where}: joints must be frames x joints x 3 (metres), got shape {joints.shape}")
    if joints.shape[0] < min_frames:
        raise MasError(f"{where}: a motion needs at least {min_frames} frame(s), got {joints.shape[0]}")
    names, parents = np.atleast_1d(m["joint_names"]), np.atleast_1d(m["parents"])
    if len(names) != joints.shape[1] or len(parents) != joints.shape[1]:
        raise MasError(f"{where}: {joints.shape[1]} joints but {len(names)} joint names and {len(parents)} parents")
    fps = m["fps"]
    try:
        fps = float(fps)
    except (TypeError, ValueError):
        raise MasError(f"{where}: fps must be a number, got {fps!r}") from None
    if not (np.isfinite(fps) and 0 < fps <= 10000):
        raise MasError(f"{where}: frame rate {fps} is not a positive, finite number of frames per second")
    if not np.isfinite(joints).all():
        try:                                            # a prop (the ball) may be NaN where unseen
            optional = set(get_layout(str(m.get("layout", ""))).optional)
        except KeyError:
            optional = set()
        body = joints[:, [j for j, n in enumerate(names) if str(n) not in optional]]
        if not np.isfinite(body).all() or np.isinf(joints).any():
            raise MasError(f"{where}: joints hold NaN or infinite values; clean the motion")


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
