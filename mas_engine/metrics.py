"""Motion quality measures: feature-set statistics (as the paper's evaluation) and 3D checks.

Feature sets are arrays N x D (one feature vector per motion). 3D motions are
frames x joints x 3 (metres, Z up) with a keypoint layout.
"""
from __future__ import annotations

import numpy as np
from scipy import linalg

from rigs.keypoints import KeypointLayout


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Frechet distance between Gaussians fitted to two feature sets (the FID formula)."""
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = linalg.sqrtm(s1 @ s2)
    if not np.isfinite(covmean).all():
        eps = np.eye(len(s1)) * 1e-6
        covmean = linalg.sqrtm((s1 + eps) @ (s2 + eps))
    covmean = np.real(covmean)
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def diversity(features: np.ndarray, pairs: int = 200, seed: int = 0) -> float:
    """Mean distance between random pairs of motions."""
    rng = np.random.default_rng(seed)
    i, j = rng.integers(0, len(features), pairs), rng.integers(0, len(features), pairs)
    return float(np.linalg.norm(features[i] - features[j], axis=-1).mean())


def precision_recall(real: np.ndarray, fake: np.ndarray, k: int = 3) -> tuple[float, float]:
    """k-NN manifold precision (share of fake inside the real manifold) and recall (the reverse)."""
    def radii(x):
        d = np.linalg.norm(x[:, None] - x[None], axis=-1)
        return np.sort(d, axis=1)[:, k]                     # the k-th neighbour, itself excluded at 0

    def coverage(manifold, r, queries):
        d = np.linalg.norm(queries[:, None] - manifold[None], axis=-1)
        return float((d <= r[None]).any(axis=1).mean())
    return coverage(real, radii(real), fake), coverage(fake, radii(fake), real)


def bone_length_variation(motion: np.ndarray, layout: KeypointLayout) -> float:
    """Mean over bones of the coefficient of variation (std / mean) of the bone's length over frames."""
    cvs = []
    for p, c in layout.bones:
        length = np.linalg.norm(motion[:, c] - motion[:, p], axis=-1)
        cvs.append(length.std() / max(length.mean(), 1e-9))
    return float(np.mean(cvs))


SKATE_SPEED = 0.1   # m/s: a foot near the floor moving faster than this is sliding


def horizontal_speed(track: np.ndarray, fps: float) -> np.ndarray:
    """Horizontal speed (m/s) of frames x ... x 3 positions; the first frame copies the second."""
    v = np.linalg.norm(np.diff(track[..., :2], axis=0), axis=-1) * fps
    return np.concatenate([v[:1], v], 0) if len(v) else np.zeros(track.shape[:-1])


def sliding(feet_track: np.ndarray, fps: float, height_margin: float = 0.05) -> np.ndarray:
    """frames x feet booleans: the foot is near the floor (within ``height_margin`` of its own 5%
    height quantile) and slides faster than SKATE_SPEED. feet_track: frames x feet x 3 (metres, Z up)."""
    low = np.percentile(feet_track[..., 2], 5, axis=0)
    near = feet_track[..., 2] < low + height_margin
    return near & (horizontal_speed(feet_track, fps) > SKATE_SPEED)


def foot_skating(feet_track: np.ndarray, fps: float, height_margin: float = 0.05) -> float:
    """Share of frames in which a foot near the floor slides faster than SKATE_SPEED.

    feet_track: frames x feet x 3 (metres, Z up).
    """
    return float(sliding(feet_track, fps, height_margin).mean())


def jitter(track: np.ndarray, fps: float) -> float:
    """Mean joint acceleration magnitude (m/s^2) of frames x joints x 3 positions."""
    if len(track) < 3:
        return 0.0
    acc = (track[2:] - 2 * track[1:-1] + track[:-2]) * fps * fps
    return float(np.linalg.norm(acc, axis=-1).mean())
