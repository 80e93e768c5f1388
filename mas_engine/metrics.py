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


def near_floor(feet_track: np.ndarray, height_margin: float = 0.05) -> np.ndarray:
    """frames x ... booleans: the foot is within ``height_margin`` (m) of its own 5% height quantile.
    feet_track: frames x ... x 3 (metres, Z up)."""
    return feet_track[..., 2] < np.percentile(feet_track[..., 2], 5, axis=0) + height_margin


def sliding(feet_track: np.ndarray, fps: float, height_margin: float = 0.05) -> np.ndarray:
    """frames x feet booleans: the foot is near the floor (``near_floor``) and slides faster than
    SKATE_SPEED. feet_track: frames x feet x 3 (metres, Z up)."""
    return near_floor(feet_track, height_margin) & (horizontal_speed(feet_track, fps) > SKATE_SPEED)


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


# --- The motion as a user sees it: is it alive, on the floor, stepping? (per window of a few seconds) ---

STILL_SPEED = 0.1      # m/s: a window whose limbs move slower than this on average is nearly still
TRAVEL_SPEED = 0.5     # m/s: a window whose root travels faster than this is travelling
STEP_LIFT = 0.08       # m: a travelling window steps when one foot lifts this far above the other
FLAT_FLOOR = 0.05      # m: the lowest foot's height stays within this range: on the floor
VISIBLE_GESTURE = 0.4  # m: a window visibly moves when a limb joint moves this far relative to the body centre
VISIBLE_TRAVEL = 0.5   # m: ... or the body centre this far (a hand raised to the head moves about 0.5 m)
QUANTILES = (25, 50, 75, 90)


def cut_windows(motion: np.ndarray, frames: int) -> np.ndarray:
    """Non-overlapping windows of ``frames`` frames of one motion (frames x J x 3) -> N x frames x J x 3;
    a motion no longer than ``frames`` is one window, a remainder shorter than ``frames`` is dropped."""
    if len(motion) <= frames:
        return motion[None]
    n = len(motion) // frames
    return motion[:n * frames].reshape(n, frames, *motion.shape[1:])


def mean_speed(track: np.ndarray, fps: float) -> float:
    """Mean speed (m/s) over frames and joints of frames x joints x 3 positions."""
    if len(track) < 2:
        return 0.0
    return float(np.linalg.norm(np.diff(track, axis=0), axis=-1).mean() * fps)


def root_travel(root: np.ndarray, fps: float, every: float = 0.2) -> float:
    """Horizontal travel per second (m/s) of a root track (frames x 3): the path length sampled every
    ``every`` seconds (so tremor does not count) over the duration."""
    step = max(1, int(round(every * fps)))
    pts = root[::step, :2]
    if len(pts) < 2:
        return 0.0
    return float(np.linalg.norm(np.diff(pts, axis=0), axis=-1).sum() / ((len(pts) - 1) * step / fps))


def floor_range(feet: np.ndarray) -> float:
    """Range (m) over frames of the lowest foot's height; feet: frames x feet x 3 (Z up). Near 0 when the
    subject stands on one floor; large when it floats up or sinks."""
    low = feet[..., 2].min(1)
    return float(low.max() - low.min())


def step_lift(feet: np.ndarray) -> float:
    """Highest lift (m) of one foot over the other within a window; feet: frames x 2 x 3 (Z up)."""
    return float(np.abs(feet[:, 0, 2] - feet[:, 1, 2]).max())


def excursion(track: np.ndarray) -> float:
    """The diagonal (m) of the box a point moves in over a window; track: frames x 3."""
    return float(np.linalg.norm(track.max(0) - track.min(0)))


def gesture(window: np.ndarray, joints: list[int], centre: list[int]) -> float:
    """The largest ``excursion`` (m) of one of ``joints`` relative to the body centre (the mean of ``centre``)
    in a window (frames x J x 3): a hand raised by 40 cm gives about 0.4, a body that only sways near 0."""
    rel = window[:, joints] - window[:, centre].mean(1, keepdims=True)
    return max(excursion(rel[:, k]) for k in range(len(joints)))


def _quantiles(values) -> dict:
    v = np.asarray(values, np.float64)
    if v.size == 0:
        return {f"p{q}": float("nan") for q in QUANTILES}
    return {f"p{q}": float(np.percentile(v, q)) for q in QUANTILES}


