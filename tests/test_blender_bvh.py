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


@pytest.mark.parametrize("model", ["human", "quadruped", "ball"])
def test_generated_motions_of_every_shipped_model_play_in_blender(tmp_path, model):
    from mas_engine.checkpoint import load_checkpoint
    from mas_engine.sampler import MasSettings, sample_mas
    from retarget.retarget import retarget

    loaded = load_checkpoint(model)
    res = sample_mas(loaded, [3], int(loaded.fps), MasSettings(steps=20))
    motion = {"joints": res.joints[0], "fps": loaded.fps, "joint_names": loaded.layout.joints,
              "layout": loaded.layout.name}
    track, report = retarget(motion, rig="horse" if model == "quadruped" else "human")
    assert report["jitter_after"] <= report["jitter_before"]
    # the fit keeps the keypoints first (contact.foot_locked_fit: only fits within 20% + 5 mm of the best marker
    # error compete), so its feet may slide in a few more foot-frames than the input's (the quadruped's seed 3,
    # 30 frames x 4 hooves: 2 -> 4), never in more than 2% more
    assert report.get("skating_after", 0) <= report.get("skating_before", 0) + 0.02, report
    path = write_bvh(tmp_path / f"{model}.bvh", track)
    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.ops.import_anim.bvh(filepath=str(path), update_scene_fps=True, update_scene_duration=True)
    obj = bpy.context.selected_objects[0]
    scene = bpy.context.scene
    first, last = obj.animation_data.action.frame_range
    assert scene.render.fps == int(loaded.fps) and round(last - first) + 1 == len(track.root)
    heads, worst = track.heads(), 0.0
    for f in (0, len(track.root) // 2, len(track.root) - 1):
        scene.frame_set(scene.frame_start + f)
        for b, name in enumerate(track.armature.bones):
            worst = max(worst, float(np.abs(np.array(obj.matrix_world @ obj.pose.bones[name].head) - heads[f, b]).max()))
    assert worst < 1e-4, worst
