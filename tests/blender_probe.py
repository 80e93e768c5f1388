"""Run by test_blender_versions.py under each Blender version: generate one character of each
shipped model and print, as JSON, how far its bones are from the rest pose at the middle frame
(the mean rotation angle of the pose bones, radians) and where its root is. The same seed on
the same device gives the same motion, so every version must print the same numbers."""
import json
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import bpy  # noqa: E402

import blender_addon  # noqa: E402
from blender_addon import api  # noqa: E402

blender_addon.register()
out = {"version": bpy.app.version_string}
for model in ("human", "quadruped", "ball"):
    made = api.generate_motion(model=model, seed=3, seconds=1.0, steps=10, location=(0.0, 0.0, 0.0))
    rig = made["objects"][0]
    bpy.context.scene.frame_set(15)
    angles = [2 * math.acos(min(1.0, abs(pb.matrix_basis.to_quaternion().w))) for pb in rig.pose.bones]
    out[model] = {"mean_angle": sum(angles) / len(angles), "root": list(rig.pose.bones[0].head),
                  "frames": list(made["action"].frame_range)}
    for o in made["objects"]:
        bpy.data.objects.remove(o)
blender_addon.unregister()
print("PROBE " + json.dumps(out))
sys.stdout.flush()
