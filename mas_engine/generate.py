"""Generate motions and write them as files (what ``mas generate`` runs)."""
from __future__ import annotations

import os
from pathlib import Path

import torch

from .checkpoint import load_checkpoint
from .device import pick_device
from .motion_io import save_motion
from .sampler import MasSettings, check_request, sample_mas


def generate_to_files(model="human", num=1, seconds=4.0, seed=0, views=5, steps=None, device="auto",
                      out="motions", batch_size=None, noise_3d=True, rigid_bones=True, elevation_deg=None, distance_m=None,
                      preview=False, formats="npz", rig="human", log=print) -> list[Path]:
    """Generate ``num`` motions (seeds seed .. seed+num-1) into ``out``.

    formats: "npz" (joint positions), "bvh" (a rotation track on ``rig``) or "both".
    """
    from tqdm import tqdm

    dev = pick_device(device)
    if dev.type == "cuda" and "LOCAL_RANK" in os.environ:
        dev = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
    loaded = load_checkpoint(model, device=dev)
    frames = int(round(seconds * loaded.fps))
    settings = MasSettings(views=views, steps=steps, noise_3d=noise_3d, rigid_bones=rigid_bones, batch_size=batch_size,
                           elevation_deg=elevation_deg, distance_m=distance_m)
    check_request(loaded, frames, settings)
    seeds = list(range(seed, seed + num))
    # under torchrun every process takes every WORLD_SIZE-th seed: one folder, no seed twice or missing
    world, rank = int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("RANK", "0"))
    seeds = seeds[rank::world]
    if not seeds:
        return []
    with tqdm(total=1, desc=f"MAS {len(seeds)} x {seconds:g} s on {dev}", unit="step", disable=rank > 0) as bar:
        def progress(done, total):
            bar.total = total
            bar.update(done - bar.n)    # update() honours tqdm's refresh interval
        result = sample_mas(loaded, seeds, frames, settings, dev, progress=progress)
    paths = []
    for s, joints in zip(seeds, result.joints):
        path = Path(out) / f"{loaded.name}_seed{s:05d}.npz"
        meta = dict(model=loaded.name, seed=s, views=views, steps=steps or loaded.config.diffusion_steps,
                    noise_3d=noise_3d)
        if formats in ("npz", "both"):
            save_motion(path, joints, loaded.fps, loaded.layout, **meta)
            paths.append(path)
        if formats in ("bvh", "both"):
            from retarget.api import retarget, write_track
            motion = dict(meta, joints=joints, fps=loaded.fps, joint_names=loaded.layout.joints, layout=loaded.layout.name)
            track, _ = retarget(motion, rig=rig)
            paths.append(write_track(path.with_suffix(".bvh"), track))
        if preview:
            from .viz import write_animation
            write_animation(path.with_suffix(".gif"), joints, loaded.layout, loaded.fps)
    log(f"{'' if world == 1 else f'rank {rank}: '}wrote {len(paths)} motion(s) of {frames} frames ({frames / loaded.fps:g} s at {loaded.fps:g} fps) to {out}/ "
        f"in {result.stats['seconds']:.1f} s")
    return paths
