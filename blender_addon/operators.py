"""Operators: each one checks it can run (``poll``) and hands over to ``api``. The generating ones
have a synchronous ``execute`` (scripts, ``blender --background``) and, from the UI, an
``invoke`` that computes in a background thread while a timer polls it: Blender stays
responsive, the panel and status bar show progress, Esc or the panel's Cancel stops it.
Only ``MasError`` (a problem the user can fix) becomes a report; anything else is a bug and
keeps its traceback.
"""

import random

import bpy
from bpy.props import BoolProperty, EnumProperty, FloatProperty, IntProperty, StringProperty

from mas_engine.errors import MasError
from rigs.bonemaps import PRESETS, bones_of, detect_preset, load_bone_map, resolve_preset, save_bone_map

from . import api, dependencies, model_list
from .jobs import Job
from .operation import Operation
from .preferences import preferences, setup_paths
from .properties import PACES, RIGIFY_LIMBS

RUNNING: dict = {"job": None, "label": ""}      # the one job in flight, for the panel


def _idle(cls, context) -> bool:
    """poll() of the generating operators: one generation at a time."""
    if RUNNING["job"] is not None:
        cls.poll_message_set("a generation is running: wait for it or cancel it")
        return False
    return context.scene is not None


def fill_bone_map(settings, rig: str, mapping: dict) -> None:
    """The scene's editable bone map: one row per bone of the built-in ``rig``."""
    settings.bone_map_rig = rig
    settings.bone_map.clear()
    for b in bones_of(rig):
        item = settings.bone_map.add()
        item.builtin, item.bone = b, mapping.get(b, "")


def _settings_props():
    return {
        "model": StringProperty(name="Model", default="human", description="Shipped model name or checkpoint path"),
        "seed": IntProperty(name="Seed", default=0, min=0),
        "seconds": FloatProperty(name="Seconds", default=4.0, min=0.1),
        "views": IntProperty(name="Views", default=5, min=2, max=16),
        "steps": IntProperty(name="Steps", default=0, min=0, description="0: the model's own"),
        "device": StringProperty(name="Device", default="auto", description="auto, cpu or cuda"),
        "pace": EnumProperty(name="Pace", default="data", items=PACES, description="How much the motion moves"),
        "in_place": BoolProperty(name="In place", default=False),
        "loop": BoolProperty(name="Loop", default=False, description="A seamless loop that plays forever (Cycles modifiers)"),
        "loop_travel": BoolProperty(name="Loop travels", default=False,
                                    description="A loop that may travel steadily, a walk cycle that goes on: its "
                                                "location curves repeat with an offset (implies Loop)"),
        "key_tolerance": FloatProperty(name="Key tolerance", default=0.0, min=0.0, max=45.0,
                                       description="Keep only the keys that matter: rotations within this many "
                                                   "degrees, the root within this many cm (0: a key on every frame)"),
        "foot_lock": BoolProperty(name="Foot contacts", default=True,
                                  description="Clean up foot contacts in the fit: planted feet stay put"),
        "rigify_limbs": EnumProperty(name="Rigify limbs", default="FK", items=RIGIFY_LIMBS,
                                     description="On a generated Rigify rig: what the limbs' IK/FK switches are keyed to"),
        "target": StringProperty(name="Target", default="",
                                 description="Name of an armature object to drive; empty: a new built-in character"),
        "bone_map": StringProperty(name="Bone map", default="auto",
                                   description="auto, panel, a preset name, or a bone map .json file"),
    }


class _Settings:
    """Operator properties shared by generate, variants and batch."""
    __annotations__ = _settings_props()

    def common(self, context) -> dict:
        target = None
        if self.target:
            target = bpy.data.objects.get(self.target)
            if target is None:
                raise MasError(f"no object named {self.target!r} to drive")
        return dict(model=self.model, seconds=self.seconds, views=self.views, steps=self.steps, device=self.device,
                    in_place=self.in_place, loop=self.loop, loop_travel=self.loop_travel, foot_lock=self.foot_lock,
                    key_tolerance=self.key_tolerance, pace=self.pace,
                    target=target, bone_map=self.bone_map, rigify_limbs=self.rigify_limbs,
                    models_folder=preferences(context).models_folder)


