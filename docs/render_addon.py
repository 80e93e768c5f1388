"""Render what the add-on makes, headless: three variants side by side at a few frames.

    python docs/render_addon.py docs/addon_variants.png [--model human] [--seed 0] [--frames 1,30,60,90] [--spacing 1.6]

Runs the add-on's Python API exactly as the "Variants" button does (blender_addon.api), then
renders with Workbench into one PNG (one panel per frame, left to right). Needs the bpy module (Python 3.11).
Blender as a module has no window, so the sidebar panel itself cannot be captured this way.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import bpy
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import blender_addon  # noqa: E402
from blender_addon import api  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from render_bvh import aim, render_frame, save_strip, studio  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--model", default="human")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--frames", default="1,30,60,90")
    ap.add_argument("--spacing", type=float, default=1.6, help="metres between the variants")
    a = ap.parse_args(argv)
    bpy.ops.wm.read_factory_settings(use_empty=True)
    blender_addon.register()
    scene = bpy.context.scene
    scene.render.fps = 30
    made = api.generate_variants(count=3, seed=a.seed, model=a.model, seconds=4.0, spacing=a.spacing, location=(0, 0, 0))
    for k, m in enumerate(made):
        for o in m["objects"]:
            o.color = ((0.85, 0.45, 0.3, 1), (0.3, 0.6, 0.85, 1), (0.45, 0.75, 0.4, 1))[k % 3]
    cam = studio(scene, 400, 300)
    images = []
    for f in (int(x) for x in a.frames.split(",")):
        scene.frame_set(f)
        roots = np.array([m["objects"][0].matrix_world @ m["objects"][0].pose.bones[0].head for m in made])
        c = roots.mean(0)
        k = a.spacing / 1.6                  # frame the characters at their size, farther when they run apart
        d = max(6.0 * k, 2.5 * float(np.ptp(roots[:, :2], axis=0).max()))
        aim(cam, (c[0] + d / 6, c[1] - d, d * 1.6 / 6), (c[0], c[1], 0.9 * k))
        images.append(render_frame(scene, Path(a.out).with_name(f".frame_{f}.png")))
    save_strip(images, a.out)
    print(f"wrote {a.out}: seeds {a.seed}..{a.seed + 2}, frames {a.frames}")


if __name__ == "__main__":
    main()
