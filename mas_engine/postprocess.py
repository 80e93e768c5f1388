"""What happens to sampled motions after the diffusion loop: the half-frame-rate band-stop, metres,
the travel of a motion made in place, the floor, and the constraints' final placement.
X: frames x joints x 3 (numpy), Z up.
"""
from __future__ import annotations

import numpy as np
import torch
from scipy.ndimage import gaussian_filter1d, uniform_filter1d

from .constraints import Constraints, posed_frames, pull_to_targets
from .errors import MasError
from .metrics import near_floor
from .priors import ancestry
from .windows import loop_travel


HALF_RATE_TAPS = (1, 8, 28, 56, 70, 56, 28, 8, 1)     # a 9-tap binomial low-pass (sum 256)


def alternation(X: torch.Tensor, loop: bool = False, travel: torch.Tensor | None = None) -> torch.Tensor:
    """The part of motions (batch x frames x ...) that alternates sign every frame.

    A denoiser that outputs two frames per token leaves a small offset between a token's two
    frames, a pattern at exactly half the frame rate (15 Hz at 30 fps; the shipped human model
    has 36x real capture's power there, and it is most of its jitter). Demodulate by (-1)^f,
    low-pass with a 9-tap binomial filter, modulate back: ``X - alternation(X)`` is a band-stop
    with gains 1 up to 5 Hz (0.996), 0.94 at 7.5 Hz, 0 at 15 Hz (at 30 fps). Edges are reflected
    (a loop: wrapped; an odd-length loop has no consistent phase, and gets zeros). ``travel``
    (batch x 3): a travelling loop's travel per period (``windows.loop_travel``), taken out before
    the wrap and so from the frames it joins (a straight drift has no alternation of its own).
    """
    F = X.shape[1]
    if F < 5 or (loop and F % 2):
        return torch.zeros_like(X)
    if loop and travel is not None:
        ramp = torch.arange(F, device=X.device, dtype=X.dtype) / F
        X = X - ramp.reshape((1, -1) + (1,) * (X.ndim - 3) + (1,)) * travel.reshape((-1, 1) + (1,) * (X.ndim - 3) + (3,))
    pad = len(HALF_RATE_TAPS) // 2
    f = torch.arange(F, device=X.device)
    if loop:
        idx = torch.cat([f[-pad:], f, f[:pad]])
    else:
        idx = torch.cat([f[1:pad + 1].flip(0), f, f[-pad - 1:-1].flip(0)])
    shape = (1, -1) + (1,) * (X.ndim - 2)
    sign = ((-1.0) ** torch.arange(F + 2 * pad, device=X.device, dtype=X.dtype)).reshape(shape)
    y = X[:, idx] * sign
    env = sum(w / 256.0 * y[:, k:k + F] for k, w in enumerate(HALF_RATE_TAPS))
    return sign[:, pad:pad + F] * env


def remove_alternation(X: np.ndarray, loop: bool = False, travel=None) -> np.ndarray:
    """A motion (frames x ... x 3) without its half-frame-rate alternation (``alternation``;
    ``travel``: a travelling loop's travel per period, 3)."""
    travel = None if travel is None else torch.as_tensor(np.asarray(travel, np.float64))[None]
    A = alternation(torch.from_numpy(np.asarray(X, np.float64))[None], loop, travel)[0].numpy()
    return (X - A).astype(X.dtype)


def seam_step(X: np.ndarray) -> np.ndarray:
    """A loop's frames (frames x ...): the step from its last frame to the next that the motion on
    either side of the seam implies, from the two steps before and the two after it (exact for
    motion that is cubic across the seam)."""
    before1, before2, after1, after2 = X[-1] - X[-2], X[-2] - X[-3], X[1] - X[0], X[2] - X[1]
    return (2 * (before1 + after1) - (before2 + after2) / 2) / 3


def travel_per_period(X: np.ndarray, root: int) -> np.ndarray:
    """A travelling loop's travel in one period (3, metres, on the floor: Z = 0) from its frames
    (frames x joints x 3): the frame after its last is its first moved on by this."""
    X = np.asarray(X, np.float64)
    travel = X[-1, root] + seam_step(X[:, root]) - X[0, root]
    travel[2] = 0.0
    return travel


