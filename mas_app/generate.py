"""Generate motions and write them as files (what ``mas generate`` runs)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from mas_engine import constraints, validate
from mas_engine.atomic import FileExists
from mas_engine.checkpoint import load_checkpoint
from mas_engine.device import pick_device
from mas_engine.motion_io import load_motion, save_motion
from mas_engine.sampler import MasSettings, check_request, sample_mas

FORMATS = ("npz", "bvh", "both")


def generate_to_files(model="human", num=1, seconds=4.0, seed=0, views=5, steps=None, device="auto",
                      out="motions", batch_size=None, noise_3d=True, rigid_bones=True, elevation_deg=None, distance_m=None,
                      preview=False, formats="npz", rig="human", overwrite=False, cancel=None, loop=False,
                      start_from=None, continue_from=None, end_at=None, keys=None, path=None, floor=False,
                      log=print) -> list[Path]:
    """Generate ``num`` motions (seeds seed .. seed+num-1) into ``out``; returns the files written.

    formats: "npz" (joint positions), "bvh" (a rotation track on ``rig``) or "both". Every argument
    is checked, and the output folder probed, before sampling starts. Each batch's files are
    written as soon as the batch is done, so an interrupt loses at most the batch in flight.
    A motion whose files already exist is skipped (and named) unless ``overwrite``. cancel() True
    stops between diffusion steps with ``Cancelled`` (the files finished by then are kept).

    Any length up to 10 minutes (windows beyond the model's own length, see windows.py); ``loop``:
    the last frame flows into the first. Constraints (constraints.py), each a motion file's path
    (or a dict as load_motion gives it): ``start_from`` (begin where that motion ends, with its
    velocity), ``continue_from`` (the same, and the file written is that motion followed by the
    new ``seconds``), ``end_at`` (end in that file's first pose), ``keys`` (keyframes: joints with
    NaN where free, or a mask); ``path``: the root's path on the floor, 'x,y x,y ...' or K x 2
    metres, walked at constant speed. ``floor``: the floor prior (``priors.on_floor``).
    """
    from tqdm import tqdm

    all_seeds = validate.seeds(seed, num)
    seconds = validate.number("--seconds", seconds, 1e-3, 3600.0)
    if formats not in FORMATS:
        raise validate.MasError(f"unknown format {formats!r}; use {', '.join(FORMATS)}")
    dev = pick_device(device)
    if dev.type == "cuda" and "LOCAL_RANK" in os.environ:
        dev = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
    loaded = load_checkpoint(model, device=dev)
    frames = int(round(seconds * loaded.fps))
    if loop and loaded.config.frames_per_token > 1:
        frames += frames % 2        # the band-stop needs an even loop (remove_alternation)
    settings = MasSettings(views=views, steps=steps, noise_3d=noise_3d, rigid_bones=rigid_bones, batch_size=batch_size,
                           elevation_deg=elevation_deg, distance_m=distance_m, loop=loop, floor=floor)
    before = None
    if continue_from is not None:
        if start_from is not None:
            raise validate.MasError("give --start-from or --continue, not both")
        before, start_from = _motion(continue_from), continue_from
        frames += constraints.START_FRAMES
    check_request(loaded, frames, settings)
    wanted = build_constraints(loaded, frames, start_from, end_at, keys, path)
    if wanted is not None and loop and (start_from is not None or end_at is not None):
        raise validate.MasError("a loop has no start or end: --loop goes with --keys or --path, not --start-from, "
                                "--continue or --end-at")
    if formats != "npz":
        from retarget.api import check_rig
        check_rig(rig, loaded.layout)
    # under torchrun every process takes every WORLD_SIZE-th seed: one folder, no seed twice or missing
    world, rank = int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("RANK", "0"))
    seeds = all_seeds[rank::world]
    out = Path(out)
    suffixes = {"npz": [".npz"], "bvh": [".bvh"], "both": [".npz", ".bvh"]}[formats] + ([".gif"] if preview else [])
    stem = lambda s: out / f"{loaded.name}_seed{s:05d}"  # noqa: E731
    skipped = [s for s in seeds if not overwrite and any(stem(s).with_suffix(x).exists() for x in suffixes)]
    seeds = [s for s in seeds if s not in set(skipped)]
    if skipped:
        names = ", ".join(stem(s).with_suffix(suffixes[0]).name for s in skipped[:5]) + (" ..." if len(skipped) > 5 else "")
        log(f"skipped {len(skipped)} motion(s) whose files exist in {out}/ ({names}); pass --overwrite to replace them")
    # a motion file is about frames x joints x 3 float32 plus its names; a BVH or GIF is larger
    validate.output_folder(out, len(seeds) * len(suffixes) * (frames * loaded.layout.num_joints * 12 + 4096) * 4)
    if not seeds:
        return []
    paths = []

    def write(batch_seeds, batch_joints):
        for s, joints in zip(batch_seeds, batch_joints):
            if before is not None:      # the motion continued, then the new part after its last frames
                joints = np.concatenate([np.asarray(before["joints"], np.float32)[:-constraints.START_FRAMES], joints])
            paths.extend(write_motion(stem(s), joints, loaded, s, settings, formats, rig, preview, overwrite))

    with tqdm(total=1, desc=f"MAS {len(seeds)} x {seconds:g} s on {dev}", unit="step", disable=rank > 0) as bar:
        def progress(done, total):
            bar.total = total
            bar.update(done - bar.n)    # update() honours tqdm's refresh interval
        bs = settings.batch_size or (256 if dev.type == "cuda" else 8)
        elapsed = 0.0
        for i in range(0, len(seeds), bs):  # one batch at a time: memory stays bounded whatever num is
            chunk = seeds[i:i + bs]
            res = sample_mas(loaded, chunk, frames, settings, dev, on_batch=write, cancel=cancel, constraints=wanted,
                             progress=lambda d, n, i=i: progress(i // bs * n + d, -(-len(seeds) // bs) * n))
            elapsed += res.stats["seconds"]
    log(f"{'' if world == 1 else f'rank {rank}: '}wrote {len(paths)} file(s) for {len(seeds)} motion(s) of {frames} frames "
        f"({frames / loaded.fps:g} s at {loaded.fps:g} fps) to {out}/ in {elapsed:.1f} s")
    return paths


def _motion(m) -> dict:
    """A motion or pose: a dict as load_motion gives it, or a .npz file (a pose may have one frame)."""
    if isinstance(m, dict):
        return m
    if Path(str(m)).suffix.lower() != ".npz":
        raise validate.MasError(f"{m}: give a motion or pose file (.npz, as 'mas generate' writes)")
    return load_motion(m, min_frames=1)


def build_constraints(loaded, frames: int, start_from=None, end_at=None, keys=None, path=None):
    """The constraints a request asks for (None: none), checked against the model's skeleton."""
    layout, fps = loaded.layout, loaded.fps
    parts = []
    if start_from is not None:
        parts.append(constraints.start_from(_motion(start_from), frames, layout, fps))
    if end_at is not None:
        parts.append(constraints.end_at(_motion(end_at), frames, layout, fps))
    if keys is not None:
        k = keys if isinstance(keys, dict) else _keys_file(keys)
        parts.append(constraints.keyframes(k, frames, layout, fps))
    if path is not None:
        pts = constraints.parse_path(path) if isinstance(path, str) else np.asarray(path, np.float64)
        parts.append(constraints.root_path(pts, frames, layout, fps))
    if not parts:
        return None
    out = parts[0]
    for c in parts[1:]:
        out = out.merge(c)
    return out


def _keys_file(path) -> dict:
    """A keyframe file: the motion format with NaN where free (load_motion would refuse the NaN)."""
    try:
        with np.load(path, allow_pickle=False) as f:
            d = {k: f[k] for k in f.files}
    except (OSError, ValueError, EOFError) as e:
        raise validate.MasError(f"--keys {path}: not a readable .npz ({e})") from None
    for key in ("joints", "joint_names"):
        if key not in d:
            raise validate.MasError(f"--keys {path}: no '{key}' (a keyframe file is the motion format with NaN where free)")
    if np.asarray(d["joints"]).dtype.kind not in "fiu":
        raise validate.MasError(f"--keys {path}: joints must be numbers")
    return d


def write_motion(stem: Path, joints, loaded, seed: int, settings: MasSettings, formats: str, rig: str,
                 preview: bool, overwrite: bool) -> list[Path]:
    """One generated motion's files (``stem``.npz / .bvh / .gif), each written atomically."""
    meta = dict(model=loaded.name, seed=seed, views=settings.views,
                steps=settings.steps or loaded.config.diffusion_steps, noise_3d=settings.noise_3d, loop=settings.loop)
    written = []
    try:
        if formats in ("npz", "both"):
            written.append(save_motion(stem.with_suffix(".npz"), joints, loaded.fps, loaded.layout,
                                       overwrite=overwrite, **meta))
        if formats in ("bvh", "both"):
            from retarget.api import retarget, write_track
            motion = dict(meta, joints=joints, fps=loaded.fps, joint_names=loaded.layout.joints, layout=loaded.layout.name)
            track, _ = retarget(motion, rig=rig)
            written.append(write_track(stem.with_suffix(".bvh"), track, overwrite=overwrite))
        if preview:
            from mas_engine.viz import write_animation
            written.append(write_animation(stem.with_suffix(".gif"), joints, loaded.layout, loaded.fps, overwrite=overwrite))
    except FileExists:          # another process wrote it meanwhile: theirs stays
        pass
    return written
