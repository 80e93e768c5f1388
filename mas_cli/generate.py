"""Generate motions and write them as files (what ``mas generate`` runs), through ``pipeline``."""
from __future__ import annotations

import os
from pathlib import Path

from mas_engine import validate
from mas_engine.atomic import FileExists
from mas_engine.motion_io import Motion, save_motion
from mas_engine.sampler import MasSettings
from retarget.retarget import check_rig, write_track

from mas_app import pipeline

FORMATS = ("npz", "bvh", "both", "fbx", "glb")
SUFFIXES = {"npz": [".npz"], "bvh": [".bvh"], "both": [".npz", ".bvh"], "fbx": [".fbx"], "glb": [".glb"]}


def blender_files():
    """``blender_addon.files`` (FBX and glTF through Blender's bpy module), or MasError with the fix."""
    try:
        from blender_addon import files
    except ImportError as e:
        if e.name != "bpy":
            raise
        raise validate.MasError("FBX and glTF files are written by Blender's bpy module, which is not installed here: "
                                "pip install bpy==5.0.1 (Python 3.11), or use --format bvh") from None
    return files


def generate_to_files(model="human", num=1, seconds=4.0, seed=0, views=5, steps=None, device="auto",
                      out="motions", batch_size=None, noise_3d=True, rigid_bones=True, elevation_deg=None, distance_m=None,
                      preview=False, formats="npz", rig="human", overwrite=False, cancel=None, loop=False,
                      loop_travel=False, start_from=None, continue_from=None, end_at=None, keys=None, path=None, floor=None,
                      foot_lock=True, pace="data", pace_guidance=None, view_noise_share=None, noiseless_share=None,
                      travel=None, log=print) -> list[Path]:
    """Generate ``num`` motions (seeds seed .. seed+num-1) into ``out``; returns the files written.

    formats: "npz" (joint positions), "bvh" (a rotation track on ``rig``), "both", or "fbx" / "glb"
    (the rig's character with its action, through Blender's bpy module). Every argument
    is checked, and the output folder probed, before sampling starts. Each batch's files are
    written as soon as the batch is done, so an interrupt loses at most the batch in flight.
    A motion whose files already exist is skipped (and named) unless ``overwrite``. cancel() True
    stops between diffusion steps with ``Cancelled`` (the files finished by then are kept).

    Any length up to 10 minutes (windows beyond the model's own length, see windows.py); ``loop``:
    the last frame flows into the first; ``loop_travel``: a loop that may travel steadily (the frame
    after the last is the first moved on by its ``loop_travel``). Constraints (constraints.py), each a motion file's path
    (or a dict as load_motion gives it): ``start_from`` (begin where that motion ends, with its
    velocity), ``continue_from`` (the same, and the file written is that motion followed by the
    new ``seconds``), ``end_at`` (end in that file's first pose), ``keys`` (keyframes: joints with
    NaN where free, or a mask); ``path``: the root's path on the floor, 'x,y x,y ...' or K x 2
    metres, walked at constant speed. ``floor``: the floor prior (``priors.on_floor``; None:
    the model's default). ``foot_lock``: the standing feet stay where they stand (``postprocess.lock_feet``).
    ``pace`` (a model with pace classes, ``MasSettings.pace``): "data", "training", "any", or a class, 0 the stillest;
    ``pace_guidance``: its classifier-free guidance (1: none; None: the model's default). ``view_noise_share``: the lowest noise levels
    whose noise each view draws on its own (``MasSettings.view_noise_share``; None: the model's default);
    ``noiseless_share``: the lowest noise levels whose steps add no fresh noise (``MasSettings.noiseless_share``);
    ``travel``: where the body's travel comes from (``MasSettings.travel``; None: the model's default).
    """
    from tqdm import tqdm

    all_seeds = validate.seeds(seed, num)
    validate.number("--seconds", seconds, 1e-3, 3600.0)
    if formats not in FORMATS:
        raise validate.MasError(f"unknown format {formats!r}; use {', '.join(FORMATS)}")
    settings = MasSettings(views=views, steps=steps, noise_3d=noise_3d, rigid_bones=rigid_bones, batch_size=batch_size,
                           elevation_deg=elevation_deg, distance_m=distance_m, loop=loop or loop_travel,
                           loop_travel=loop_travel, floor=floor, foot_lock=foot_lock, pace=pace,
                           pace_guidance=pace_guidance, view_noise_share=view_noise_share,
                           noiseless_share=noiseless_share, travel=travel)
    plan = pipeline.prepare(model, seconds, settings, device, start_from=start_from, continue_from=continue_from,
                            end_at=end_at, keys=keys, path=path)
    loaded, frames = plan.loaded, plan.frames
    if formats != "npz":
        check_rig(rig, loaded.layout)
    if formats in ("fbx", "glb"):
        blender_files()
    # under torchrun every process takes every WORLD_SIZE-th seed: one folder, no seed twice or missing
    world, rank = int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("RANK", "0"))
    seeds = all_seeds[rank::world]
    out = Path(out)
    suffixes = SUFFIXES[formats] + ([".gif"] if preview else [])
    stem = lambda s: out / f"{loaded.name}_seed{s:05d}"  # noqa: E731
    if not overwrite:
        seeds = _without_existing(seeds, stem, suffixes, out, log)
    # a motion file is about frames x joints x 3 float32 plus its names; a BVH or GIF is larger
    validate.output_folder(out, len(seeds) * len(suffixes) * (frames * loaded.layout.num_joints * 12 + 4096) * 4)
    if not seeds:
        return []
    paths = []

    def write(batch_seeds, batch_joints):
        for s, joints in zip(batch_seeds, batch_joints):
            paths.extend(write_motion(stem(s), pipeline.motion_of(plan, joints, s), formats, rig, preview, overwrite))

    with tqdm(total=1, desc=f"MAS {len(seeds)} x {frames / loaded.fps:g} s on {plan.device}", unit="step",
              disable=rank > 0) as bar:
        def progress(done, total):
            bar.total = total
            bar.update(done - bar.n)    # update() honours tqdm's refresh interval
        stats = pipeline.sample(plan, seeds, write, progress, cancel)
    log(f"{'' if world == 1 else f'rank {rank}: '}wrote {len(paths)} file(s) for {len(seeds)} motion(s) of {frames} frames "
        f"({frames / loaded.fps:g} s at {loaded.fps:g} fps) to {out}/ in {stats['seconds']:.1f} s")
    return paths