def close_loop(X: np.ndarray, travel) -> np.ndarray:
    """A loop (frames x joints x 3, metres, Z up) whose seam flows on: one period on, every joint is
    where its motion on either side of the seam says (``seam_step``), moved on by ``travel`` (3: 0 for
    a loop in place, ``travel_per_period`` for one that travels); what a joint misses of that is
    spread over the period as a straight ramp (as an animator closes a cycle), a few millimetres a
    frame. The sampler keeps the frames next to the seam in one window, but not exactly: a travelling
    loop's travel there is an estimate, and windows blended at the seam do not quite agree."""
    X = np.asarray(X, np.float64)
    miss = X[0] + np.asarray(travel, np.float64) - (X[-1] + seam_step(X))       # joints x 3
    return X + miss * (np.arange(len(X)) / (len(X) - 1))[:, None, None]


STEADY_S = 2.5     # a travelling loop's travel is steady over periods longer than this (a stride is about 1 s)


def steady_travel(X: np.ndarray, root: int, travel, fps: float, slowest_s: float = STEADY_S) -> np.ndarray:
    """A travelling loop (frames x joints x 3, metres, Z up) whose travel is steady: the root's
    horizontal path, less the straight travel (``travel``: 3, per period), is periodic; its
    components slower than ``slowest_s`` (the loop's harmonics 1 .. frames / (slowest_s fps)) are
    taken out of the whole body. What is left is the straight travel and the gait's own sway and
    surge. Without it the model's loops tend to stand for most of the period and slide across the
    seam (8 s loops: seams within both 95th percentiles 75% -> 97%, docs/results.md)."""
    X = np.asarray(X, np.float64)
    F = len(X)
    f = np.arange(F)
    wander = X[:, root, :2] - np.asarray(travel, np.float64)[None, :2] * (f / F)[:, None]     # F x 2, periodic
    slow = np.zeros_like(wander)
    for k in range(1, int(F / (slowest_s * fps)) + 1):
        for b in (np.cos(2 * np.pi * k * f / F), np.sin(2 * np.pi * k * f / F)):
            slow += (2.0 / F) * (b @ wander)[None, :] * b[:, None]
    out = X.copy()
    out[..., :2] -= slow[:, None, :]
    return out


BLEND_IN_S = 1.0             # seconds over which a start's velocity fades into the motion as made
BLEND_BACK_S = 0.6           # the same where later constraints call the body back (a longer quintic overshoots more)
SMOOTH_IN_S = (0.067, 0.27, 0.6)   # next to a given pose: low-pass sigma; in full up to; faded out by (seconds)
SMOOTH_JOINS_S = (0.05, 0.1, 0.3)  # where a long motion's windows met: the same


def low_pass_where(X: np.ndarray, weight: np.ndarray, sigma: float, keep=None) -> np.ndarray:
    """X (frames x joints x 3) moved towards its Gaussian low-pass (``sigma`` frames) by ``weight``
    (frames, 0..1); ``keep`` (frames x joints x 3, bool): values left as they are."""
    X = np.asarray(X, np.float64)
    out = X + weight[:, None, None] * (gaussian_filter1d(X, sigma, axis=0, mode="nearest") - X)
    return np.where(keep, X, out) if keep is not None else out


def fading(distance: np.ndarray, full: float, fade: float) -> np.ndarray:
    """1 up to ``full``, a raised cosine down to 0 at ``fade``, 0 beyond (same units as distance)."""
    return 0.5 + 0.5 * np.cos(np.pi * np.clip((distance - full) / (fade - full), 0.0, 1.0))


def smooth_near_poses(X: np.ndarray, posed: np.ndarray, fps: float, keep=None) -> np.ndarray:
    """Low-pass the frames next to the poses a motion starts or ends in (motion frames x joints x 3;
    ``posed``: frames, bool, ``constraints.posed_frames``; of them, the runs at the first and the
    last frame count): a Gaussian of sigma SMOOTH_IN_S[0] in full within SMOOTH_IN_S[1] seconds of
    such a pose, faded out by SMOOTH_IN_S[2]. Where the sampler pulled a pose onto its targets, the
    model's motion next to it accelerates 2-3x its median (docs/results.md); farther on it is left
    as made. A key inside the motion is left alone: the smoothed frames around it would no longer
    meet it (the in-between's pop 0.95 -> 1.84). ``keep``: values left as they are."""
    posed = np.asarray(posed, bool)
    f = np.arange(len(posed))
    head, tail = (int(np.argmin(p)) if not p.all() else len(p) for p in (posed, posed[::-1]))   # runs at the ends
    edges = posed & ((f < head) | (f >= len(posed) - tail))
    if not edges.any():
        return np.asarray(X, np.float64)
    sigma, full, fade = (v * fps for v in SMOOTH_IN_S)
    d = np.abs(f[:, None] - np.flatnonzero(edges)[None]).min(1) - 1.0     # 0 next to a pose
    return low_pass_where(X, np.where(posed, 0.0, fading(d, full, fade)), sigma, keep)


