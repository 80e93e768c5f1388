"""BVH files written by MAS play correctly in Blender: its own importer, its own evaluation."""
import numpy as np
import pytest

bpy = pytest.importorskip("bpy")

from retarget.bvh_writer import write_bvh  # noqa: E402
from test_retarget import posed_rig  # noqa: E402


def test_blender_imports_our_bvh_with_the_same_joint_positions(tmp_path):
    truth, _ = posed_rig(frames=20, seed=7)
    path = write_bvh(tmp_path / "walk.bvh", truth)
    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.ops.import_anim.bvh(filepath=str(path), update_scene_fps=True, update_scene_duration=True)
    obj = bpy.context.selected_objects[0]
    assert obj.type == "ARMATURE" and len(obj.pose.bones) == len(truth.armature.bones)
    scene = bpy.context.scene
    heads = truth.heads()
    worst = 0.0
    for f in (0, 7, 19):
        scene.frame_set(scene.frame_start + f)
        for b, name in enumerate(truth.armature.bones):
            got = np.array(obj.matrix_world @ obj.pose.bones[name].head)
            worst = max(worst, float(np.abs(got - heads[f, b]).max()))
    assert worst < 1e-4, worst   # 0.1 mm, in Blender's Z-up metres
