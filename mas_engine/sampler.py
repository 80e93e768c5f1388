"""Sampling: plain 2D ancestral sampling and MAS, Multi-view Ancestral Sampling.

Both are the same ancestral loop (``ancestral_loop``): at each step, predict x0, optionally
make it consistent, then draw x_{t-1} from the DDPM posterior q(x_{t-1} | x_t, x0).
MAS runs V views of each motion through the model as one batch and its consistency block
triangulates one 3D motion from the V predictions and projects it back into every view.
The noise is 3D noise: one Gaussian per motion (frames x joints x 3) rotated into each
view and projected orthographically, so every view's noise is N(0, I) and they agree.

All in normalised units (metres / the model's scale); cameras look at the origin.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from . import validate
from .cameras import Cameras, perspective
from .catalogue import PACES, check_travel
from .checkpoint import LoadedModel
from .constraints import Constraints, posed_frames, pull_to_targets
from .diffusion import Schedule, alpha_bar_schedule, posterior_step
from .errors import Cancelled, MasError
from .postprocess import alternation, finish_motions
from .priors import constraint_lengths, level_loop, on_floor, rigid_bones
from .reference import ReferenceConsistency
from .triangulate import triangulate
from .windows import end_fade, pace_rows, plan_staggered, plan_windows, windowed_denoiser


@dataclass
class MasSettings:
    """How to sample. None means the model's default (its card's cameras, all steps)."""

    views: int = 5
    steps: int | None = None
    elevation_deg: float | None = None
    distance_m: float | None = None
    noise_3d: bool = True               # False: independent per-view noise (ablation)
    view_noise_share: float | None = None  # the share of the noise levels, the lowest, whose noise each view draws
                                        # on its own instead of projecting one 3D draw. There the denoiser leaves part
                                        # of the noise in its x0, the same in every view when it comes from one 3D
                                        # draw, so triangulation keeps it as a tremor; drawn per view, the views'
                                        # leftovers differ and triangulation averages them (shipped human, 0.1: jitter
                                        # 6.14 -> 4.29 m/s^2, real 3.68; docs/results.md, The last steps' noise drawn per view).
                                        # None: the model's default (LoadedModel.view_noise_share)
    noiseless_share: float | None = None  # the share of the noise levels, the lowest, whose steps add no fresh
                                        # noise (x_{t-1} is the posterior mean): what the denoiser leaves of each
                                        # step's fresh noise is a tremor that made the stillest motions move at
                                        # 0.13 m/s; then none left (shipped human, 0.12: 30% of windows nearly
                                        # still against 0%, real 26-28%; docs/results.md, Noiseless last steps).
                                        # None: the model's default (LoadedModel.noiseless_share), 0 with
                                        # constraints (their pops grow without the noise)
    triangulation: str = "fast"         # "reference": the reference code's Adam loop (benchmarks only)
    rigid_bones: bool = True            # after each triangulation, every bone at its median length (rigid_bones);
                                        # off: the paper's MAS (see docs/results.md for both)
    batch_size: int | None = None       # motions per model call; None: 8 on CPU, 256 on GPU
    loop: bool = False                  # the last frame flows into the first (windows wrap around)
    loop_travel: bool = False           # a loop may travel steadily (a walk cycle that repeats while moving
                                        # on); False: it returns to where it started
    floor: bool | None = None           # after each triangulation, the lowest foot on one floor (on_floor);
                                        # None: the model's default (LoadedModel.floor_prior)
    foot_lock: bool = True              # the standing feet stay where they stand, the legs following by IK
                                        # (postprocess.lock_feet); not in loops (docs/results.md, A foot lock)
    travel: str | None = None           # "model": the root's travel as the model makes it; "feet": what the feet
                                        # imply (postprocess.travel_from_feet; a model trained in place always
                                        # does); "blend": the feet's where the body moves slowly
                                        # (travel_from_feet_when_slow). None: the model's default (LoadedModel.travel)
    window_frames: int | None = None    # the windows that make a motion longer than the model on their own (at
                                        # high noise); the blended windows that join them are longer by twice
                                        # the overlap, up to the model's length (window_plans). None: the
                                        # model's less the overlap (104 of 120 frames). 90-frame windows made the
                                        # shipped human's 30 s motions restless and their seams sharper
                                        # (docs/results.md, Long motions with human-skip3). Loops keep the model's length
    window_overlap_s: float = 0.5       # seconds that blended windows of a long motion overlap, at least (windows.py;
                                        # 1 s made 12 s motions stiller: 79% against 67% nearly still windows)
    window_coupling: float = 0.3        # the share of the noise levels, the lowest, at which the windows of a
                                        # long motion overlap and blend; above, they work on their own
                                        # (windows.py); 1: always
    pace: int | str = "data"            # for a model with pace classes (ModelConfig.pace_classes): how much each
                                        # motion moves. "data": the seeds take the classes in turn, each as often
                                        # as the training windows have it, or as the card's pace_shares say
                                        # (pace_classes); "training": as the training windows have it, whatever
                                        # the card says; 0 .. C - 1: that class for every motion (0 the
                                        # stillest); "any": the class the model reads when it is not told
    pace_guidance: float | None = None  # classifier-free guidance on the pace class: x0 = x0_any + g (x0_class -
                                        # x0_any), at twice the model's time; 1: none. 2 halved the shipped
                                        # human's 3D Frechet distance (docs/results.md, A pace class). None: the
                                        # model's default (LoadedModel.pace_guidance: 2, or 1 when distilled)
    pace_guidance_from: float = 0.0     # the share of the noise levels, the lowest, left unguided (pace_guided);
                                        # 0: guided at every step
    loop_coupling: float = 0.8          # the same for a loop, whose windows on their own meet at its seam, so
                                        # they blend for longer (32 loops of 4 s: 66% nearly still against
                                        # 84% always blended, seams as good; docs/results.md)


@dataclass
class SampleResult:
    joints: np.ndarray                  # motions x frames x joints x 3, metres, Z up
    seeds: list[int]
    fps: float
    stats: dict = field(default_factory=dict)


def ancestral_loop(denoise, schedule: Schedule, x_t: torch.Tensor, noise_at, consistency=None,
                   progress=None, cancel=None) -> torch.Tensor:
    """x_T -> x_0 by ancestral sampling.

    denoise(x_t, t, x0) -> x0 prediction, given the previous step's x0 (None at the first step), which a
    self-conditioned model reads; noise_at(k) -> the posterior noise of chain step k (None: its mean);
    consistency(x0) -> x0 made consistent (MAS), or None (plain sampling).
    progress(done, total) is called after each step; cancel() True stops with Cancelled.
    """
    K = len(schedule)
    x0 = None
    for k in reversed(range(K)):
        if cancel is not None and cancel():
            raise Cancelled("sampling cancelled")
        x0 = denoise(x_t, int(schedule.timesteps[k]), x0)
        if consistency is not None:
            x0 = consistency(x0)
        x_t = posterior_step(schedule, k, x_t, x0, noise_at(k) if k > 0 else None)
        if progress is not None:
            progress(K - k, K)
    return x_t


class MultiViewConsistency:
    """The MAS consistency block: triangulate the views' x0 into 3D, project back.

    x0: motions x views x frames x joints x 2. Keeps the latest 3D motion in ``X`` (motions x
    frames x joints x 3), which warm-starts the next step and fills joints the views cannot
    determine. The closed-form solve weights each view by 1 / depth^2 at the previous step's
    solution: the linear residual is the reprojection residual times the depth, so the solve
    then minimises the reprojection error itself (what a Gauss-Newton step would reach: extra
    steps changed the reprojection error by less than 0.01% at the sampling cameras' distance),
    at the cost of one linear solve.
    ``bones``: (parents, joints to keep) to make every step's 3D motion rigid (``rigid_bones``);
    with constraints, the bones of the poses they fix set the lengths (``constraint_lengths``).
    ``feet``: joints for the floor prior (``on_floor``); ``constraints``: (targets, mask, falloff) to
    pull every step's 3D motion onto (``constraints.pull_to_targets``, carried by the ``root``;
    ``loop``: the falloff wraps around the end). ``travel``: a loop travels steadily, on the floor
    (``level_loop``); its travel per period is kept in ``travel``. ``alternating``: the model leaves a half-frame-rate
    alternation (two frames per token) that ``finish_motions`` removes at the end; the pull then
    moves the motion without it (``postprocess.alternation``), so the constrained frames keep the
    alternation of their neighbours and the final band-stop does not smear a break in it around
    the constraint (a start pose's pop: 6.0 -> 5.3, docs/results.md).
    """

    def __init__(self, cams: Cameras, bones=None, constraints=None, loop: bool = False, feet=None, root: int = 0,
                 alternating: bool = False, travel: bool = False):
        self.cams, self.bones, self.feet, self.root, self.alternating = cams, bones, feet, root, alternating
        self.travels, self.travel = loop and travel, None        # travel: motions x 3 per period
        self.constraints, self.loop = constraints, loop      # (targets, mask, falloff) in normalised units
        # a pose to pass through brings its skeleton: its bones' lengths replace the median
        self.lengths = constraint_lengths(constraints[0], constraints[1], bones[0]) \
            if bones is not None and constraints is not None else None
        self.shift = None                                    # the translation that puts X on its targets
        self.X = None
        self.depth_weights = None
        self.seconds = 0.0

    def __call__(self, x0: torch.Tensor) -> torch.Tensor:
        t0 = time.perf_counter()
        uv = x0.permute(0, 2, 3, 1, 4)                       # B, F, J, V, 2
        X = triangulate(self.cams, uv, self.depth_weights, iters=0, init=self.X)
        if self.bones is not None:
            X = rigid_bones(X, *self.bones, lengths=self.lengths)
        if self.feet:
            X = on_floor(X, self.feet)
        if self.travels:
            X, self.travel = level_loop(X, self.root)
        if self.constraints is not None:
            A = alternation(X, self.loop, self.travel) if self.alternating else 0.0
            X, self.shift = pull_to_targets(X - A, *self.constraints, loop=self.loop, root=self.root)
            X = X + A
        self.X = X
        p = self.cams.to_camera(X)                           # B, F, J, V, 3
        self.depth_weights = p[..., 2].clamp(min=1e-3) ** -2  # for the next step's solve
        out = perspective(p, self.cams.focal[:, None]).permute(0, 3, 1, 2, 4)
        self.seconds += time.perf_counter() - t0
        return out

    def moved_on(self) -> torch.Tensor | None:
        """A travelling loop: how far every frame of the latest 3D motion moves in each view when it is
        seen one period on (moved by ``travel``), B x V x F x J x 2 (None before the first step)."""
        if self.X is None or self.travel is None:
            return None
        project = lambda X: perspective(self.cams.to_camera(X), self.cams.focal[:, None])  # noqa: E731
        return (project(self.X + self.travel[:, None, None, :]) - project(self.X)).permute(0, 3, 1, 2, 4)


def _generators(seeds, device) -> list[torch.Generator]:
    return [torch.Generator(device=device).manual_seed(int(s)) for s in seeds]


def draw_noise(seeds, shape, device) -> torch.Tensor:
    """One noise tensor per seed, stacked on dim 1: (shape[0], len(seeds), *shape[1:]).

    Each motion's noise comes from its own generator, so a seed gives the same motion
    whatever else is in the batch.
    """
    return torch.stack([torch.randn(shape, generator=g, device=device) for g in _generators(seeds, device)], 1)


def steps_below(schedule: Schedule, share: float, train_steps: int) -> int:
    """How many chain steps lie in the lowest ``share`` of the model's noise levels (t < share x T)."""
    return int((torch.as_tensor(schedule.timesteps) < share * train_steps).sum())


REVERSED_END = (20, 0.3)    # frames over which a pose to end in is made from the reversed motion; share of levels


def pace_classes(loaded: LoadedModel, seeds, pace, device) -> torch.Tensor | None:
    """Each motion's pace class (motions, long) for a model with pace classes, else None. ``pace``
    (``MasSettings.pace``): "data" gives seed s the class C - 1 - (s mod C), so that any C consecutive seeds
    hold every class once, as often as the training windows have them (the classes are their quantile bins),
    and seed 0, the first a user sees, the liveliest; with the card's ``pace_shares``, ``seeded_classes``;
    "training" the classes in turn whatever the card says (the model's own distribution, as the paper's 2D
    protocol measures it); a number gives every motion that class; "any" the class for "not told"."""
    C = loaded.config.pace_classes
    if not C:
        return None
    if pace in ("data", "training"):
        shares = loaded.pace_shares if pace == "data" else None     # "training": the quantile bins' equal shares
        classes = [C - 1 - int(s) % C for s in seeds] if shares is None else seeded_classes(seeds, shares)
    else:
        classes = [C if pace == "any" else int(pace)] * len(seeds)
    return torch.tensor(classes, dtype=torch.long, device=device)


GOLDEN = (5 ** 0.5 - 1) / 2


def seeded_classes(seeds, shares) -> list[int]:
    """Seed s's class when class c is to be drawn a ``shares[c]`` of the time (stillest first, summing to 1):
    the class, liveliest first, whose stretch of [0, 1) holds frac(s x 0.618...), the golden-ratio sequence,
    so that any n consecutive seeds hold each class within a few motions of n x its share (Weyl 1916), and
    seed 0, the first a user sees, is the liveliest."""
    bounds = np.cumsum(shares[::-1])            # liveliest first
    u = [(int(s) * GOLDEN) % 1.0 for s in seeds]
    return [len(shares) - 1 - min(int(np.searchsorted(bounds, x, side="right")), len(shares) - 1) for x in u]


def guidance_of(loaded: LoadedModel, settings: MasSettings) -> float:
    """The pace guidance to sample with: the settings', else the model's (``LoadedModel.pace_guidance``)."""
    return settings.pace_guidance if settings.pace_guidance is not None else loaded.pace_guidance


def pace_guided(model, classes: int, scale, from_t: int = 0, away_from=None, below=None):
    """``model`` with classifier-free guidance on its pace class (Ho & Salimans 2022): x0_ref + scale (x0_class
    - x0_ref), both in one call of twice the rows; the model itself where it is not told a class, where scale
    is 1, and below noise step ``from_t`` (guidance in a limited interval, Kynkaenniemi et al. 2024: how much
    a motion moves is settled at the noisier steps, and each unguided step costs half). ``scale``: one number,
    or one a class (guidance distillation can pull each class by its own amount). ``away_from``: each class's
    reference, one a class: ``None`` or "any" for x0_any (the model not told a class; the default), or a class
    to pull away from, as a negative prompt: a calm class guided away from the stillest gestures more, where
    guided away from "any" it stills (docs/results.md, *Guided away from the stiller class*). ``below``: None, or
    one noise step a class: that class is guided only where t < it, row by row (a class pulled hard away from the
    stillest at the noisier steps makes gestures unlike real ones; pulled only at the quieter steps it gestures
    and stays near real 2D motion: *Guided only at the quieter steps*)."""
    scales = torch.tensor(list(scale) if isinstance(scale, (list, tuple)) else [float(scale)] * max(classes, 1),
                          dtype=torch.float64)
    refs = torch.tensor(pace_references(classes, away_from), dtype=torch.long)
    if not classes or bool((scales == 1.0).all()):
        return model
    if below is not None and len(below) != classes:
        raise MasError(f"guidance below a noise step given for {len(below)} classes for a model of {classes} pace "
                       "classes; give one a class, stillest first")
    limits = None if below is None else torch.tensor([int(b) for b in below], dtype=torch.long)

    def guided(x, t, length=None, x0_prev=None, pace=None):
        if pace is None or bool((pace == classes).all()) or int(t.max()) < from_t:   # nothing to guide by, or low
            return model(x, t, length, x0_prev, pace)
        told_as = pace.clamp(max=classes - 1)
        g = scales.to(x)[told_as]                                        # "any": told == free
        if limits is not None:                                           # above its limit a class is itself
            g = torch.where(t < limits.to(t.device)[told_as], g, torch.ones_like(g))
        if bool((g == 1).all()):                                         # no row guided: one call
            return model(x, t, length, x0_prev, pace)
        ref = torch.where(pace == classes, pace, refs.to(pace.device)[told_as])       # "any" stays "any"
        two = lambda a: None if a is None else torch.cat([a, a])  # noqa: E731
        out = model(two(x), two(t), two(length), two(x0_prev), torch.cat([pace, ref]))
        told, free = out[:x.shape[0]], out[x.shape[0]:]
        return free + g.view(-1, *[1] * (told.dim() - 1)) * (told - free)
    return guided


def pace_references(classes: int, away_from=None) -> list[int]:
    """The class each pace class's guidance pulls away from (``pace_guided``), as model inputs: ``classes``
    for "any" (the model not told a class). ``away_from``: None (all "any") or one entry a class, each None,
    "any" or a class index other than its own. Raises MasError for anything else."""
    if away_from is None:
        return [classes] * max(classes, 1)
    if len(away_from) != classes:
        raise MasError(f"pace guidance away from {len(away_from)} classes for a model of {classes} pace classes; "
                       "give one a class, stillest first ('any' or a class number)")
    refs = []
    for c, a in enumerate(away_from):
        if a is None or str(a).strip().lower() == "any":
            refs.append(classes)
            continue
        try:
            r = int(a)
        except (TypeError, ValueError):
            r = -1
        if not 0 <= r < classes or r == c:
            raise MasError(f"class {c}'s guidance cannot pull away from {a!r}: give 'any' or another class, "
                           f"0 .. {classes - 1}")
        refs.append(r)
    return refs


def _denoiser(loaded: LoadedModel, frames, reversed_end: bool = False, pace: torch.Tensor | None = None,
              guidance: float = 1.0, guidance_from: float = 0.0):
    """denoise(x_t, t) for a motion the model makes in one piece. ``reversed_end``: the motion must end
    in a pose. The model's last frame positions are its least trained (full-length windows are rare in
    training) and make the last frames of its 4 s motions jerky; so for the lowest 30% of the noise
    levels the model also denoises the motion reversed in time, whose first positions are its best
    trained, and the last 20 frames fade over to that (an end pose's pop 2.07 -> 1.25, docs/results.md).
    A self-conditioned model reads the previous step's x0 (``ModelConfig.self_condition``; MAS's is the
    consistent one, the triangulated motion projected back). ``pace``: each motion's pace class (``pace_classes``),
    ``guidance`` the scale of ``pace_guided``, from the share ``guidance_from`` of the noise levels up."""
    cfg = loaded.config
    model = pace_guided(loaded.model, cfg.pace_classes, guidance, int(round(guidance_from * cfg.diffusion_steps)))
    n, share = min(REVERSED_END[0], frames // 2), REVERSED_END[1]
    fade = end_fade(frames, n)

    def run(x, tt, prev):
        kw = {"x0_prev": prev} if cfg.self_condition else {}
        if pace is not None:
            kw["pace"] = pace_rows(pace, x.shape[0])
        return model(x, tt, **kw)

    def denoise(x_t, t, x0_prev=None):
        flat = x_t.reshape(-1, frames, cfg.num_joints, 2)
        prev = None if x0_prev is None else x0_prev.reshape(flat.shape)
        tt = torch.full((flat.shape[0],), t, dtype=torch.long, device=flat.device)
        x0 = run(flat, tt, prev)
        if reversed_end and t < share * cfg.diffusion_steps:
            w = fade.to(x0)[None, :, None, None]
            x0 = w * x0 + (1 - w) * run(flat.flip(1), tt, None if prev is None else prev.flip(1)).flip(1)
        return x0.reshape(x_t.shape)
    return denoise


def check_request(loaded: LoadedModel, frames: int, settings: MasSettings | None = None) -> None:
    """Raise MasError for a request the model cannot serve, before any work starts."""
    _check_frames(loaded, frames, windowed=settings is not None)
    if settings is not None:
        validate.number("window overlap (seconds)", settings.window_overlap_s, 0.0, 60.0)
        if settings.window_frames is not None:
            validate.integer("window length (frames)", settings.window_frames, 4 * loaded.config.frames_per_token,
                             100_000, "windows longer than the model are cut to its length")
        validate.number("window coupling (share of the noise levels)", settings.window_coupling, 0.0, 1.0)
        validate.number("loop coupling (share of the noise levels)", settings.loop_coupling, 0.0, 1.0)
        if settings.loop_travel and not settings.loop:
            raise MasError("loop_travel makes a loop that travels: set loop=True too")
        validate.integer("views", settings.views, 2, 64, "MAS needs at least 2 views; 5 is the default")
        if settings.steps is not None:
            validate.integer("steps", settings.steps, 1, loaded.config.diffusion_steps,
                             f"model {loaded.name!r} has {loaded.config.diffusion_steps} diffusion steps")
        if settings.elevation_deg is not None:
            validate.number("the views' elevation (degrees)", settings.elevation_deg, -80, 80,
                            "at +-90 every view looks straight down or up and sees no depth")
        if settings.distance_m is not None:
            validate.number("the views' distance (metres)", settings.distance_m, 1.0, 1000.0,
                            "the cameras must stand outside the subject; the model's default is "
                            f"{loaded.cameras['distance_m']:g}")
        if settings.batch_size is not None:
            validate.integer("batch size", settings.batch_size, 1, 4096)
        C = loaded.config.pace_classes
        if not (settings.pace in PACES or (C and isinstance(settings.pace, int)
                                                       and not isinstance(settings.pace, bool) and 0 <= settings.pace < C)):
            raise MasError(f"pace {settings.pace!r} is not known to model {loaded.name!r}; use 'data' (as often as its "
                           f"card or data say), 'training'" + (f", 'any' or a class 0 (stillest) .. {C - 1}" if C else
                                       ": it was trained without pace classes"))
        if settings.pace_guidance is not None:
            validate.number("pace guidance", settings.pace_guidance, 0.0, 10.0, "1 is none; 2 doubles each class's "
                            "difference from the model not told")
        validate.number("unguided share of the noise levels", settings.pace_guidance_from, 0.0, 1.0)
        if settings.noiseless_share is not None:
            validate.number("noiseless share (of the noise levels)", settings.noiseless_share, 0.0, 1.0,
                            "0: every step adds its noise")
        if settings.view_noise_share is not None:
            validate.number("view noise share (of the noise levels)", settings.view_noise_share, 0.0, 1.0,
                            "the lowest levels whose noise each view draws on its own; 0: every level's from one 3D draw")
        if settings.travel is not None:
            check_travel(settings.travel)


MAX_SECONDS = 600.0      # one motion: 10 minutes (its 3D noise alone is about 35 MB a minute at 30 fps)


def _check_frames(loaded: LoadedModel, frames: int, windowed: bool = False) -> None:
    if frames < 2:
        raise MasError(f"a motion needs at least 2 frames, got {frames}")
    limit = int(MAX_SECONDS * loaded.fps) if windowed else loaded.config.max_frames
    if frames > limit:
        raise MasError(f"{frames} frames is longer than model {loaded.name!r} can make "
                       f"({limit} frames = {limit / loaded.fps:g} s): ask for at most {limit / loaded.fps:g} s")


def mas_cameras(loaded: LoadedModel, settings: MasSettings, device, frames: int | None = None) -> Cameras:
    """The V sampling views in normalised units: a ring at the model's elevation and distance.

    A motion longer than the model may travel far from the origin: its cameras stand further
    back, in proportion to its length (twice the model's distance per model length), so the
    subject stays in front of every camera and keeps its apparent size (each window is
    re-centred in 2D, see windows.py)."""
    if settings.views < 2:
        raise MasError(f"MAS needs at least 2 views, got {settings.views}")
    elev = math.radians(settings.elevation_deg if settings.elevation_deg is not None else loaded.cameras["elevation_deg"])
    dist = (settings.distance_m if settings.distance_m is not None else loaded.cameras["distance_m"]) / loaded.scale
    if frames is not None and frames > loaded.config.max_frames:
        dist *= 2.0 * frames / loaded.config.max_frames
    return Cameras.ring(settings.views, elev, dist, device=device)


def is_windowed(loaded: LoadedModel, frames: int, settings: MasSettings) -> bool:
    """Whether a request needs windows: longer than the model, or a loop."""
    return settings.loop or frames > loaded.config.max_frames


def window_plans(loaded: LoadedModel, frames: int, settings: MasSettings):
    """(blended, solo): the window plans of a request that needs windows (``windows.py``). A loop's
    windows have the model's length and wrap round its end. A long motion's solo windows have
    ``settings.window_frames`` (at most the model's length less the overlap), and its blended
    windows, centred on the solo windows' seams, are longer by twice the overlap, up to the model's
    length."""
    cfg, P = loaded.config, loaded.config.frames_per_token
    overlap = min(int(round(settings.window_overlap_s * loaded.fps)), cfg.max_frames // 3)
    if settings.loop:
        return (plan_windows(frames, cfg.max_frames, overlap, True, P),
                plan_windows(frames, cfg.max_frames, 0, True, P))
    tile = min(settings.window_frames or cfg.max_frames, cfg.max_frames - overlap) // P * P
    return plan_staggered(frames, tile, min(cfg.max_frames, tile + 2 * overlap), P)


def window_joins(loaded: LoadedModel, frames: int, settings: MasSettings) -> list[float]:
    """Frames where a long motion's windows met, blended and solo (none for a motion the model makes in
    one piece, or a loop, whose seams its own finish closes)."""
    if settings.loop or not is_windowed(loaded, frames, settings):
        return []
    blended, solo = window_plans(loaded, frames, settings)
    return sorted(blended.joins() + solo.joins())


def mas_denoiser(loaded: LoadedModel, frames: int, settings: MasSettings, moved_on=None, ends_in_pose: bool = False,
                 pace: torch.Tensor | None = None):
    """denoise(x_t, t, x0_prev=None), the model as MAS calls it: directly up to the model's length, in blended
    windows beyond it or for a loop (``moved_on``: a travelling loop's, see ``windowed_denoiser``).
    ``ends_in_pose``: constraints fix the last frame (``_denoiser``'s ``reversed_end``); ``pace``: each motion's
    pace class (``pace_classes``)."""
    if not is_windowed(loaded, frames, settings):
        return _denoiser(loaded, frames, ends_in_pose, pace, guidance_of(loaded, settings), settings.pace_guidance_from)
    cfg = loaded.config
    plan, solo = window_plans(loaded, frames, settings)
    coupling = settings.loop_coupling if settings.loop else settings.window_coupling
    alpha_bar = alpha_bar_schedule(cfg.schedule, cfg.diffusion_steps)
    reversed_end = (REVERSED_END[0], REVERSED_END[1] * cfg.diffusion_steps) if ends_in_pose and not settings.loop else None
    model = pace_guided(loaded.model, cfg.pace_classes, guidance_of(loaded, settings),
                        int(round(settings.pace_guidance_from * cfg.diffusion_steps)))
    return windowed_denoiser(model, plan, cfg.num_joints, loaded.layout.root, alpha_bar,
                             solo=solo, solo_from=int(round(coupling * cfg.diffusion_steps)), moved_on=moved_on,
                             reversed_end=reversed_end, self_condition=cfg.self_condition, pace=pace)


@torch.inference_mode()
def sample_mas_batch(loaded: LoadedModel, seeds: list[int], frames: int, settings: MasSettings,
                     device, progress=None, cancel=None, constraints: Constraints | None = None):
    """MAS for one batch of motions (a request ``check_request`` passed); returns (X, stats): X is
    motions x frames x joints x 3, normalised. stats["shift"]: with constraints, the translation
    (motions x 3, normalised) that puts X on them."""
    schedule = Schedule.create(loaded.config.schedule, loaded.config.diffusion_steps, settings.steps)
    cams = mas_cameras(loaded, settings, device, frames)
    K, V, J = len(schedule), settings.views, loaded.config.num_joints
    # the lowest levels' steps add no fresh noise (MasSettings.noiseless_share): x_{t-1} is the posterior mean.
    # Not by default with constraints: there the pull's kink at the constrained frames then stays (the pop at an
    # end pose 2.10 against 1.33 with every step noisy; docs/results.md, Noiseless last steps)
    default = loaded.noiseless_share if constraints is None else 0.0
    quiet = settings.noiseless_share if settings.noiseless_share is not None else default
    n_quiet = steps_below(schedule, quiet, loaded.config.diffusion_steps)
    if settings.noise_3d:
        noise3d = draw_noise(seeds, (K + 1, frames, J, 3), device)      # K+1, B, F, J, 3
        # the lowest levels' noise drawn for each view on its own (MasSettings.view_noise_share); from
        # generators of their own, so the 3D noise of a seed stays what it was
        share = settings.view_noise_share if settings.view_noise_share is not None else loaded.view_noise_share
        n_own = steps_below(schedule, share, loaded.config.diffusion_steps)
        # (none where those steps are noiseless anyway)
        own = draw_noise([-1 - s for s in seeds], (n_own, V, frames, J, 2), device) if n_own > n_quiet else None

        def noise_at(k):
            if k < n_own:
                return own[k]
            return cams.rotate_orthographic(noise3d[k]).permute(0, 3, 1, 2, 4)   # B, V, F, J, 2
    else:
        noise2d = draw_noise(seeds, (K + 1, V, frames, J, 2), device)

        def noise_at(k):
            return noise2d[k]
    pull = None
    if constraints is not None:
        to = lambda a: torch.as_tensor(a, dtype=torch.float32, device=device)  # noqa: E731
        pull = (to(constraints.targets / loaded.scale), to(constraints.mask), constraints.falloff)
    if settings.triangulation == "reference":
        consistency = ReferenceConsistency(cams)
    else:
        layout = loaded.layout
        bones = (layout.parents, {layout.index(n) for n in layout.optional}) if settings.rigid_bones else None
        floor = settings.floor if settings.floor is not None else loaded.floor_prior
        feet = [layout.index(n) for n in layout.feet] if floor else None
        consistency = MultiViewConsistency(cams, bones, pull, settings.loop, feet, layout.root,
                                           loaded.config.alternates, settings.loop_travel)
    t0 = time.perf_counter()
    moved_on = getattr(consistency, "moved_on", None) if settings.loop and settings.loop_travel else None
    ends_in_pose = constraints is not None and bool(posed_frames(constraints.mask)[-1])
    pace = pace_classes(loaded, seeds, settings.pace, device)
    ancestral_loop(mas_denoiser(loaded, frames, settings, moved_on, ends_in_pose, pace), schedule, noise_at(K),
                   lambda k: None if k < n_quiet else noise_at(k), consistency, progress, cancel)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    stats = {"seconds": time.perf_counter() - t0, "triangulation_seconds": consistency.seconds,
             "shift": getattr(consistency, "shift", None)}
    return consistency.X, stats


@torch.inference_mode()
def sample_2d_batch(loaded: LoadedModel, seeds: list[int], frames: int, steps: int | None, device,
                    progress=None, cancel=None, pace: int | str = "data", pace_guidance: float = 1.0) -> torch.Tensor:
    """Plain 2D ancestral sampling: motions x frames x joints x 2, normalised. ``pace``, ``pace_guidance``: as
    ``MasSettings``'s, but not guided by default (the 2D model as training's motion check sees it)."""
    _check_frames(loaded, frames)
    schedule = Schedule.create(loaded.config.schedule, loaded.config.diffusion_steps, steps)
    noise = draw_noise(seeds, (len(schedule) + 1, frames, loaded.config.num_joints, 2), device)
    return ancestral_loop(_denoiser(loaded, frames, pace=pace_classes(loaded, seeds, pace, device), guidance=pace_guidance),
                          schedule, noise[len(schedule)],
                          lambda k: noise[k], None, progress, cancel)


def sample_mas(loaded: LoadedModel, seeds: list[int], frames: int, settings: MasSettings | None = None,
               device=None, progress=None, cancel=None, on_batch=None, constraints: Constraints | None = None) -> SampleResult:
    """Generate one 3D motion per seed with MAS, in batches; joints in metres, Z up, on the floor.

    progress(done, total) counts diffusion steps over all batches. on_batch(seeds, joints) is
    called as soon as each batch is finished (joints: motions x frames x joints x 3, metres), so
    a caller can write results before the next batch starts. ``constraints`` (metres, Z up): joint
    positions every motion passes through (``constraints.py``); the motions are then placed by them.
    """
    settings = settings or MasSettings()
    check_request(loaded, frames, settings)
    if constraints is not None and constraints.frames != frames:
        raise MasError(f"constraints for {constraints.frames} frames given for a motion of {frames}")
    device = torch.device(device) if device is not None else next(loaded.model.parameters()).device
    bs = settings.batch_size or (256 if device.type == "cuda" else 8)
    K = settings.steps or loaded.config.diffusion_steps
    chunks = [seeds[i:i + bs] for i in range(0, len(seeds), bs)]
    joins = window_joins(loaded, frames, settings)
    joints = []
    stats = {"seconds": 0.0, "triangulation_seconds": 0.0}
    for c, chunk in enumerate(chunks):
        prog = None if progress is None else (lambda d, n, c=c: progress(c * K + d, len(chunks) * K))
        X, st = sample_mas_batch(loaded, chunk, frames, settings, device, prog, cancel, constraints)
        shift = None if st["shift"] is None else st["shift"].float().cpu().numpy()
        joints.append(finish_motions(loaded, X.float().cpu().numpy(), settings.loop, shift, constraints,
                                     settings.travel or loaded.travel, settings.loop and settings.loop_travel, joins,
                                     settings.foot_lock))
        for k in stats:
            stats[k] += st[k]
        if on_batch is not None:
            on_batch(chunk, joints[-1])
    return SampleResult(np.concatenate(joints), list(seeds), loaded.fps, stats)