def smooth_joins(X: np.ndarray, joins, fps: float) -> np.ndarray:
    """Low-pass a long motion (frames x joints x 3) where its windows met (``joins``, frames): a
    Gaussian of sigma SMOOTH_JOINS_S[0] within SMOOTH_JOINS_S[1] seconds of a join, faded out by
    SMOOTH_JOINS_S[2]. Two windows' predictions cross-fade there, and where they disagree the fade
    leaves 1.1-1.6x the median acceleration over the overlap (docs/results.md)."""
    if not len(joins):
        return np.asarray(X, np.float64)
    sigma, full, fade = (v * fps for v in SMOOTH_JOINS_S)
    d = np.abs(np.arange(len(X), dtype=np.float64)[:, None] - np.asarray(joins, np.float64)[None]).min(1)
    return low_pass_where(X, fading(d, full, fade), sigma)


def blend_in(X: np.ndarray, last: int, frames: int, keep=None, carry: int | None = None) -> np.ndarray:
    """A motion (frames x joints x 3) whose frames up to ``last`` are given (a start pose with its
    velocity) goes on from their position and velocity and reaches the motion as made ``frames``
    frames later: inertialization (Bollo 2016), a quintic offset that starts at the difference of
    position and velocity between the given frames and the made motion and ends at zero offset,
    velocity and acceleration. Without it the new frames keep the model's own velocity, and the
    velocity changes in one frame where the given ones end.

    ``carry`` (the root joint; only when nothing after the start is fixed): the root's horizontal
    velocity difference fades out (a smootherstep) and the ground it covers meanwhile is kept, so
    a body that arrives walking walks on a little instead of being pulled back to where the model
    put it; the rest (the pose, the height) returns by a quintic that starts with no acceleration
    (its peak is half that of Bollo's, which is chosen so a whole-body offset does not overshoot).
    ``keep`` (frames x joints x 3, bool): values left as they are (other constraints)."""
    X = np.asarray(X, np.float64)
    T = min(int(frames), len(X) - last - 1)
    if last < 1 or T < 3:
        return X

    def differences(Y):
        made_at_last = 2 * Y[last + 1] - Y[last + 2]         # the made motion, extrapolated back one frame
        return Y[last] - made_at_last, (Y[last] - Y[last - 1]) - (Y[last + 2] - Y[last + 1])

    out = X.copy()
    x0, v0 = differences(X)
    if carry is not None:
        h = np.array([1.0, 1.0, 0.0])
        s = np.clip(np.arange(1, len(X) - last, dtype=np.float64) / T, 0.0, 1.0)
        covered = T * (s - s ** 6 + 3 * s ** 5 - 2.5 * s ** 4)   # frames: the integral of 1 - smootherstep
        out[last + 1:] += x0[carry] * h + covered[:, None, None] * (v0[carry] * h)
        x0, v0 = differences(out)
        a0 = np.zeros_like(v0)
    else:
        a0 = (-8 * v0 * T - 20 * x0) / T ** 2                # Bollo's choice: no overshoot from the acceleration
    A = -(a0 * T ** 2 + 6 * v0 * T + 12 * x0) / (2 * T ** 5)
    B = (3 * a0 * T ** 2 + 16 * v0 * T + 30 * x0) / (2 * T ** 4)
    C = -(3 * a0 * T ** 2 + 12 * v0 * T + 20 * x0) / (2 * T ** 3)
    t = np.arange(1, T + 1, dtype=np.float64)[:, None, None]
    span = slice(last + 1, last + 1 + T)
    out[span] += A * t ** 5 + B * t ** 4 + C * t ** 3 + a0 / 2 * t ** 2 + v0 * t + x0
    return np.where(keep, X, out) if keep is not None else out


def start_run(mask: np.ndarray) -> int:
    """How many frames at the start a constraint mask (frames x joints x 3) fixes with more than one
    joint (a pose, not a root path)."""
    posed = posed_frames(mask)
    return int(np.argmin(posed)) if not posed.all() else len(posed)


