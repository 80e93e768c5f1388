"""A generated Rigify control rig driven through its controls (``blender_addon/rigify.py``), with the
real ``bpy`` module. Apart from the other Blender tests: on the bpy 4.2 module, glTF export in the
same process after a Rigify generation crashed now and then (``tests/test_blender_versions.py``
runs this file in a process of its own)."""
from __future__ import annotations

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")

from blender_addon import api  # noqa: E402
from test_blender_addon import FAST, draw_panels, fcurve_values, fresh, unregister_at_the_end  # noqa: E402,F401


@pytest.fixture
def rigify_rig(fresh):
    """Rigify's basic human metarig and the control rig generated from it (Rigify ships with
    Blender; enabled for the test only, so the tests after it see Blender as before)."""
    import addon_utils

    addon_utils.enable("rigify", default_set=True)
    try:
        bpy.ops.object.armature_basic_human_metarig_add()
        meta = bpy.context.object
        bpy.ops.pose.rigify_generate()
        yield meta, bpy.context.object
    finally:
        addon_utils.disable("rigify", default_set=True)


RIGIFY_BONES = ["spine", "spine.003", "spine.004", "spine.006", "shoulder.L", "upper_arm.L", "forearm.L", "hand.L",
                "thigh.L", "shin.L", "foot.L", "toe.L", "upper_arm.R", "forearm.R", "hand.R", "thigh.R", "shin.R",
                "foot.R", "toe.R"]


def org_error(meta, rig, frames) -> np.ndarray:
    """Per bone of RIGIFY_BONES, the largest distance (m) over ``frames`` between the metarig's bone
    (head and tail) and the control rig's ORG- copy of it."""
    err = np.zeros(len(RIGIFY_BONES))
    for f in frames:
        bpy.context.scene.frame_set(f)
        for k, n in enumerate(RIGIFY_BONES):
            a, b = meta.pose.bones[n], rig.pose.bones["ORG-" + n]
            err[k] = max(err[k], (a.head - b.head).length, (a.tail - b.tail).length)
    return err


@pytest.mark.parametrize("limbs", ["FK", "IK"])
def test_a_rigify_control_rig_plays_the_motion_with_its_controls(fresh, rigify_rig, limbs):
    """On a generated Rigify rig the motion is keyed on the controls an animator works with (FK and
    IK controls, torso, hips, chest, neck, head, poles; IK/FK switches and the IK chains' stretch
    keyed), and the rig's ORG/DEF bones follow the same motion as the metarig driven directly,
    in FK and in IK (within 0.1 mm: with Rigify's built-in IK stretch of 0.1 left on, the knees
    landed 17.5 mm off)."""
    meta, rig = rigify_rig
    before = {o.name for o in bpy.data.objects}, {a.name for a in bpy.data.armatures}
    ref = api.generate_motion(seed=3, target=meta, **FAST)
    made = api.generate_motion(seed=3, target=rig, rigify_limbs=limbs, **FAST)
    assert ({o.name for o in bpy.data.objects}, {a.name for a in bpy.data.armatures}) == before   # no helper left
    assert not any(c.name.startswith("MAS") for pb in rig.pose.bones for c in pb.constraints)
    keyed = {p.split('"')[1] for p, _ in fcurve_values(made["action"])}
    for side in (".L", ".R"):
        assert {f"upper_arm_fk{side}", f"hand_ik{side}", f"foot_ik{side}", f"thigh_fk{side}",
                f"thigh_ik_target{side}", f"upper_arm_ik_target{side}"} <= keyed
    assert {"torso", "hips", "chest", "neck", "head"} <= keyed
    assert not any(k.startswith(("ORG-", "DEF-")) for k in keyed)
    stretch = {p.split('"')[1]: v[0, 1] for (p, _), v in fcurve_values(made["action"]).items() if p.endswith("ik_stretch")}
    assert {k for k in keyed if k.startswith("MCH-")} < set(stretch) and len(stretch) == 8, stretch  # 4 chains of 2
    assert set(stretch.values()) == {0.0}
    switch = fcurve_values(made["action"])[('pose.bones["thigh_parent.L"]["IK_FK"]', 0)]
    assert switch[0, 1] == (1.0 if limbs == "FK" else 0.0)
    err = dict(zip(RIGIFY_BONES, org_error(meta, rig, range(1, 61, 6))))
    fresh.frame_set(30)
    assert (rig.pose.bones["DEF-forearm.L"].head - rig.data.bones["DEF-forearm.L"].head_local).length > 0.05  # it moves
    assert max(err.values()) < 1e-4, err
    assert ref["action"] is not made["action"] and rig.animation_data.action is made["action"]


def test_the_panel_offers_rigify_limbs_and_its_button_drives_the_controls(fresh, rigify_rig):
    _, rig = rigify_rig
    bpy.context.view_layer.objects.active = rig
    fresh.mas.target, fresh.mas.show_bone_map, fresh.mas.rigify_limbs = "SELECTED", True, "IK"
    log = draw_panels()
    assert ("prop", "rigify_limbs") in log and ("prop", "bone") not in log      # no bone map for a control rig
    assert bpy.ops.mas.generate_motion(target=rig.name, seed=2, rigify_limbs="IK", **FAST) == {"FINISHED"}
    keys = fcurve_values(rig.animation_data.action)
    assert keys[('pose.bones["upper_arm_parent.L"]["IK_FK"]', 0)][0, 1] == 0.0
    api.generate_motion(target=rig, seed=4, continue_action=True, **FAST)       # its keypoints are read back too
    assert [len(t.strips) for t in rig.animation_data.nla_tracks] == [2]