def motion_statistics(windows: np.ndarray, fps: float, limbs: list[int], feet: list[int], root: list[int],
                      legs: list[list[int]] | None = None) -> dict:
    """How alive, grounded and stepping a set of windows (N x frames x J x 3, metres, Z up) is.

    limbs: joints whose mean speed says whether the body moves; feet: the lowest joints (two for a
    biped: stepping is measured); root: joints whose mean is the body centre; legs: for quadrupeds,
    joints of each leg whose speed relative to the body centre is the leg speed.

    Returns the share of nearly still windows, limb-speed quantiles (m/s), root travel quantiles (m/s),
    the floor (the lowest foot's height range per window, its quantiles and the share within 5 cm),
    the share of travelling windows, how much the nearly still windows still move (``still_gesture``: the
    quantiles of their largest limb ``gesture``; ``still_sway``: of the body centre's ``excursion``; NaN
    without a still window), the share of windows that visibly move (``visible_share``: a limb's gesture of
    VISIBLE_GESTURE or more, or the body centre's excursion of VISIBLE_TRAVEL or more), and for bipeds the
    lift of one foot over the other in travelling windows with the share that step; for quadrupeds
    leg-speed quantiles.
    """
    limb = np.array([mean_speed(w[:, limbs], fps) for w in windows])
    travel = np.array([root_travel(w[:, root].mean(1), fps) for w in windows])
    floor = np.array([floor_range(w[:, feet]) for w in windows])
    out = {"windows": int(len(windows)), "still_share": float((limb < STILL_SPEED).mean()),
           "limb_speed": _quantiles(limb), "root_travel": _quantiles(travel),
           "floor_range": dict(_quantiles(floor), p95=float(np.percentile(floor, 95))),
           "floor_flat_share": float((floor <= FLAT_FLOOR).mean()),
           "travelling_share": float((travel > TRAVEL_SPEED).mean())}
    reach = np.array([gesture(w, limbs, root) for w in windows])
    sway = np.array([excursion(w[:, root].mean(1)) for w in windows])
    still = limb < STILL_SPEED
    out["still_gesture"], out["still_sway"] = _quantiles(reach[still]), _quantiles(sway[still])
    out["visible_share"] = float(((reach >= VISIBLE_GESTURE) | (sway >= VISIBLE_TRAVEL)).mean())
    if len(feet) == 2:
        moving = travel > TRAVEL_SPEED
        lift = np.array([step_lift(w[:, feet]) for w in windows[moving]])
        out["step_lift"] = {"p10": float(np.percentile(lift, 10)) if lift.size else float("nan"),
                            "p50": float(np.percentile(lift, 50)) if lift.size else float("nan")}
        out["stepping_share"] = float((lift >= STEP_LIFT).mean()) if lift.size else float("nan")
    if legs:
        centre = windows[:, :, root].mean(2, keepdims=True)
        rel = windows - centre
        out["leg_speed"] = _quantiles([np.mean([mean_speed(w[:, leg], fps) for leg in legs]) for w in rel])
    return out


PLANTED = 0.3          # a foot is planted in a frame when it moves at under this share of the body's speed


def motion_statistics_2d(windows: np.ndarray, fps: float, feet: list[int], root: int = 0) -> dict:
    """How alive a set of 2D windows is, and whether its feet plant while it travels: a check of
    a 2D model's own samples against its data, before any MAS.

    windows: N x frames x J x 2, metres in the image plane of one static camera per window.
    Speeds are taken over two frames. A window is nearly still when its joints (all but the root)
    move slower than STILL_SPEED on average; it travels when the root moves faster than
    TRAVEL_SPEED in most frames; in a travelling frame a foot is planted when the slowest of
    ``feet`` moves at under PLANTED times the root's speed (people: 78% of travelling frames in
    real 2D data; a glide: none). Returns the shares of still and travelling windows, the median
    planted share of travelling frames, and the share of travelling windows that plant a foot in
    at least 30% of their frames (nan where nothing travels).
    """
    if windows.ndim != 4 or windows.shape[1] < 3:
        raise ValueError(f"2D windows must be N x frames (3 or more) x joints x 2, got {windows.shape}")
    v = np.linalg.norm(windows[:, 2:] - windows[:, :-2], axis=-1) * fps / 2      # N, F-2, J
    others = [j for j in range(windows.shape[2]) if j != root]
    still = v[:, :, others].mean((1, 2)) < STILL_SPEED
    body = v[:, :, root]
    travelling = (body > TRAVEL_SPEED).mean(1) > 0.5
    planted = []
    for n in np.flatnonzero(travelling):
        frames = body[n] > TRAVEL_SPEED
        slowest = v[n][:, feet].min(-1)
        planted.append(float((slowest[frames] < PLANTED * body[n][frames]).mean()))
    planted = np.array(planted)
    return {"windows": int(len(windows)), "still_share": float(still.mean()),
            "travelling_share": float(travelling.mean()),
            "planted_share_p50": float(np.median(planted)) if planted.size else float("nan"),
            "planting_windows_share": float((planted >= 0.3).mean()) if planted.size else float("nan")}