def _without_existing(seeds: list[int], stem, suffixes: list[str], out: Path, log) -> list[int]:
    """The seeds none of whose files exist yet; the others are named in one line (kept, not replaced)."""
    skipped = [s for s in seeds if any(stem(s).with_suffix(x).exists() for x in suffixes)]
    if skipped:
        names = ", ".join(stem(s).with_suffix(suffixes[0]).name for s in skipped[:5]) + (" ..." if len(skipped) > 5 else "")
        log(f"skipped {len(skipped)} motion(s) whose files exist in {out}/ ({names}); pass --overwrite to replace them")
    return [s for s in seeds if s not in set(skipped)]


def write_motion(stem: Path, motion: Motion, formats: str, rig: str, preview: bool, overwrite: bool) -> list[Path]:
    """One generated motion's files (``stem``.npz / .bvh / .gif), each written atomically."""
    written = []
    try:
        if formats in ("npz", "both"):
            written.append(save_motion(stem.with_suffix(".npz"), motion.joints, motion.fps, motion.layout,
                                       overwrite=overwrite, **motion.meta))
        if formats in ("bvh", "both"):
            track, _ = pipeline.rig_motion(motion, rig)
            written.append(write_track(stem.with_suffix(".bvh"), track, overwrite=overwrite))
        if formats in ("fbx", "glb"):
            track, _ = pipeline.rig_motion(motion, rig)
            written.append(blender_files().write_track_file(stem.with_suffix("." + formats), track, stem.name,
                                                            overwrite=overwrite))
        if preview:
            from mas_engine.viz import write_animation
            written.append(write_animation(stem.with_suffix(".gif"), motion.joints, motion.layout, motion.fps,
                                           overwrite=overwrite))
    except FileExists:          # another process wrote it meanwhile: theirs stays
        pass
    return written