def place_on_floor(X: np.ndarray, floor_offset: float) -> np.ndarray:
    """Shift a motion (frames x joints x 3, metres, Z up) so its lowest keypoint stands at floor_offset.

    The lowest keypoint per frame, at its 5th percentile over frames: robust to a stray frame.
    """
    low = np.percentile(X[..., 2].min(axis=1), 5)
    return X + np.array([0.0, 0.0, floor_offset - low], dtype=X.dtype)


def travel_from_feet(X: np.ndarray, feet: list[int], softness: float = 0.01,
                     lift: float = 0.15) -> np.ndarray:
    """Give a motion made in place (frames x joints x 3, metres, Z up) the travel its feet imply.

    A model trained in place (``mas prepare --in-place``: the root removed in every frame) makes
    the body's motion, not where it goes. Where a foot stands on the floor it should not move,
    so the body moves by the opposite of the standing foot's horizontal motion: from frame f-1
    to f the whole motion is shifted by -sum_k w_k (p_k(f) - p_k(f-1)), with w a softmin over
    the feet's heights in that step (the higher of f-1 and f; ``softness`` metres): the lower
    foot stands, both alike when both are down. When even the lowest foot is ``lift`` above the
    floor (the motion's lowest foot height), the body keeps the velocity it had (a jump or a
    run's flight). The root's own
    horizontal motion is kept; the first frame stays where it is. The body's steps are
    low-passed lightly, so the feet's jitter does not shake it.
    """
    if len(X) < 2 or not feet:
        return X
    P = X[:, feet].astype(np.float64)                        # F, K, 3
    h = P[..., 2]
    floor = float(np.percentile(h.min(axis=1), 5))
    h_step = np.maximum(h[1:], h[:-1])                       # F-1, K: a foot stands in a step if down at both ends
    w = np.exp(-(h_step - h_step.min(axis=1, keepdims=True)) / softness)
    w /= w.sum(axis=1, keepdims=True)
    v = -(w[..., None] * np.diff(P[..., :2], axis=0)).sum(axis=1)   # F-1, 2: the body's horizontal step
    flying = (h.min(axis=1)[1:] - floor) > lift
    for f in np.flatnonzero(flying):
        v[f] = v[f - 1] if f > 0 else 0.0
    if len(v) >= 5:
        # a 5-tap binomial low-pass (half gain at about 6 Hz at 30 fps): the feet's jitter and the
        # hand-over from one foot to the other do not shake the body
        vp = np.pad(v, [(2, 2), (0, 0)], mode="edge")
        v = sum(c * vp[k:k + len(v)] for k, c in enumerate((1 / 16, 4 / 16, 6 / 16, 4 / 16, 1 / 16)))
    shift = np.concatenate([np.zeros((1, 2)), np.cumsum(v, axis=0)])
    out = X.astype(np.float64).copy()
    out[..., :2] += shift[:, None, :]
    return out.astype(X.dtype)


FEET_TRAVEL_BELOW = 0.6    # m/s: a body slower than this (over 1 s) travels only as its feet step ("blend")
MODEL_TRAVEL_ABOVE = 1.2   # m/s: faster than this it keeps the model's travel: in a walk the generated feet
                           # glide on the floor, so their travel would slow it (docs/results.md, The body
                           # travels as its feet step when it moves slowly)
TRAVEL_SMOOTHING_S = 1.0   # s: the body's speed that chooses between the two, a moving mean over this
FEET_TRAVEL_SIGMA_S = 0.1  # s: the feet's travel low-passed (128 motions: the still share 21% -> 23%, real 26%)


