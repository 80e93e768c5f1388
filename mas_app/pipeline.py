"""The one generation pipeline, shared by the command line, the Python API and the Blender add-on.

    plan = prepare("human", seconds=6.0, settings=MasSettings(loop=True))   # every check, the model loaded
    sample(plan, seeds=[0, 1, 2], on_batch=keep)                            # MAS, batch by batch
    track, report = rig_motion(motion_of(plan, joints, seed=0), rig="human", fps=24.0)

``prepare`` checks the request and builds its constraints before any sampling; ``sample`` hands
each finished batch to ``on_batch`` (so a caller writes or keeps it at once); ``rig_motion`` turns
joint positions into a rig's rotations. Writing files (``generate.py``) and building Blender data
(``blender_addon``) belong to the callers.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mas_engine import constraints as C
from mas_engine import validate
from mas_engine.checkpoint import LoadedModel, load_checkpoint
from mas_engine.device import pick_device
from mas_engine.errors import MasError
from mas_engine.motion_io import Motion, load_motion, resample
from mas_engine.sampler import MasSettings, check_request, sample_mas
from mas_engine.postprocess import travel_per_period
from retarget.armatures import armature_from_skeleton
from retarget.retarget import retarget


@dataclass
class Plan:
    """A checked request: the model and its device, the length, how to sample, what to pass through.
    ``before``: for a continued motion, its frames before the new part (frames x joints x 3, metres)."""

    loaded: LoadedModel
    device: torch.device
    frames: int
    settings: MasSettings
    constraints: C.Constraints | None = None
    before: np.ndarray | None = None

    @property
    def batch_size(self) -> int:
        return self.settings.batch_size or (256 if self.device.type == "cuda" else 8)


_MODELS: dict = {}


def load_model(model: str, device: str = "auto", cache: bool = False) -> tuple[LoadedModel, torch.device]:
    """A shipped model's name or a checkpoint path, loaded on the device ('auto', 'cpu', 'cuda');
    under torchrun, each process on its own GPU. ``cache``: keep it for the next call (a UI)."""
    dev = pick_device(device)
    if dev.type == "cuda" and "LOCAL_RANK" in os.environ:
        dev = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
    key = (str(model), str(dev))
    loaded = _MODELS.get(key) if cache else None
    if loaded is None:
        loaded = load_checkpoint(model, device=dev)
        if cache:
            _MODELS[key] = loaded
    return loaded, dev


def prepare(model: str = "human", seconds: float = 4.0, settings: MasSettings | None = None, device: str = "auto",
            start_from=None, continue_from=None, end_at=None, keys=None, path=None, cache: bool = False) -> Plan:
    """Check a request and load its model, before any sampling (MasError names what is wrong).

    seconds: any length up to 10 minutes (beyond the model's own, in windows: ``windows.py``).
    A loop of a two-frames-per-token model gets an even number of frames (the band-stop needs it).
    Constraints (``constraints.py``), each a motion file's path or a dict in the motion format
    (``joints``, ``joint_names``; an optional ``source`` names it in messages):
    ``start_from`` (begin where it ends, with its velocity), ``continue_from`` (the same, and the
    new part follows it: ``Plan.before``), ``end_at`` (end in its first pose), ``keys`` (keyframes:
    NaN where free, or a ``mask``; or {"poses": {frame: joints x 3}, "fps": their frame rate});
    ``path``: the root's path on the floor, 'x,y x,y ...' or K x 2 metres.
    """
    settings = settings or MasSettings()
    seconds = validate.number("the length in seconds", seconds, 1e-3, 3600.0)
    loaded, dev = load_model(model, device, cache)
    frames = int(round(seconds * loaded.fps))
    if settings.loop and loaded.config.frames_per_token > 1:
        frames += frames % 2
    before = None
    if continue_from is not None:
        if start_from is not None:
            raise MasError("give --start-from or --continue, not both")
        before = np.asarray(_motion(continue_from)["joints"], np.float32)[:-C.START_FRAMES]
        start_from, frames = continue_from, frames + C.START_FRAMES
    check_request(loaded, frames, settings)
    wanted = constraints_for(loaded, frames, start_from, end_at, keys, path)
    if wanted is not None and settings.loop and (start_from is not None or end_at is not None):
        raise MasError("a loop has no start or end: --loop goes with --keys or --path, not --start-from, "
                       "--continue or --end-at")
    return Plan(loaded, dev, frames, settings, wanted, before)


def constraints_for(loaded: LoadedModel, frames: int, start_from=None, end_at=None, keys=None, path=None):
    """The constraints a request asks for (None: none), checked against the model's skeleton."""
    layout, fps = loaded.layout, loaded.fps
    parts = []
    if start_from is not None:
        m = _motion(start_from)
        parts.append(C.start_from(m, frames, layout, fps, m.get("source", "--start-from")))
    if end_at is not None:
        parts.append(C.end_at(_motion(end_at), frames, layout, fps))
    if keys is not None:
        if isinstance(keys, dict) and "poses" in keys:
            keys = C.keys_from_poses(keys["poses"], keys["fps"], frames, layout, fps)
        parts.append(C.keyframes(keys if isinstance(keys, dict) else _keys_file(keys), frames, layout, fps))
    if path is not None:
        pts = C.parse_path(path) if isinstance(path, str) else np.asarray(path, np.float64)
        parts.append(C.root_path(pts, frames, layout, fps))
    if not parts:
        return None
    out = parts[0]
    for c in parts[1:]:
        out = out.merge(c)
    return out


def sample(plan: Plan, seeds: list[int], on_batch, progress=None, cancel=None) -> dict:
    """MAS for every seed, one batch at a time (memory stays bounded whatever the number):
    on_batch(seeds, joints) gets each batch as soon as it is done (joints: motions x frames x
    joints x 3, metres, Z up; a continued motion with its earlier frames first). progress(done,
    total) counts diffusion steps over all batches; cancel() True stops between steps with
    ``Cancelled``. Returns the timings (seconds, triangulation_seconds)."""
    bs, K = plan.batch_size, plan.settings.steps or plan.loaded.config.diffusion_steps
    n_batches = -(-len(seeds) // bs)
    stats = {"seconds": 0.0, "triangulation_seconds": 0.0}

    def deliver(batch_seeds, joints):
        if plan.before is not None:
            joints = np.stack([np.concatenate([plan.before, j]) for j in joints])
        on_batch(batch_seeds, joints)

    for b in range(n_batches):
        step = None if progress is None else (lambda d, n, b=b: progress(b * K + d, n_batches * K))
        res = sample_mas(plan.loaded, seeds[b * bs:(b + 1) * bs], plan.frames, plan.settings, plan.device,
                         progress=step, cancel=cancel, on_batch=deliver, constraints=plan.constraints)
        for k in stats:
            stats[k] += res.stats[k]
    return stats


def motion_of(plan: Plan, joints: np.ndarray, seed: int) -> Motion:
    """One generated motion (frames x joints x 3, metres, Z up) with how it was made."""
    s, loaded = plan.settings, plan.loaded
    meta = dict(model=loaded.name, seed=int(seed), views=s.views, steps=s.steps or loaded.config.diffusion_steps,
                noise_3d=s.noise_3d, loop=s.loop)
    if s.loop:
        meta["loop_travel"] = travel_per_period(joints, loaded.layout.root) if s.loop_travel else np.zeros(3)
    return Motion(np.asarray(joints), loaded.fps, loaded.layout, meta)


def rig_motion(motion: Motion, rig="human", in_place: bool = False, fps: float | None = None,
               at_origin: bool = False, close_loop: bool = False, foot_lock: bool = True):
    """Fit a rig to a motion (``retarget``); returns (RotationTrack, report).

    rig: "human", "horse", "smpl", a BVH file, or a user's armature as plain data {name, bones,
    parents, heads, tails (bones x 3, metres, Z up, world-aligned), bone_map}. fps: resample to
    this frame rate first (a scene's). at_origin: the root starts above (0, 0). close_loop: the
    motion is a loop: its first pose is keyed again one frame after the last, exactly (moved on by
    a travelling loop's ``loop_travel``, unless ``in_place``), so that a cyclic action's period has
    no seam. foot_lock: the foot-contact clean-up (``retarget.contact``).
    """
    joints, layout = np.asarray(motion.joints), motion.layout
    travel = np.asarray(motion.meta.get("loop_travel", np.zeros(3)), np.float64) if close_loop else np.zeros(3)
    if in_place:
        travel = np.zeros(3)
    if close_loop:              # one period on: the first pose, moved on by a travelling loop's travel
        joints = np.concatenate([joints, joints[:1] + travel])
    fps = float(fps or motion.fps)
    joints = resample(joints, motion.fps, fps)
    if at_origin:
        r = layout.root
        joints = joints - [joints[0, r, 0], joints[0, r, 1], 0.0]
    if isinstance(rig, dict):
        rig = armature_from_skeleton(rig["name"], rig["bones"], rig["parents"], np.asarray(rig["heads"]),
                                     np.asarray(rig["tails"]), rig["bone_map"], joints, layout)
    track, report = retarget(Motion(joints, fps, layout, motion.meta), rig=rig, in_place=in_place, foot_lock=foot_lock)
    if close_loop:              # the fit smooths each end on its own: make the period exact
        track.rotations[-1], track.root[-1] = track.rotations[0], track.root[0] + travel
        for v in track.props.values():
            v[-1] = v[0] + travel
    report.update(model=motion.meta.get("model", ""), seed=motion.meta.get("seed", 0), layout=layout.name,
                  model_fps=motion.fps, loop=close_loop)
    return track, report


def _motion(m) -> dict:
    """A motion or pose: a dict in the motion format, or a .npz file (a pose may have one frame)."""
    if isinstance(m, dict):
        return m
    if Path(str(m)).suffix.lower() != ".npz":
        raise MasError(f"{m}: give a motion or pose file (.npz, as 'mas generate' writes)")
    return load_motion(m, min_frames=1)


def _keys_file(path) -> dict:
    """A keyframe file: the motion format with NaN where free (load_motion would refuse the NaN)."""
    try:
        with np.load(path, allow_pickle=False) as f:
            d = {k: f[k] for k in f.files}
    except (OSError, ValueError, EOFError) as e:
        raise MasError(f"--keys {path}: not a readable .npz ({e})") from None
    for key in ("joints", "joint_names"):
        if key not in d:
            raise MasError(f"--keys {path}: no '{key}' (a keyframe file is the motion format with NaN where free)")
    if np.asarray(d["joints"]).dtype.kind not in "fiu":
        raise MasError(f"--keys {path}: joints must be numbers")
    return d