class _JobOperator:
    """Runs an ``operation.Operation``: inline in execute, in a thread under invoke."""

    @classmethod
    def poll(cls, context):
        return _idle(cls, context)

    def operation(self, context) -> Operation:
        raise NotImplementedError

    def done(self, context, result) -> None:
        pass

    def execute(self, context):
        try:
            result = api.run(self.operation(context))
        except MasError as e:           # the scene is unchanged (the operation rolled back)
            self.report({"ERROR"}, str(e))
            return {"CANCELLED"}
        self.done(context, result)
        return {"FINISHED"}

    def invoke(self, context, event):
        if bpy.app.background or context.window is None:
            return self.execute(context)
        try:
            self._op = self.operation(context)
        except MasError as e:
            self.report({"ERROR"}, str(e))
            return {"CANCELLED"}
        self._job = Job(self._op.requests()).start()
        self._consumed = 0
        RUNNING.update(job=self._job, label=self.bl_label)
        wm = context.window_manager
        self._timer = wm.event_timer_add(0.1, window=context.window)
        wm.progress_begin(0, 100)
        wm.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def _end(self, context):
        wm = context.window_manager
        wm.event_timer_remove(self._timer)
        wm.progress_end()
        context.workspace.status_text_set(None)
        RUNNING.update(job=None, label="")
        for area in context.screen.areas:
            area.tag_redraw()

    def modal(self, context, event):
        job = self._job
        if event.type == "ESC":
            job.cancel()
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        pct = int(100 * job.progress)
        context.window_manager.progress_update(pct)
        context.workspace.status_text_set(f"MAS {self.bl_label}: {job.message} {pct}%  (Esc cancels)")
        for area in context.screen.areas:
            if area.type == "VIEW_3D":
                area.tag_redraw()
        try:
            state, result = self._advance()
        except MasError as e:
            self._op.abort()
            self._end(context)
            self.report({"ERROR"}, str(e))
            return {"CANCELLED"}
        except BaseException:           # a bug: leave the scene and the UI as they were, keep the traceback
            self._op.abort()
            self._end(context)
            raise
        if state == "running":
            return {"RUNNING_MODAL"}
        self._end(context)
        if state == "cancelled":
            self.report({"WARNING"}, "cancelled: nothing was changed")
            return {"CANCELLED"}
        self.done(context, result)
        return {"FINISHED"}

    def _advance(self):
        """One timer tick. Returns ("running", None) while the thread computes, ("cancelled", None),
        or ("finished", the operation's result) once every result is built into the scene.

        Scene data is built only after the thread has finished: torch running in the thread while
        Blender's main thread builds data crashed (a segfault in CI), so they never overlap."""
        job = self._job
        if not job.done:
            return "running", None
        if job.cancelled:
            self._op.abort()
            return "cancelled", None
        if job.failure:
            raise RuntimeError(job.failure)
        while self._consumed < len(job.results):
            self._op.consume(job.results[self._consumed])
            self._consumed += 1
        return "finished", self._op.finish()


class MAS_OT_generate_motion(_Settings, _JobOperator, bpy.types.Operator):
    """Generate a 3D motion with MAS: a new character at the 3D cursor, or an action on the target armature"""
    bl_idname = "mas.generate_motion"
    bl_label = "Generate Motion"
    bl_options = {"REGISTER", "UNDO"}
    start_from_pose: BoolProperty(name="Start from the current pose", default=False,
                                  description="Begin in the target armature's current pose")
    use_keyframes: BoolProperty(name="Through the target's keyframes", default=False,
                                description="In-between: pass through the poses at the target's keyframes")
    continue_action: BoolProperty(name="Continue the active action", default=False,
                                  description="Begin where the target's active action ends, with its velocity; "
                                              "the two then play one after the other on an NLA track")
    path: StringProperty(name="Root path", default="", description="Name of a curve object the root follows")

    def operation(self, context):
        path = None
        if self.path:
            path = bpy.data.objects.get(self.path)
            if path is None:
                raise MasError(f"no curve named {self.path!r} for the root path")
        return api.motion_operation([self.seed], start_from_pose=self.start_from_pose, use_keyframes=self.use_keyframes,
                                    path=path, continue_action=self.continue_action, **self.common(context))

    def done(self, context, made):
        m = made[0]
        rep = m["report"]
        first, last = m["action"].frame_range
        kept = f"; your action {m['kept_action']} is kept (fake user)" if m.get("kept_action") else ""
        self.report({"INFO"}, f"{m['action'].name}: {int(last - first) + 1} frames, "
                              f"fit error {1000 * rep.get('marker_error_m', 0):.0f} mm{kept}")
        if m["objects"] and m["objects"][0].name in context.view_layer.objects:
            for o in context.selected_objects:
                o.select_set(False)
            m["objects"][0].select_set(True)
            context.view_layer.objects.active = m["objects"][0]


