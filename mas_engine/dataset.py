"""Monocular 2D motion data: built from 3D capture as videos would give it, loaded for training.

Building (``build_monocular_set``): every window of every clip is seen from ONE random
static camera (azimuth uniform on the circle; elevation and distance from
``CameraDistribution``; perspective projection with focal length = distance), and gets
detector-like noise and per-joint confidences. The 3D goes no further than this step.

Coordinates and normalisation:
- the 3D window is centred on the mean position of its root joint, and the camera aims
  at that point, so the 2D root moves when the subject travels (a static camera sees a
  walk move). ``root_motion=False`` instead removes the root's position in every frame
  (the paper's NBA setting: motions in place);
- 2D coordinates are in metres in the plane through the target point (focal = distance);
- the model sees them divided by ONE global scale ``s`` (the standard deviation of all
  confident 2D coordinates of the training set). A single scale, unlike the reference's
  per-joint-and-axis z-score, keeps normalised space a rotated and scaled copy of metric
  space, so 3D noise projected into any view is consistent across views and the
  reprojection of a triangulated motion is exactly what the model would see.

File: one ``.npz`` (no pickles) with ``{split}_pose`` (windows x max_frames x joints x 3:
u, v in metres and confidence in [0, 1]), ``{split}_length`` (frames of each window) for
split in train and val, and ``meta`` (a JSON string: layout, fps, scale, cameras, ...).
"""
from __future__ import annotations

import json
import math
import zlib
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from rigs.keypoints import KeypointLayout

from .atomic import atomic_write
from .cameras import camera_centres, look_at_rotations, perspective
from .errors import MasError
from .motion_io import resample

CONFIDENCE_THRESHOLD = 0.3  # joints below it are masked in training and triangulation


@dataclass
class CameraDistribution:
    """Where the one camera of a training window stands (angles in degrees, metres)."""

    elevation_mean: float = 10.0
    elevation_std: float = 8.0
    elevation_min: float = -5.0
    elevation_max: float = 35.0
    distance_min: float = 4.0
    distance_max: float = 8.0


@dataclass
class DetectorNoise:
    """Pose-estimator-like corruption of the exact projection.

    Visible joints get Gaussian noise of ``visible_std`` metres and confidences near 1;
    with probability ``occlusion_prob`` per joint and window, a span of 5 to 30 frames is
    'occluded': confidence below the threshold and large noise (it is masked, not learned).
    """

    visible_std: float = 0.004
    occlusion_prob: float = 0.1
    occluded_std: float = 0.08


@dataclass
class MonocularConfig:
    fps: float = 30.0
    min_frames: int = 40
    max_frames: int = 120
    stride_seconds: float = 1.0
    full_share: float = 0.0           # this share of the windows drawn at max_frames (where the clip allows):
                                      # uniform lengths train the last frame positions least (docs/results.md)
    val_fraction: float = 0.05
    root_motion: bool = True
    seed: int = 0
    cameras: CameraDistribution = field(default_factory=CameraDistribution)
    noise: DetectorNoise = field(default_factory=DetectorNoise)
    smooth_frames: float = 0.0        # the detections low-passed over time by a Gaussian of this many frames
                                      # (smooth_detections; 0: as detected, as the shipped models were trained)
    time_scales: tuple = (1.0,)       # each clip also played this many times faster (1.5: a walk at 1.5x its
                                      # cadence), its windows added: more of the fast motion a set holds little of


def is_validation_clip(name: str, fraction: float) -> bool:
    """A stable, name-based split: the same clip is always on the same side."""
    return (zlib.crc32(name.encode()) % 10000) < fraction * 10000


