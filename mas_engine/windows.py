"""Motions longer than the model, and loops: the denoiser runs on overlapping windows.

The 2D model makes at most ``max_frames`` frames. A longer motion (or a loop, whose last frame
flows into its first) is covered by windows of at most that length; every window of every view
is denoised as one batch, and the windows' x0 predictions are blended where they overlap with a
raised-cosine cross-fade (as DoubleTake in PriorMDM and MultiDiffusion do). MAS then triangulates
the whole blended motion at once, with one 3D noise for the whole length, so the windows agree
in 3D as the views do. For a loop the windows wrap around the end.

Windows coupled at every step still each other: a window whose margins disagree with its middle
is uncertain, and an uncertain x0 model predicts the mean pose. So while the noise is high the
windows work on their own (a ``solo`` plan: the fewest windows that cover the motion,
overlapping only by the few frames that rounding leaves; a loop no longer than the model still
gets two windows of three quarters of its length, averaged where they overlap), and only at the lowest noise levels
do they overlap by the full margin and cross-fade, which joins what they made
(``MasSettings.window_coupling``: the lowest 30% of the levels by default). Measured on 16
motions of 24 s, with the frames near joins left out: 53% nearly still 4 s windows, against 72%
always coupled and 66% never coupled (whose joins jump; docs/results.md). Where two solo windows
met, the motion jumps when the blending starts; so a long motion's blended windows are centred
on those places (``plan_staggered``): each is mended in the middle of one window, which sees the
motion on both sides, and the blended windows meet in the middle of a solo window. A loop's solo
windows meet at its seam, so a loop's windows blend for longer: for the lowest 80% of the
levels (``MasSettings.loop_coupling``).

A loop that travels steadily (a walk cycle that repeats while moving on) wraps round its end moved
on by its travel per period (``loop_travel``, ``windowed_denoiser(moved_on=...)``).

A window is centred in 2D before the model sees it (as the training windows were centred on
their mean root; the centre is the window's mean root in the previous step's prediction) and
the centre added back after: a long motion may travel far from where the cameras look.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass
class Windows:
    """index: n x L frame indices of each window (modulo the motion's length for a loop);
    weight: n x L cross-fade weights (positive; 1 inside, a raised-cosine ramp at inner edges);
    wraps: n x L, how many times a loop's window has gone round the end to reach that frame
    (0 or 1; a travelling loop's frame one period on lies one travel further)."""

    index: torch.Tensor
    weight: torch.Tensor
    frames: int
    loop: bool = False
    wraps: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.index.shape[0]

    def joins(self) -> list[float]:
        """The frame at the middle of each overlap of consecutive windows (and, for a loop, of the last
        with the first): where a seam would show."""
        starts = self.index[:, 0].tolist()
        L, out = self.index.shape[1], []
        for a, b in zip(starts, starts[1:] + ([starts[0] + self.frames] if self.loop else [])):
            out.append(((b + a + L) / 2) % self.frames)
        return out


def loop_travel(track, k: int = 4):
    """How far a loop travels in one period: track (..., frames, C), positions (the root's, say,
    numpy or torch) -> (..., C), the displacement from frame f to the same pose one period on.

    A loop with a steady travel is periodic plus that drift: the frame after the last is the first
    moved by it. Read off at the seam: the mean of the last k frames against the mean of the first k,
    plus k frames' worth of the velocity there (from the k frames before and after those), which is
    exact for a straight drift and leaves only a second-order error from the motion's own curvature
    at the seam. Frames: at least 4 k (shorter: k shrinks)."""
    F = track.shape[-2]
    k = max(1, min(k, F // 4))
    head, tail = track[..., :k, :].mean(-2), track[..., F - k:, :].mean(-2)
    after, before = track[..., k:2 * k, :].mean(-2), track[..., F - 2 * k:F - k, :].mean(-2)
    velocity = ((tail - before) + (after - head)) / (2 * k)
    return tail - head + k * velocity


def _ramp(n: int) -> torch.Tensor:
    """n weights rising smoothly from near 0 to near 1 (raised cosine, never exactly 0)."""
    x = (torch.arange(n, dtype=torch.float64) + 0.5) / n
    return 0.5 - 0.5 * torch.cos(math.pi * x)


def plan_windows(frames: int, length: int, overlap: int, loop: bool = False, align: int = 1) -> Windows:
    """Windows of ``length`` frames covering ``frames`` (wrapping around for a loop), overlapping by
    at least ``overlap``, starting on multiples of ``align`` (the model's frames per token) where
    possible. A loop no longer than ``length`` gets windows of three quarters of its length, so
    every window still sees the seam from both sides."""
    if loop and frames <= length:
        length = max(2 * align, (3 * frames // 4) // align * align)
        overlap = min(overlap, length // 3)
    overlap = min(overlap, length // 2)
    stride = length - overlap
    if loop:
        n = max(2, math.ceil(frames / stride))
        starts = [int(round(i * frames / n)) // align * align for i in range(n)]
    else:
        if frames <= length:
            starts = [0]
            length = frames
        else:
            n = math.ceil((frames - overlap) / stride)
            starts = [int(round(i * (frames - length) / (n - 1))) // align * align for i in range(n)]
            starts[-1] = frames - length
    offsets = torch.arange(length)
    index = torch.stack([(s + offsets) % frames for s in starts])
    wraps = torch.stack([(s + offsets) // frames for s in starts])
    ramp = _ramp(max(overlap, 1))
    weight = torch.ones(len(starts), length, dtype=torch.float64)
    for w in range(len(starts)):
        if loop or w > 0:
            weight[w, :len(ramp)] = torch.minimum(weight[w, :len(ramp)], ramp)
        if loop or w < len(starts) - 1:
            weight[w, -len(ramp):] = torch.minimum(weight[w, -len(ramp):], ramp.flip(0))
    return Windows(index, weight.float(), frames, loop, wraps)


def windows_at(starts, length: int, frames: int) -> Windows:
    """Windows of ``length`` frames starting at ``starts`` (ascending, within a motion of ``frames``
    frames, not a loop), each cross-faded with the next over however many frames they share."""
    starts = list(starts)
    index = torch.stack([s + torch.arange(length) for s in starts])
    weight = torch.ones(len(starts), length, dtype=torch.float64)
    for w, (a, b) in enumerate(zip(starts, starts[1:])):
        shared = a + length - b
        if shared > 0:
            ramp = _ramp(shared)
            weight[w + 1, :shared] = torch.minimum(weight[w + 1, :shared], ramp)
            weight[w, -shared:] = torch.minimum(weight[w, -shared:], ramp.flip(0))
    return Windows(index, weight.float(), frames, False, torch.zeros_like(index))


def plan_staggered(frames: int, tile: int, length: int, align: int = 1) -> tuple[Windows, Windows]:
    """A long motion's two plans, (blended, solo). Solo: the fewest windows of ``tile`` frames that
    cover the motion, each on its own. Blended: windows of ``length`` (> ``tile``) frames centred on
    the places where solo windows meet, plus the first and the last frames' own: each seam the solo
    windows leave is mended in the middle of one window, which sees the motion on both sides, and
    the blended windows meet in the middle of a solo window, where the motion is already of one
    piece. Starts on multiples of ``align`` where possible. 16 motions of 30 s: seams 1.15 against
    1.61 with both plans laid from the start alike (docs/results.md)."""
    solo = plan_windows(frames, tile, 0, False, align)
    starts = {0, frames - length}
    for s, b in zip(solo.index[:, 0].tolist(), solo.index[1:, 0].tolist()):
        centre = (b + s + tile) / 2                    # the middle of what two solo windows share
        starts.add(min(max(0, int(round(centre - length / 2)) // align * align), frames - length))
    return windows_at(sorted(starts), length, frames), solo


def end_fade(frames: int, n: int) -> torch.Tensor:
    """(frames,) weights: 1, then a raised cosine from 1 to 0 over the last ``n`` frames."""
    fade = torch.ones(frames)
    fade[frames - n:] = 0.5 + 0.5 * torch.cos(math.pi * (torch.arange(n) + 0.5) / n)
    return fade


def pace_rows(pace: torch.Tensor | None, n: int) -> torch.Tensor | None:
    """A pace class per motion (motions) -> one per row of a batch of n rows, each motion's rows (its views, its
    windows) together; None stays None."""
    return None if pace is None else pace.repeat_interleave(n // len(pace))


def windowed_denoiser(model, windows: Windows, num_joints: int, root: int, alpha_bar: torch.Tensor, chunk: int = 512,
                      solo: Windows | None = None, solo_from: int | None = None, moved_on=None, reversed_end=None,
                      self_condition: bool = False, pace: torch.Tensor | None = None):
    """denoise(x_t, t, x0_prev=None) for motions of any length: x_t (..., frames, joints, 2) -> x0 of the same
    shape; x0_prev: the previous step's x0 (as x_t), which a self-conditioned model reads.

    ``model(x, t)`` takes (N, L, joints, 2) and an (N,) step; windows go through it ``chunk`` at a
    time; with ``self_condition`` also ``x0_prev=``, the windows of ``x0_prev`` (None at the first
    step; ``ModelConfig.self_condition``). Each window is moved to the origin as the training windows
    were: by c, its mean root in the previous step's x0 (its own blend; 0 at the first step), which
    means x_t - sqrt(alpha_bar_t) c in (the noisy version of x0 - c) and c added to what comes out.
    ``alpha_bar``: the schedule's cumulative products, indexed by t. ``solo``: the plan used instead
    while t >= ``solo_from`` (the fewest windows that cover the motion, each on its own). ``moved_on`` (a loop that
    travels steadily, a walk cycle that repeats while moving on): moved_on() -> (..., frames,
    joints, 2) as x_t, or None: how far each frame moves in each view when seen one period on
    (the previous step's 3D motion moved by its travel and projected, less the same unmoved); a
    window that goes round the end sees the frames past it moved so, as if the walk went on.
    ``reversed_end`` = (n, below): the motion must end in a pose; while t < ``below`` its last n
    frames fade over to the model's prediction for its last window reversed in time (see
    ``sampler._denoiser``). ``pace``: each motion's pace class (motions, long; ``sampler.pace_classes``) for a
    model with pace classes, each motion's rows (views, then windows) together."""
    state = {"x0": None}

    def run(x, t, prev, rows=None):
        tt = torch.full((x.shape[0],), t, dtype=torch.long, device=x.device)
        kw = {"x0_prev": prev} if self_condition else {}
        if rows is not None:
            kw["pace"] = rows
        return model(x, tt, **kw)

    end_weight = end_fade(reversed_end[0], reversed_end[0])[None, :, None, None] if reversed_end is not None else None

    def denoise(x_t: torch.Tensor, t: int, x0_prev: torch.Tensor | None = None) -> torch.Tensor:
        plan = solo if solo is not None and t >= solo_from else windows
        idx, w = plan.index, plan.weight
        lead, F = x_t.shape[:-3], x_t.shape[-3]
        x = x_t.reshape(-1, F, num_joints, 2)                        # M, F, J, 2
        where = idx.to(x.device)
        sab = float(alpha_bar[t]) ** 0.5
        win = x[:, where]                                            # M, n, L, J, 2
        if state["x0"] is None:
            on = centre = torch.zeros_like(win[:, :, :1, :1])
        else:
            on = torch.zeros_like(win[:, :, :, :1])                  # M, n, L, 1, 2: a wrapped frame's travel
            shift = moved_on() if moved_on is not None and plan.loop else None
            if shift is not None:
                on = plan.wraps.to(x)[None, :, :, None, None] * shift.reshape(-1, F, num_joints, 2)[:, where]
            centre = (state["x0"][:, where][..., root:root + 1, :] + on).mean(dim=2, keepdim=True)
        flat = (win + sab * (on - centre)).reshape(-1, idx.shape[1], num_joints, 2)
        # the previous step's x0 (MAS's: the consistent one) in each window's frame, for a self-conditioned model
        prev = (x0_prev.reshape(x.shape)[:, where] + on - centre).reshape(flat.shape) \
            if self_condition and x0_prev is not None else None
        parts = flat.split(chunk)
        prevs = prev.split(chunk) if prev is not None else [None] * len(parts)
        paces = pace_rows(pace, flat.shape[0]).split(chunk) if pace is not None else [None] * len(parts)
        out = torch.cat([run(part, t, p, q) for part, p, q in zip(parts, prevs, paces)])
        pred = out.reshape(win.shape) + centre - on
        wd = w.to(x)
        blended = torch.zeros_like(x).index_add_(1, where.flatten(), (pred * wd[None, :, :, None, None]).flatten(1, 2))
        total = torch.zeros(F, dtype=x.dtype, device=x.device).index_add_(0, where.flatten(), wd.flatten())
        x0 = blended / total[None, :, None, None]
        if reversed_end is not None and t < reversed_end[1] and not plan.loop and int(idx[-1, -1]) == F - 1:
            last = flat.reshape(win.shape)[:, -1]                    # M, L, J, 2: the window that ends the motion
            back = run(last.flip(1), t, None if prev is None else prev.reshape(win.shape)[:, -1].flip(1),
                       pace_rows(pace, last.shape[0])).flip(1)
            n, L, w_end = reversed_end[0], idx.shape[1], end_weight.to(x)
            x0[:, F - n:] = w_end * x0[:, F - n:] + (1 - w_end) * (back[:, L - n:] + centre[:, -1])
        state["x0"] = x0
        return x0.reshape(*lead, F, num_joints, 2)
    return denoise