class MAS_OT_generate_variants(_Settings, _JobOperator, bpy.types.Operator):
    """Generate several motions with consecutive seeds, to compare and keep one"""
    bl_idname = "mas.generate_variants"
    bl_label = "Generate Variants"
    bl_options = {"REGISTER", "UNDO"}
    count: IntProperty(name="Variants", default=3, min=1, max=64)
    arrange: EnumProperty(name="Arrange", default="SIDE_BY_SIDE",
                          items=[("SIDE_BY_SIDE", "Side by side", ""), ("NLA", "NLA strips", "")])
    spacing: FloatProperty(name="Spacing", default=1.5, min=0.0)

    def operation(self, context):
        return api.motion_operation(range(self.seed, self.seed + self.count), variants=True, arrange=self.arrange,
                                    spacing=self.spacing, **self.common(context))

    def done(self, context, made):
        self.report({"INFO"}, f"{len(made)} variants: keep one with 'Keep this variant'")


class MAS_OT_keep_variant(bpy.types.Operator):
    """Keep this variant (the active character, or the active NLA track) and delete the others"""
    bl_idname = "mas.keep_variant"
    bl_label = "Keep This Variant"
    bl_options = {"REGISTER", "UNDO"}
    nla_index: IntProperty(name="NLA track", default=-1, description="-1: keep the active character")

    @classmethod
    def poll(cls, context):
        if context.active_object is None:
            cls.poll_message_set("select the variant to keep")
            return False
        return True

    def execute(self, context):
        obj = context.active_object
        try:
            removed = api.keep_variant(obj, None if self.nla_index < 0 else self.nla_index)
        except MasError as e:
            self.report({"ERROR"}, str(e))
            return {"CANCELLED"}
        self.report({"INFO"}, f"kept {obj.name}; removed {len(removed)}")
        return {"FINISHED"}


class MAS_OT_generate_batch(_Settings, _JobOperator, bpy.types.Operator):
    """Generate many motions into files (BVH, FBX, glTF, .blend) and/or actions, with a report"""
    bl_idname = "mas.generate_batch"
    bl_label = "Generate Batch"
    bl_options = {"REGISTER"}
    count: IntProperty(name="Motions", default=10, min=1)
    settings_file: StringProperty(name="Settings file", subtype="FILE_PATH", default="")
    folder: StringProperty(name="Folder", subtype="DIR_PATH", default="//mas_batch")
    formats: StringProperty(name="Formats", default="BVH", description="Comma-separated: ACTION, BLEND, BVH, FBX, GLB")
    overwrite: BoolProperty(name="Overwrite", default=False)

    def operation(self, context):
        s = self.common(context)
        for unused in ("bone_map", "models_folder"):
            s.pop(unused)
        formats = [f.strip() for f in self.formats.split(",") if f.strip()]
        return api.batch_operation(self.folder, self.count, self.seed, self.settings_file, None, formats,
                                   self.overwrite, **s)

    def done(self, context, summary):
        n_fail = len(summary["failed"])
        msg = (f"batch: {len(summary['written'])} file(s) written, {len(summary['actions'])} action(s), "
               f"{len(summary['skipped'])} skipped, {n_fail} failed (report: {summary['folder']}/batch_report.json)")
        if n_fail:
            msg += "; first failure: " + f"{summary['failed'][0]['row']}: {summary['failed'][0]['reason']}"
        self.report({"WARNING" if n_fail else "INFO"}, msg)