def check_clip(name: str, joints: np.ndarray, layout: KeypointLayout) -> None:
    """Raise MasError when a 3D clip cannot be used (wrong shape, empty, NaN)."""
    if joints.ndim != 3 or joints.shape[1:] != (layout.num_joints, 3):
        raise MasError(f"{name}: expected frames x {layout.num_joints} x 3 joints for layout "
                       f"{layout.name}, got shape {tuple(joints.shape)}")
    if joints.shape[0] == 0:
        raise MasError(f"{name}: the clip has no frames")
    required = [j for j, n in enumerate(layout.joints) if n not in layout.optional]
    if not np.isfinite(joints[:, required]).all():
        raise MasError(f"{name}: the clip has NaN or infinite joint positions; clean or drop it")
    if np.isinf(joints).any():
        raise MasError(f"{name}: the clip has infinite joint positions; clean or drop it")


def fill_missing(joints: np.ndarray, layout: KeypointLayout) -> tuple[np.ndarray, np.ndarray]:
    """Optional joints that are NaN (frames x J x 3) moved onto their parent; returns the joints
    and the missing mask (frames x J) whose entries get confidence 0 (masked, never learned)."""
    missing = np.isnan(joints).any(-1)
    if not missing.any():
        return joints, missing
    joints = joints.copy()
    for j in np.nonzero(missing.any(0))[0]:
        p = layout.parents[j]
        joints[missing[:, j], j] = joints[missing[:, j], p] if p >= 0 else 0.0
    return joints, missing


def project_window(joints: np.ndarray, azimuth: float, elevation: float, distance: float,
                   root_motion: bool = True, root: int = 0) -> np.ndarray:
    """One static camera's perspective view of a 3D window (frames x joints x 3, metres, Z up).

    Returns frames x joints x 2 in metres in the target plane (focal = distance). The camera
    aims at the window's mean root (joint ``root``); with ``root_motion=False`` the root is
    removed per frame.
    """
    return project_windows(joints[None], [azimuth], [elevation], [distance], root_motion, root)[0]


def project_windows(windows: np.ndarray, azimuth, elevation, distance, root_motion: bool = True,
                    root: int = 0) -> np.ndarray:
    """``project_window`` for N windows at once (N x frames x joints x 3), each with its own camera
    (azimuth, elevation, distance: N each, radians and metres): N x frames x joints x 2."""

    W = np.asarray(windows, np.float64)
    r = W[:, :, root:root + 1]
    X = W - (r.mean(1, keepdims=True) if root_motion else r)
    # keep every joint well in front of the camera, as a real video would
    dist = np.maximum(np.asarray(distance, np.float64), np.linalg.norm(X, axis=-1).max(axis=(1, 2)) + 1.0)
    az, el = torch.as_tensor(np.asarray(azimuth, np.float64)), torch.as_tensor(np.asarray(elevation, np.float64))
    R = look_at_rotations(az, el).numpy()
    C = camera_centres(az, el, torch.as_tensor(dist)).numpy()
    p = np.einsum("nij,nfkj->nfki", R, X - C[:, None, None])
    return perspective(p, dist[:, None, None, None])


def corrupt(uv: np.ndarray, noise: DetectorNoise, rng: np.random.Generator) -> np.ndarray:
    """Detector-like noise and confidences: frames x joints x 2 -> frames x joints x 3."""
    F, J, _ = uv.shape
    conf = np.clip(1.0 - np.abs(rng.normal(0.0, 0.08, (F, J))), 0.0, 1.0)
    std = np.full((F, J), noise.visible_std)
    for j in np.nonzero(rng.random(J) < noise.occlusion_prob)[0]:
        span = int(rng.integers(5, 31))
        start = int(rng.integers(-span + 1, F))
        sl = slice(max(start, 0), max(min(start + span, F), 0))
        conf[sl, j] = rng.uniform(0.0, CONFIDENCE_THRESHOLD * 0.9, conf[sl, j].shape)
        std[sl, j] = noise.occluded_std
    noisy = uv + rng.normal(size=uv.shape) * std[..., None]
    return np.concatenate([noisy, conf[..., None]], -1)