def travel_from_feet_when_slow(X: np.ndarray, feet: list[int], root: int, fps: float,
                               below: float = FEET_TRAVEL_BELOW, above: float = MODEL_TRAVEL_ABOVE,
                               smoothing_s: float = TRAVEL_SMOOTHING_S) -> np.ndarray:
    """A motion (frames x joints x 3, metres, Z up) whose travel comes from its feet where it moves slowly.

    Where the root's horizontal speed (a moving mean over ``smoothing_s``) is under ``below`` m/s, the
    body moves as ``travel_from_feet`` says, that velocity low-passed (a Gaussian of ``FEET_TRAVEL_SIGMA_S``:
    the feet's small slides would otherwise shake a body that stands), so a shuffle or a sway does not
    drift away from feet that stand; over ``above`` it keeps its own travel; in between, a linear blend of
    the two velocities per frame. Only the whole body's horizontal place changes; the first frame stays
    where it is."""
    if len(X) < 2 or not feet:
        return X
    X64 = X.astype(np.float64)
    in_place = X64.copy()
    in_place[..., :2] -= X64[:, root:root + 1, :2] - X64[:1, root:root + 1, :2]
    from_feet = travel_from_feet(in_place, feet)
    speed = np.linalg.norm(np.diff(X64[:, root, :2], axis=0), axis=-1) * fps          # frames - 1
    speed = uniform_filter1d(speed, min(len(speed), max(1, int(round(smoothing_s * fps)))), mode="nearest")
    feet_share = np.clip((above - speed) / (above - below), 0.0, 1.0)
    feet_step = gaussian_filter1d(np.diff(from_feet[:, root, :2], axis=0), FEET_TRAVEL_SIGMA_S * fps, axis=0,
                                  mode="nearest")
    correction = feet_step - np.diff(X64[:, root, :2], axis=0)                        # the feet's step less the model's
    shift = np.concatenate([np.zeros((1, 2)), np.cumsum(feet_share[:, None] * correction, axis=0)])
    out = X64.copy()
    out[..., :2] += shift[:, None, :]
    return out.astype(X.dtype)


def finish_motions(loaded, X: np.ndarray, loop: bool = False, shift=None, constraints: Constraints | None = None,
                   travel: str = "model", loop_travels: bool = False, joins=(), foot_lock: bool = False) -> np.ndarray:
    """Sampled motions (motions x frames x joints x 3, normalised) -> metres, float32: on the floor,
    or, with constraints, moved by ``shift`` (motions x 3) onto them (a coordinate that no
    constraint fixes, such as the height under a root path, still goes on the floor).
    ``travel="feet"`` (or a model trained in place): the root's horizontal travel is replaced by
    what the feet imply (``travel_from_feet``), except in a loop or under constraints; ``"blend"``:
    so where the body moves slowly (``travel_from_feet_when_slow``), with the same exceptions.
    A loop's seam is closed (``close_loop``); ``loop_travels``: a loop that travels steadily
    (``windows.loop_travel``), which the band-stop takes out before it wraps round the end, and
    whose slow wander about that travel is taken out (``steady_travel``). ``joins``: frames where a
    long motion's windows met, low-passed (``smooth_joins``) before constraints are pulled back on.
    ``foot_lock``: the standing feet stay where they stand (``lock_feet``), except in a loop (whose
    seam a stance may cross) and where constraints fix a leg's joints."""
    X = X * loaded.scale
    if not np.isfinite(X).all():
        raise MasError("sampling produced non-finite joints; the checkpoint may be damaged or untrained")
    r = loaded.layout.root
    if loaded.config.alternates:
        X = np.stack([remove_alternation(x, loop, loop_travel(x[:, r]) if loop and loop_travels else None) for x in X])
    if len(joins) and not loop:
        X = np.stack([smooth_joins(x, joins, loaded.fps) for x in X])
    if loop and loop_travels and X.shape[1] >= 4:
        X = np.stack([steady_travel(x, r, travel_per_period(x, r), loaded.fps) for x in X])
    if loop and X.shape[1] >= 4:
        X = np.stack([close_loop(x, travel_per_period(x, r) if loop_travels else np.zeros(3)) for x in X])
    if (travel == "feet" or not loaded.root_motion) and constraints is None and not loop:
        # the travel comes from the feet (a loop stays as it is made)
        root, feet = loaded.layout.root, [loaded.layout.index(n) for n in loaded.layout.feet]
        X = X.copy()
        X[..., :2] -= X[:, :, root:root + 1, :2] - X[:, :1, root:root + 1, :2]
        X = np.stack([travel_from_feet(x, feet) for x in X])
    elif travel == "blend" and constraints is None and not loop:
        feet = [loaded.layout.index(n) for n in loaded.layout.feet]
        X = np.stack([travel_from_feet_when_slow(x, feet, r, loaded.fps) for x in X])
    if constraints is not None:
        # the band-stop moved the constrained values by a little: pull them back, smoothly
        X, rest = pull_to_targets(torch.from_numpy(X + shift[:, None, None, :] * loaded.scale),
                                  torch.from_numpy(constraints.targets), torch.from_numpy(constraints.mask),
                                  constraints.falloff, loop, loaded.layout.root)
        X = (X + rest[:, None, None, :]).numpy()
        if not loop:
            posed = posed_frames(constraints.mask)
            X = np.stack([smooth_near_poses(x, posed, loaded.fps, constraints.mask) for x in X])
        n = start_run(constraints.mask)
        if 2 <= n < X.shape[1] and not loop:       # a start with a velocity: go on with it, then blend in
            carry = None if constraints.mask[n:].any() else r      # nothing fixed later: the body walks on
            frames = int(round((BLEND_IN_S if carry is not None else BLEND_BACK_S) * loaded.fps))
            X = np.stack([blend_in(x, n - 1, frames, constraints.mask, carry) for x in X])
    if constraints is None or not constraints.mask[..., 2].any():
        X = np.stack([place_on_floor(x, loaded.layout.floor_offset) for x in X])
    if foot_lock and not loop and loaded.layout.feet:
        feet = [loaded.layout.index(n) for n in loaded.layout.feet]
        fixed = constraints.mask.any(-1) if constraints is not None else None
        X = np.stack([lock_feet(x, feet, loaded.layout.parents, loaded.fps, fixed=fixed) for x in X])
    return X.astype(np.float32)


