"""The "Generate Motion" tab in the 3D viewport's sidebar (N panel). ``draw`` only reads: the
engine's status and the model list are cached (``dependencies``, ``model_list``)."""

import bpy

from . import dependencies, model_list, rigify
from .operators import RUNNING
from .preferences import preferences


def _copy_settings(op, context):
    """Hand the panel's settings to an operator button."""
    s = context.scene.mas
    op.model, op.seed, op.seconds, op.views, op.steps = s.model, s.seed, s.seconds, s.views, s.steps
    op.device, op.in_place, op.loop, op.foot_lock = s.device, s.in_place, s.loop, s.foot_lock
    op.loop_travel, op.pace = s.loop_travel, s.pace
    op.key_tolerance, op.rigify_limbs = s.key_tolerance, s.rigify_limbs
    obj = context.active_object
    op.target = obj.name if s.target == "SELECTED" and obj is not None and obj.type == "ARMATURE" else ""
    op.bone_map = "panel" if len(s.bone_map) and not rigify.is_control_rig(obj) else "auto"


class _Sidebar:
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "Generate Motion"


class MAS_PT_generate(_Sidebar, bpy.types.Panel):
    bl_label = "Generate Motion"
    bl_idname = "MAS_PT_generate"

    def draw(self, context):
        layout, s = self.layout, context.scene.mas
        ok = _draw_model(layout, context)
        col = layout.column(align=True)
        col.prop(s, "seconds")
        fps = context.scene.render.fps / context.scene.render.fps_base
        col.label(text=f"{round(s.seconds * fps)} frames at the scene's {fps:g} fps")
        row = col.row(align=True)
        row.prop(s, "seed")
        row.operator("mas.random_seed", text="", icon="FILE_REFRESH")
        for name in ("pace", "views", "steps", "device", "in_place", "foot_lock", "key_tolerance", "loop", "loop_travel", "path"):
            col.prop(s, name)
        layout.prop(s, "target", expand=True)
        if s.target == "SELECTED":
            _draw_target(layout, context)
        job = RUNNING["job"]
        if job is not None:
            box = layout.box()
            box.label(text=f"{RUNNING['label']}: {job.message}")
            box.progress(factor=job.progress, text=f"{int(100 * job.progress)}%")
            box.operator("mas.cancel", icon="CANCEL")
            return
        col = layout.column()
        col.enabled = ok
        col.scale_y = 1.5
        op = col.operator("mas.generate_motion", icon="ARMATURE_DATA")
        _copy_settings(op, context)
        op.path = s.path.name if s.path is not None else ""
        op.start_from_pose = s.target == "SELECTED" and s.start_from_pose
        op.use_keyframes = s.target == "SELECTED" and s.use_keyframes
        op.continue_action = s.target == "SELECTED" and s.continue_action


def _draw_model(layout, context) -> bool:
    """The model, its facts or why it cannot be used, and the engine's status; True if it can generate."""
    s = context.scene.mas
    ok, line = dependencies.status()
    info = model_list.models(preferences(context).models_folder).get(s.model)
    col = layout.column(align=True)
    row = col.row(align=True)
    row.prop(s, "model")
    row.operator("mas.refresh", text="", icon="FILE_REFRESH")
    if info is None:
        col.label(text="no model found (see the preferences' models folder)", icon="ERROR")
    elif info.problem:
        col.label(text=f"cannot be used: {info.problem}"[:90], icon="ERROR")
    else:
        col.label(text=f"{info.layout}, {info.size_mb:.1f} MB; {line if ok else 'engine missing'}",
                  icon="CHECKMARK" if ok else "ERROR")
        if info.note:
            col.label(text=info.note[:90], icon="INFO")
    if ok is False:
        box = layout.box()
        box.label(text=line[:80], icon="ERROR")
        box.label(text="Edit > Preferences > Add-ons > MAS: Install dependencies")
    return ok is not False and info is not None and info.usable


def _draw_target(layout, context) -> None:
    """Driving the selected armature: start pose, keyframes, and the bone map."""
    s, obj = context.scene.mas, context.active_object
    if obj is None or obj.type != "ARMATURE":
        layout.label(text="select an armature", icon="ERROR")
    col = layout.column(align=True)
    col.prop(s, "start_from_pose")
    col.prop(s, "continue_action")
    col.prop(s, "use_keyframes")
    if rigify.is_control_rig(obj):             # no bone map: its ORG bones are the metarig's
        box = layout.box()
        box.label(text="Rigify rig: keyed on its FK and IK controls", icon="CON_ARMATURE")
        box.row().prop(s, "rigify_limbs", expand=True)
        return
    layout.prop(s, "show_bone_map", icon="TRIA_DOWN" if s.show_bone_map else "TRIA_RIGHT")
    if not s.show_bone_map:
        return
    row = layout.row(align=True)
    row.prop(s, "bone_map_preset", text="")
    row.operator("mas.bone_map_preset", text="Apply").preset = s.bone_map_preset or "auto"
    row.operator("mas.bone_map_preset", text="Auto").preset = "auto"
    row = layout.row(align=True)
    row.operator("mas.bone_map_load", icon="FILEBROWSER")
    row.operator("mas.bone_map_save", icon="FILE_TICK")
    box = layout.box()
    for item in s.bone_map:
        r = box.row()
        r.label(text=item.builtin)
        if obj is not None and obj.type == "ARMATURE":
            r.prop_search(item, "bone", obj.data, "bones", text="")
        else:
            r.prop(item, "bone", text="")


class MAS_PT_variants(_Sidebar, bpy.types.Panel):
    bl_label = "Variants"
    bl_parent_id = "MAS_PT_generate"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context):
        layout = self.layout
        s = context.scene.mas
        layout.prop(s, "variants")
        layout.prop(s, "arrange")
        layout.prop(s, "spacing")
        op = layout.operator("mas.generate_variants", icon="MOD_ARRAY")
        _copy_settings(op, context)
        op.count, op.arrange, op.spacing = s.variants, s.arrange, s.spacing
        obj = context.active_object
        if obj is not None and (obj.get("mas_group") or (obj.parent is not None and obj.parent.get("mas_group"))):
            layout.operator("mas.keep_variant", icon="CHECKMARK")
        elif obj is not None and obj.animation_data is not None and len(obj.animation_data.nla_tracks) > 1:
            for i, t in enumerate(obj.animation_data.nla_tracks):
                layout.operator("mas.keep_variant", text=f"Keep {t.name}").nla_index = i


class MAS_PT_batch(_Sidebar, bpy.types.Panel):
    bl_label = "Batch"
    bl_parent_id = "MAS_PT_generate"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context):
        layout = self.layout
        s = context.scene.mas
        layout.prop(s, "batch_count")
        layout.prop(s, "batch_file")
        layout.prop(s, "batch_folder")
        layout.prop(s, "batch_formats")
        layout.prop(s, "batch_overwrite")
        op = layout.operator("mas.generate_batch", icon="FILE_FOLDER")
        _copy_settings(op, context)
        op.count, op.settings_file, op.folder = s.batch_count, s.batch_file, s.batch_folder
        op.formats, op.overwrite = ",".join(sorted(s.batch_formats)), s.batch_overwrite


classes = (MAS_PT_generate, MAS_PT_variants, MAS_PT_batch)