def smooth_detections(pose: np.ndarray, sigma_frames: float) -> np.ndarray:
    """Detections (frames x joints x 3: u, v, confidence) low-passed over time, as a pose pipeline
    smooths its keypoints: every joint's track replaced by a local straight-line fit with Gaussian
    weights of ``sigma_frames`` frames over its confident frames only. Inside a fully seen track
    that is a Gaussian filter; a straight-line fit keeps a steady motion steady up to the window's
    ends and across a masked (occluded) span, which neither leaks into its neighbours nor is moved.
    Confidences are kept.

    Why: a detector's frame-to-frame noise (4 mm, ``DetectorNoise``) alone moves a standing
    person's limbs at 0.26 m/s in the image, so raw windows are never nearly still (0% of the
    human windows against 30% without it). A Gaussian of 1.5 frames gives back 26% (limb speed
    p25 / p50 / p90: 0.09 / 0.26 / 1.23 m/s against 0.09 / 0.29 / 1.28 without noise). A model
    fine-tuned on such a set did not stand still more often (docs/results.md, *Smoothed detections* in the
    seventeenth session's section).
    """
    if sigma_frames <= 0 or len(pose) < 2:
        return pose
    from scipy.ndimage import correlate1d

    radius = int(math.ceil(4 * sigma_frames))
    d = np.arange(-radius, radius + 1, dtype=np.float64)
    g = np.exp(-0.5 * (d / sigma_frames) ** 2)
    seen = (pose[..., 2] >= CONFIDENCE_THRESHOLD).astype(np.float64)[..., None]      # F, J, 1
    uv = np.where(seen > 0, pose[..., :2], 0.0).astype(np.float64)
    moment = lambda x, k: correlate1d(x, g * d ** k, axis=0, mode="constant")      # noqa: E731  sum_d w d^k x[f + d]
    s0, s1, s2 = moment(seen, 0), moment(seen, 1), moment(seen, 2)
    t0, t1 = moment(uv * seen, 0), moment(uv * seen, 1)
    det = s0 * s2 - s1 ** 2
    line = det > 1e-6 * np.maximum(s0 * s2, 1e-12)                  # two or more seen frames nearby
    fit = np.where(line, (s2 * t0 - s1 * t1) / np.where(line, det, 1.0), t0 / np.maximum(s0, 1e-12))
    out = pose.copy()
    out[..., :2] = np.where((seen > 0) & (s0 > 1e-6), fit, pose[..., :2])
    return out