LOCK_SPEED = 1.0      # m/s: a foot near the floor slower than this (over 5 frames) stands (docs/results.md:
                      # a generated foot glides at 0.3-1 m/s where real capture's stands)
LOCK_FADE = 6         # frames over which the lock fades out towards a frame whose leg a constraint fixes
LOCK_HEIGHT = 0.05    # m: near the floor: within this of the foot's own lowest height (its 5% quantile)


def runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """(start, end) of each run of True in a 1D boolean mask, end exclusive."""
    edges = np.diff(np.concatenate([[0], mask.astype(int), [0]]))
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)))


def standing(X: np.ndarray, feet: list[int], fps: float, speed: float = LOCK_SPEED,
             height: float = LOCK_HEIGHT) -> np.ndarray:
    """frames x len(feet) booleans: the foot stands (near the floor and slow). X: frames x joints x 3,
    metres, Z up. The speed is over 5 frames, so the frame-to-frame jitter of a standing foot does not
    hide its stance; a stance shorter than 3 frames is none."""
    P = X[:, feet]
    pad = np.pad(P[..., :2], [(2, 2), (0, 0), (0, 0)], mode="edge")
    v = np.linalg.norm(pad[4:] - pad[:-4], axis=-1) * fps / 4
    mask = near_floor(P, height) & (v < speed)
    for k in range(len(feet)):
        for s, e in runs(mask[:, k]):
            if e - s < 3:
                mask[s:e, k] = False
    return mask