# --- Seams: where windows of a long motion meet, and where a loop closes ---

def acceleration(track: np.ndarray, fps: float) -> np.ndarray:
    """Per frame, the mean joint acceleration magnitude (m/s^2) of frames x joints x 3 positions;
    frames - 2 values (value k belongs to frame k + 1)."""
    acc = (track[2:] - 2 * track[1:-1] + track[:-2]) * fps * fps
    return np.linalg.norm(acc, axis=-1).mean(-1)


def seam_ratio(motion: np.ndarray, joins, centres, fps: float, span_s: float = 1.0, loop: bool = False,
               given=()) -> float:
    """How much a seam shows: the median over ``joins`` (frames) of the largest acceleration within
    ``span_s`` around each, over the same at ``centres`` (frames inside windows, away from joins).
    1 means the seams are as smooth as the rest; a pop at the seams gives more. ``given``: frames
    the motion was given (a start's frames, taken from another motion): an acceleration of three
    given frames is theirs, not the seam's, and is left out."""
    a = acceleration(np.concatenate([motion[-1:], motion, motion[:1]]) if loop else motion, fps)
    if len(given) and not loop:
        g = set(int(f) for f in given)
        a = a.copy()
        a[[k for k in range(len(a)) if {k, k + 1, k + 2} <= g]] = 0.0     # a[k]: frames k, k + 1, k + 2
    shift = 0 if loop else 1          # index of frame f in a
    half = max(1, int(round(span_s * fps / 2)))

    def peak(c):
        idx = np.arange(int(round(c)) - half, int(round(c)) + half + 1) - shift
        idx = idx % len(a) if loop else idx[(idx >= 0) & (idx < len(a))]
        return a[idx].max()
    return float(np.median([peak(c) for c in joins]) / max(np.median([peak(c) for c in centres]), 1e-12))


def loop_closure(motion: np.ndarray, travel=None) -> dict:
    """A loop's seam from its last frame to its first, against the frame-to-frame changes inside it
    (frames x joints x 3): the position step and the velocity change (mean over joints, metres per
    frame) at the seam, and the 95th percentiles of both inside the motion. ``inside_within_p95``:
    the share of inside frames whose own step and velocity change are both within those
    percentiles (about 0.9 by construction): what a seam that is just another frame would score.
    ``travel`` (3, metres): a travelling loop's travel per period; the frame after the last is then
    the first moved on by it."""
    step = np.linalg.norm(np.diff(motion, axis=0), axis=-1).mean(-1)
    dv = np.linalg.norm(np.diff(motion, n=2, axis=0), axis=-1).mean(-1)
    first = motion[0] + (0.0 if travel is None else np.asarray(travel))    # the frame after the last
    after = motion[1] + (0.0 if travel is None else np.asarray(travel))
    seam_step = float(np.linalg.norm(first - motion[-1], axis=-1).mean())
    seam_dv = max(float(np.linalg.norm((first - motion[-1]) - (motion[-1] - motion[-2]), axis=-1).mean()),
                  float(np.linalg.norm((after - first) - (first - motion[-1]), axis=-1).mean()))
    step_p95, dv_p95 = float(np.percentile(step, 95)), float(np.percentile(dv, 95))
    inside = float(np.mean((step[1:] <= step_p95) & (dv <= dv_p95)))   # frame k+1: its step in and its velocity change
    return {"step": seam_step, "step_p95": step_p95, "velocity_change": seam_dv, "velocity_change_p95": dv_p95,
            "inside_within_p95": inside}