def windows_of_clip(n_frames: int, cfg: MonocularConfig, rng: np.random.Generator):
    """(start, length) windows covering a clip: random lengths (uniform from min_frames to max_frames,
    or max_frames for a ``full_share`` of them), about one per stride."""
    if n_frames < cfg.min_frames:
        return []
    out, start = [], 0
    stride = max(1, int(round(cfg.stride_seconds * cfg.fps)))
    while True:
        length = int(rng.integers(cfg.min_frames, cfg.max_frames + 1))
        if cfg.full_share > 0 and rng.random() < cfg.full_share:      # no extra draw by default: same sets as before
            length = cfg.max_frames
        length = min(length, n_frames - start)
        if length < cfg.min_frames:
            break
        out.append((start, length))
        start += int(rng.integers(stride // 2, stride + stride // 2 + 1))
    return out


def build_monocular_set(clips, layout: KeypointLayout, cfg: MonocularConfig, progress=None) -> dict:
    """Build the 2D training set from 3D clips.

    clips: iterable of (name, joints frames x J x 3 in metres Z up, fps).
    Returns a dict of arrays ready for ``save_monocular_set`` plus ``rejected``: a list of
    (clip name, reason) for the clips that could not be used.
    """
    rng = np.random.default_rng(cfg.seed)
    cams = cfg.cameras
    data = {"train": ([], []), "val": ([], [])}
    rejected = []
    for name, joints, fps in clips:
        try:
            check_clip(name, joints, layout)
        except MasError as e:
            rejected.append((name, str(e)))
            continue
        try:
            played = [resample(joints, fps * k, cfg.fps) for k in cfg.time_scales]
        except MasError as e:
            rejected.append((name, str(e)))
            continue
        wins = [(j, w) for j in played for w in windows_of_clip(j.shape[0], cfg, rng)]
        if not wins:
            rejected.append((name, f"shorter than {cfg.min_frames} frames at {cfg.fps:g} fps"))
            continue
        split = "val" if is_validation_clip(name, cfg.val_fraction) else "train"    # a clip's every pace on one side
        for joints, (start, length) in wins:
            az = rng.uniform(0, 2 * math.pi)
            el = math.radians(float(np.clip(rng.normal(cams.elevation_mean, cams.elevation_std),
                                            cams.elevation_min, cams.elevation_max)))
            dist = rng.uniform(cams.distance_min, cams.distance_max)
            window, missing = fill_missing(joints[start:start + length], layout)
            uv = project_window(window, az, el, dist, cfg.root_motion, layout.root)
            pose = np.zeros((cfg.max_frames, layout.num_joints, 3), np.float32)
            pose[:length] = smooth_detections(corrupt(uv, cfg.noise, rng), cfg.smooth_frames)
            pose[:length, :, 2][missing] = 0.0
            data[split][0].append(pose)
            data[split][1].append(length)
        if progress:
            progress(name)
    return assemble_set(data, layout, cfg, rejected)


def assemble_set(data: dict, layout: KeypointLayout, cfg: MonocularConfig, rejected: list, **meta) -> dict:
    """Windows per split ({"train": (poses, lengths), "val": ...}) -> the arrays and meta of a set.

    With too few clips for a held-out split (every window fell into validation) all are trained on.
    """
    if not data["train"][0] and data["val"][0]:
        data = {"train": data["val"], "val": ([], [])}
    if not data["train"][0]:
        reasons = "; ".join(f"{n}: {w}" for n, w in rejected[:3]) or "no clip was given"
        raise MasError(f"no usable training windows: {len(rejected)} clip(s) rejected ({reasons})")
    out = {}
    for split, (poses, lengths) in data.items():
        out[f"{split}_pose"] = np.stack(poses) if poses else np.zeros((0, cfg.max_frames, layout.num_joints, 3), np.float32)
        out[f"{split}_length"] = np.asarray(lengths, np.int32)
    out["meta"] = dict({"layout": layout.to_dict(), "fps": cfg.fps,
                        "scale": normalisation_scale(out["train_pose"], out["train_length"]),
                        "confidence_threshold": CONFIDENCE_THRESHOLD, "config": asdict(cfg)}, **meta)
    out["rejected"] = rejected
    return out


def normalisation_scale(pose: np.ndarray, length: np.ndarray) -> float:
    """One global scale: the std of all confident, unpadded 2D coordinates (about 0 mean)."""
    valid = (np.arange(pose.shape[1])[None, :] < length[:, None])[..., None] & (pose[..., 2] >= CONFIDENCE_THRESHOLD)
    uv = pose[..., :2][valid]
    return float(np.sqrt(np.mean(uv.astype(np.float64) ** 2)))


def save_monocular_set(path, built: dict) -> None:
    arrays = {k: v for k, v in built.items() if k not in ("meta", "rejected")}
    atomic_write(path, lambda tmp: np.savez(tmp, meta=np.array(json.dumps(built["meta"])), **arrays))


class MotionData2D:
    """A monocular 2D set in memory, as normalised tensors for training.

    pose:   windows x frames x joints x 2 (normalised: metres / scale)
    conf:   windows x frames x joints (0 on padding)
    length: windows
    """

    def __init__(self, pose: np.ndarray, length: np.ndarray, meta: dict):
        if pose.ndim != 4 or pose.shape[-1] != 3:
            raise MasError(f"2D data must be windows x frames x joints x 3 (u, v, confidence), got {pose.shape}")
        if not np.isfinite(pose).all():
            raise MasError("the 2D data set has NaN or infinite values; rebuild it with 'mas prepare'")
        if (length <= 0).any():
            raise MasError("the 2D data set has a window of zero length; rebuild it with 'mas prepare'")
        self.meta = meta
        self.layout = KeypointLayout.from_dict(meta["layout"])
        if pose.shape[2] != self.layout.num_joints:
            raise MasError(f"2D data has {pose.shape[2]} joints but its layout {self.layout.name} has "
                           f"{self.layout.num_joints}")
        self.scale = float(meta["scale"])
        self.fps = float(meta["fps"])
        self.pose = torch.from_numpy(np.ascontiguousarray(pose[..., :2] / self.scale, dtype=np.float32))
        pad = np.arange(pose.shape[1])[None, :] < length[:, None]
        self.conf = torch.from_numpy((pose[..., 2] * pad[..., None]).astype(np.float32))
        self.length = torch.from_numpy(length.astype(np.int64))

    def __len__(self) -> int:
        return self.pose.shape[0]

    @classmethod
    def load(cls, path, split: str = "train") -> "MotionData2D":
        try:
            with np.load(path, allow_pickle=False) as f:
                meta = json.loads(str(f["meta"]))
                return cls(f[f"{split}_pose"], f[f"{split}_length"], meta)
        except FileNotFoundError:
            raise MasError(f"2D data set {path} not found; build one with 'mas prepare'") from None
        except (KeyError, ValueError, OSError) as e:
            raise MasError(f"{path} is not a MAS 2D data set ({e}); build one with 'mas prepare'") from None

    def speed(self) -> torch.Tensor:
        """Each window's mean 2D joint speed (windows; metres a second in the image plane, detector
        noise included): how much it moves."""
        v = (self.pose[:, 1:] - self.pose[:, :-1]).norm(dim=-1) * self.fps * self.scale
        seen = (self.conf[:, 1:] >= CONFIDENCE_THRESHOLD) & (self.conf[:, :-1] >= CONFIDENCE_THRESHOLD)
        return (v * seen).sum((1, 2)) / seen.sum((1, 2)).clamp(min=1)

    def still_weights(self, quantile: float, weight: float) -> torch.Tensor:
        """Sampling weights (windows): ``weight`` for the stillest ``quantile`` of the windows (by
        ``speed``), 1 for the others; so that moving windows are not outnumbered."""
        s = self.speed()
        return torch.where(s <= torch.quantile(s, quantile), torch.tensor(weight), torch.tensor(1.0))

    def batches(self, batch_size: int, generator: torch.Generator, mirror: bool = True, weights=None):
        """Endless batches of similar-length windows (little padding), mirrored at random; with
        ``weights`` (windows), windows are drawn in proportion to them (with replacement).

        Yields (x0 B x L x J x 2, conf B x L x J, length B).
        """
        perm_lr = torch.tensor(self.layout.mirror)
        n = len(self)
        while True:
            # sort a random permutation by length in chunks, so a batch has similar lengths
            order = (torch.randperm(n, generator=generator) if weights is None
                     else torch.multinomial(weights, n, replacement=True, generator=generator))
            chunk = batch_size * 16
            batches = []
            for c in range(0, n, chunk):
                idx = order[c:c + chunk]
                idx = idx[torch.argsort(self.length[idx], stable=True)]
                batches += [idx[i:i + batch_size] for i in range(0, len(idx), batch_size)]
            for b in torch.randperm(len(batches), generator=generator).tolist():
                idx = batches[b]
                L = int(self.length[idx].max())
                x, conf = self.pose[idx, :L].clone(), self.conf[idx, :L].clone()
                if mirror:
                    flip = torch.rand(len(idx), generator=generator) < 0.5
                    x[flip] = x[flip][:, :, perm_lr] * torch.tensor([-1.0, 1.0])
                    conf[flip] = conf[flip][:, :, perm_lr]
                yield x, conf, self.length[idx]
