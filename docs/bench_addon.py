"""Time the add-on's operators headless (the bpy module), as in docs/results.md.

    python docs/bench_addon.py [--model human]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

t0 = time.perf_counter()
import bpy  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import blender_addon  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="human")
    a = ap.parse_args(argv)
    blender_addon.register()
    rows = [("import bpy + register the add-on", time.perf_counter() - t0)]
    bpy.context.scene.render.fps = 30
    for k in range(3):
        t = time.perf_counter()
        bpy.ops.mas.generate_motion(model=a.model, seed=k, seconds=4)
        rows.append((f"Generate Motion #{k + 1}" + (" (loads the model)" if k == 0 else ""), time.perf_counter() - t))
    t = time.perf_counter()
    bpy.ops.mas.generate_variants(model=a.model, count=4, seed=10, seconds=4)
    rows.append(("4 variants side by side", time.perf_counter() - t))
    with tempfile.TemporaryDirectory() as out:
        t = time.perf_counter()
        bpy.ops.mas.generate_batch(model=a.model, count=4, seed=20, seconds=4, folder=out, formats="BVH,FBX,GLB")
        rows.append(("batch of 4, each as BVH, FBX and glTF", time.perf_counter() - t))
    print(f"| operation ({a.model}, 4 s, scene at 30 fps) | seconds |\n|---|---:|")
    for name, sec in rows:
        print(f"| {name} | {sec:.2f} |")


if __name__ == "__main__":
    main()