class MAS_OT_cancel(bpy.types.Operator):
    """Stop the generation that is running (nothing it made is kept)"""
    bl_idname = "mas.cancel"
    bl_label = "Cancel"

    @classmethod
    def poll(cls, context):
        return RUNNING["job"] is not None

    def execute(self, context):
        RUNNING["job"].cancel()
        return {"FINISHED"}


class MAS_OT_random_seed(bpy.types.Operator):
    """Pick a random seed"""
    bl_idname = "mas.random_seed"
    bl_label = "Random Seed"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context):
        return context.scene is not None

    def execute(self, context):
        context.scene.mas.seed = random.randrange(0, 100000)
        return {"FINISHED"}


class MAS_OT_bone_map_preset(bpy.types.Operator):
    """Fill the bone map from a preset, matched against the active armature's bones"""
    bl_idname = "mas.bone_map_preset"
    bl_label = "Load Preset"
    bl_options = {"REGISTER", "UNDO"}
    preset: StringProperty(name="Preset", default="auto", description="auto: the preset that maps the most bones")

    @classmethod
    def poll(cls, context):
        obj = context.active_object
        if obj is None or obj.type != "ARMATURE":
            cls.poll_message_set("select an armature to map")
            return False
        return True

    def execute(self, context):
        s = context.scene.mas
        names = [b.name for b in context.active_object.data.bones]
        rig = s.bone_map_rig
        if self.preset == "auto":
            name, m = detect_preset(rig, names)
        elif self.preset in PRESETS.get(rig, {}):
            name, m = self.preset, resolve_preset(PRESETS[rig][self.preset], names)
        else:
            self.report({"ERROR"}, f"unknown preset {self.preset}")
            return {"CANCELLED"}
        fill_bone_map(s, rig, m)
        self.report({"INFO"}, f"preset {name}: {len(m)} bones mapped")
        return {"FINISHED"}


class MAS_OT_bone_map_save(bpy.types.Operator):
    """Save the bone map as a JSON file"""
    bl_idname = "mas.bone_map_save"
    bl_label = "Save Bone Map"
    filepath: StringProperty(subtype="FILE_PATH", default="bone_map.json")

    @classmethod
    def poll(cls, context):
        return context.scene is not None and len(context.scene.mas.bone_map) > 0

    def execute(self, context):
        s = context.scene.mas
        path = save_bone_map(bpy.path.abspath(self.filepath), s.bone_map_rig, {p.builtin: p.bone for p in s.bone_map if p.bone})
        self.report({"INFO"}, f"saved {path}")
        return {"FINISHED"}

    def invoke(self, context, event):
        context.window_manager.fileselect_add(self)
        return {"RUNNING_MODAL"}


class MAS_OT_bone_map_load(bpy.types.Operator):
    """Load a bone map JSON file"""
    bl_idname = "mas.bone_map_load"
    bl_label = "Load Bone Map"
    bl_options = {"REGISTER", "UNDO"}
    filepath: StringProperty(subtype="FILE_PATH")

    @classmethod
    def poll(cls, context):
        return context.scene is not None

    def execute(self, context):
        try:
            rig, m = load_bone_map(bpy.path.abspath(self.filepath))
        except ValueError as e:
            self.report({"ERROR"}, str(e))
            return {"CANCELLED"}
        fill_bone_map(context.scene.mas, rig, m)
        return {"FINISHED"}

    def invoke(self, context, event):
        context.window_manager.fileselect_add(self)
        return {"RUNNING_MODAL"}


class MAS_OT_refresh(bpy.types.Operator):
    """Look for the engine and the models again (after installing dependencies or adding checkpoints)"""
    bl_idname = "mas.refresh"
    bl_label = "Refresh"

    def execute(self, context):
        setup_paths(context)
        ok, line = dependencies.refresh()
        n = len(model_list.refresh(preferences(context).models_folder))
        self.report({"INFO"} if ok else {"WARNING"}, f"{line}; {n} model(s)")
        return {"FINISHED"}


classes = (MAS_OT_refresh, MAS_OT_generate_motion, MAS_OT_generate_variants, MAS_OT_keep_variant, MAS_OT_generate_batch,
           MAS_OT_cancel, MAS_OT_random_seed, MAS_OT_bone_map_preset, MAS_OT_bone_map_save, MAS_OT_bone_map_load)