def two_bone_ik(hip: np.ndarray, knee: np.ndarray, foot: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Move a leg's knee and foot (each N x 3) so that the foot reaches ``target`` (N x 3) with the hip
    where it is and both bones their lengths; the knee bends in the plane it bent in. A target out of
    reach is moved horizontally towards the hip until the leg reaches it (nearly straight), so a foot
    on the floor stays on it (and slides a little); one too far below the hip, straight towards it.
    Returns (knee, foot)."""
    l1 = np.linalg.norm(knee - hip, axis=-1, keepdims=True)
    l2 = np.linalg.norm(foot - knee, axis=-1, keepdims=True)
    d = target - hip
    horizontal = np.linalg.norm(d[:, :2], axis=-1, keepdims=True)
    allowed = np.sqrt(np.maximum((0.999 * (l1 + l2)) ** 2 - d[:, 2:] ** 2, 0.0))
    d[:, :2] *= np.minimum(1.0, allowed / np.maximum(horizontal, 1e-9))
    dist = np.linalg.norm(d, axis=-1, keepdims=True)
    reach = np.clip(dist, np.abs(l1 - l2) + 1e-6, 0.999 * (l1 + l2))
    u = d / np.maximum(dist, 1e-9)
    target = hip + u * reach
    bend = (knee - hip) - ((knee - hip) * u).sum(-1, keepdims=True) * u     # the knee's side of the line
    straight = np.linalg.norm(bend, axis=-1, keepdims=True) < 1e-6
    bend = np.where(straight, np.cross(u, [0.0, 0.0, 1.0]), bend)          # a straight leg: any side
    n = bend / np.maximum(np.linalg.norm(bend, axis=-1, keepdims=True), 1e-9)
    a = (l1 ** 2 - l2 ** 2 + reach ** 2) / (2 * reach)
    h = np.sqrt(np.maximum(l1 ** 2 - a ** 2, 0.0))
    return hip + a * u + h * n, target


def plants(foot: np.ndarray, mask: np.ndarray, blend: int, anchored: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Where a foot (frames x 3) stands and how firmly: each run of ``mask`` (frames) holds the foot at
    its mean horizontal place over the run, easing in and out over ``blend`` frames; a run with
    ``anchored`` frames (frames booleans: the foot is where a constraint put it) holds it where they
    put it instead, so the stance goes on from the constrained pose without a jump (between two
    anchored frames that disagree, such as two keyed poses, it slides from one place to the other).
    Returns the weights (frames, 0..1) and the places (frames x 2)."""
    F = len(foot)
    w, place = np.zeros(F), foot[:, :2].copy()
    for s, e in runs(mask):
        i = np.arange(max(0, s - blend), min(F, e + blend))
        ramp = np.clip(1 - np.maximum(s - i, i - e + 1) / (blend + 1), 0.0, 1.0)
        take = ramp > w[i]
        k = np.flatnonzero(anchored[s:e]) if anchored is not None else np.zeros(0, int)
        if len(k):
            t = np.clip(i - s, k[0], k[-1])
            held = np.stack([np.interp(t, k, foot[s:e][k, d]) for d in (0, 1)], -1)
        else:
            held = np.broadcast_to(foot[s:e, :2].mean(0), (len(i), 2))
        w[i[take]], place[i[take]] = ramp[take], held[take]
    return w, place


def lock_feet(X: np.ndarray, feet: list[int], parents, fps: float, speed: float = LOCK_SPEED,
              blend: int = 3, fixed: np.ndarray | None = None) -> np.ndarray:
    """A motion (frames x joints x 3, metres, Z up) whose standing feet (``standing``) stay where they
    stand (``plants``), the leg following by two-bone IK (``two_bone_ik``: the foot's parent is the
    knee, its grandparent the hip); joints below a foot move with it. The body is untouched: where it
    drifts, the leg reaches after the planted foot as far as it can, and beyond that the foot slides
    on the floor (it is never lifted: a step made by the IK would not be a step). A foot without a
    knee and hip is left as it is; ``fixed`` (frames x joints booleans: positions a constraint fixes):
    a leg is left as it is in the frames where its hip, knee or foot is fixed, and a stance that
    includes such frames holds the foot where the constraint put it."""
    out = X.astype(np.float64).copy()
    for j in feet:
        knee = parents[j]
        hip = parents[knee] if knee >= 0 else -1
        if hip < 0:
            continue
        leg_fixed = fixed[:, [hip, knee, j]].any(-1) if fixed is not None else None
        stands = standing(X, [j], fps, speed)[:, 0]
        w, place = plants(out[:, j], stands, blend, leg_fixed)
        if leg_fixed is not None and leg_fixed.any():
            # a stance that does not hold the constrained foot fades out towards the fixed frames: the
            # foot pulled to a pose moves fast next to it, and held until then it would catch up at once
            # (an in-between's pop, 16 motions: 1.59 -> 1.57; following the anchors took it from 2.00)
            near = np.abs(np.arange(len(w))[:, None] - np.flatnonzero(leg_fixed)[None]).min(1)
            fade = np.clip(near / LOCK_FADE, 0.0, 1.0)
            for s, e in runs(stands):
                if leg_fixed[s:e].any():                       # held where the constraint put it: no jump
                    fade[max(0, s - blend):e + blend] = 1.0
            w *= fade
            w[leg_fixed] = 0.0
        on = w > 0
        if not on.any():
            continue
        goal = out[on, j].copy()
        goal[:, :2] = (1 - w[on, None]) * goal[:, :2] + w[on, None] * place[on]
        knee_at, foot_at = two_bone_ik(out[on, hip], out[on, knee], out[on, j], goal)
        below = [c for c in range(len(parents)) if c != j and ancestry(tuple(parents))[c, j]]
        out[np.flatnonzero(on)[:, None], below] += (foot_at - out[on, j])[:, None]
        out[on, knee], out[on, j] = knee_at, foot_at
    return out.astype(X.dtype)
