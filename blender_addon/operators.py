"""Operators. Each one has a synchronous ``execute`` (scripts, ``blender --background``) and, from
the UI, an ``invoke`` that computes in a background thread while a timer polls it: Blender
stays responsive, the panel and status bar show progress, Esc or the panel's Cancel stops it.
"""

import random

import bpy
from bpy.props import BoolProperty, EnumProperty, FloatProperty, IntProperty, StringProperty

from . import api, engine
from .preferences import preferences, setup_paths

RUNNING: dict = {"job": None, "label": ""}      # the one job in flight, for the panel


def _settings_props():
    return {
        "model": StringProperty(name="Model", default="human", description="Shipped model name or checkpoint path"),
        "seed": IntProperty(name="Seed", default=0, min=0),
        "seconds": FloatProperty(name="Seconds", default=4.0, min=0.1),
        "views": IntProperty(name="Views", default=5, min=2, max=16),
        "steps": IntProperty(name="Steps", default=0, min=0, description="0: the model's own"),
        "device": StringProperty(name="Device", default="auto", description="auto, cpu or cuda"),
        "in_place": BoolProperty(name="In place", default=False),
        "loop": BoolProperty(name="Loop", default=False, description="A seamless loop that plays forever (Cycles modifiers)"),
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
                raise api.MasError(f"no object named {self.target!r} to drive")
        return dict(model=self.model, seconds=self.seconds, views=self.views, steps=self.steps, device=self.device,
                    in_place=self.in_place, loop=self.loop, target=target, bone_map=self.bone_map,
                    models_folder=preferences(context).models_folder)


class _JobOperator:
    """Runs an ``api.Operation``: inline in execute, in a thread under invoke."""

    def operation(self, context) -> api.Operation:
        raise NotImplementedError

    def done(self, context, result) -> None:
        pass

    def _prepare(self, context):
        setup_paths(context)
        ok, line = engine.engine_status()
        if not ok:
            raise api.MasError(line)
        return self.operation(context)

    def execute(self, context):
        try:
            op = self._prepare(context)
            result = api.run(op)
        except Exception as e:        # noqa: BLE001 - shown to the user, the scene is unchanged
            self.report({"ERROR"}, str(e))
            return {"CANCELLED"}
        self.done(context, result)
        return {"FINISHED"}

    def invoke(self, context, event):
        if bpy.app.background or context.window is None:
            return self.execute(context)
        if RUNNING["job"] is not None:
            self.report({"WARNING"}, "a generation is already running: wait for it or cancel it")
            return {"CANCELLED"}
        try:
            self._op = self._prepare(context)
        except Exception as e:        # noqa: BLE001
            self.report({"ERROR"}, str(e))
            return {"CANCELLED"}
        self._job = engine.Job(self._op.requests()).start()
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
        except Exception as e:        # noqa: BLE001
            self._op.abort()
            self._end(context)
            self.report({"ERROR"}, str(e))
            return {"CANCELLED"}
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
    path: StringProperty(name="Root path", default="", description="Name of a curve object the root follows")

    def operation(self, context):
        s = self.common(context)
        target = s.pop("target")
        path = None
        if self.path:
            path = bpy.data.objects.get(self.path)
            if path is None:
                raise api.MasError(f"no curve named {self.path!r} for the root path")
        loc = context.scene.cursor.location[:]
        wanted = api.scene_constraints(self.model, target, self.start_from_pose, self.use_keyframes, path, loc,
                                       self.seconds, s["models_folder"])
        reqs = api.requests_for([self.seed], target=target, **{k: v for k, v in s.items() if k != "bone_map"},
                                bone_map=s["bone_map"], constraints=wanted)
        return api.Motions(reqs, target, loc)

    def done(self, context, made):
        m = made[0]
        rep = m["report"]
        first, last = m["action"].frame_range
        self.report({"INFO"}, f"{m['action'].name}: {int(last - first) + 1} frames, "
                              f"fit error {1000 * rep.get('marker_error_m', 0):.0f} mm")
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
        s = self.common(context)
        target, bone_map = s.pop("target"), s.pop("bone_map")
        reqs = api.requests_for(range(self.seed, self.seed + self.count), target=target, bone_map=bone_map, **s)
        group = f"{api.model_name(self.model)}_seeds{self.seed}-{self.seed + self.count - 1}"
        arrange = "NLA" if target is not None else self.arrange
        return api.Motions(reqs, target, context.scene.cursor.location[:], arrange, self.spacing, group)

    def done(self, context, made):
        self.report({"INFO"}, f"{len(made)} variants: keep one with 'Keep this variant'")


class MAS_OT_keep_variant(bpy.types.Operator):
    """Keep this variant (the active character, or the active NLA track) and delete the others"""
    bl_idname = "mas.keep_variant"
    bl_label = "Keep This Variant"
    bl_options = {"REGISTER", "UNDO"}
    nla_index: IntProperty(name="NLA track", default=-1, description="-1: keep the active character")

    def execute(self, context):
        obj = context.active_object
        if obj is None:
            self.report({"ERROR"}, "select the variant to keep")
            return {"CANCELLED"}
        try:
            removed = api.keep_variant(obj, None if self.nla_index < 0 else self.nla_index)
        except Exception as e:        # noqa: BLE001
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
        target = s.pop("target")
        s.pop("bone_map")
        s.pop("models_folder")
        rows = (api.read_settings_file(self.settings_file) if self.settings_file
                else [{"seed": self.seed + i} for i in range(self.count)])
        formats = [f.strip() for f in self.formats.split(",") if f.strip()]
        return api.Batch(rows, self.folder, formats, self.overwrite, defaults=s, target=target)

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

    def execute(self, context):
        if RUNNING["job"] is not None:
            RUNNING["job"].cancel()
        return {"FINISHED"}


class MAS_OT_random_seed(bpy.types.Operator):
    """Pick a random seed"""
    bl_idname = "mas.random_seed"
    bl_label = "Random Seed"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context):
        context.scene.mas.seed = random.randrange(0, 100000)
        return {"FINISHED"}


class MAS_OT_bone_map_preset(bpy.types.Operator):
    """Fill the bone map from a preset, matched against the active armature's bones"""
    bl_idname = "mas.bone_map_preset"
    bl_label = "Load Preset"
    bl_options = {"REGISTER", "UNDO"}
    preset: StringProperty(name="Preset", default="auto", description="auto: the preset that maps the most bones")

    def execute(self, context):
        from rigs.bonemaps import HORSE_BONES, HUMAN_BONES, PRESETS, detect_preset, resolve_preset

        s = context.scene.mas
        obj = context.active_object
        if obj is None or obj.type != "ARMATURE":
            self.report({"ERROR"}, "select an armature to map")
            return {"CANCELLED"}
        names = [b.name for b in obj.data.bones]
        rig = s.bone_map_rig
        if self.preset == "auto":
            name, m = detect_preset(rig, names)
        elif self.preset in PRESETS.get(rig, {}):
            name, m = self.preset, resolve_preset(PRESETS[rig][self.preset], names)
        else:
            self.report({"ERROR"}, f"unknown preset {self.preset}")
            return {"CANCELLED"}
        s.bone_map.clear()
        for b in (HUMAN_BONES if rig == "human" else HORSE_BONES):
            item = s.bone_map.add()
            item.builtin, item.bone = b, m.get(b, "")
        self.report({"INFO"}, f"preset {name}: {len(m)} bones mapped")
        return {"FINISHED"}


class MAS_OT_bone_map_save(bpy.types.Operator):
    """Save the bone map as a JSON file"""
    bl_idname = "mas.bone_map_save"
    bl_label = "Save Bone Map"
    filepath: StringProperty(subtype="FILE_PATH", default="bone_map.json")

    def execute(self, context):
        from rigs.bonemaps import save_bone_map

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

    def execute(self, context):
        from rigs.bonemaps import HORSE_BONES, HUMAN_BONES, load_bone_map

        try:
            rig, m = load_bone_map(bpy.path.abspath(self.filepath))
        except ValueError as e:
            self.report({"ERROR"}, str(e))
            return {"CANCELLED"}
        s = context.scene.mas
        s.bone_map_rig = rig
        s.bone_map.clear()
        for b in (HUMAN_BONES if rig == "human" else HORSE_BONES):
            item = s.bone_map.add()
            item.builtin, item.bone = b, m.get(b, "")
        return {"FINISHED"}

    def invoke(self, context, event):
        context.window_manager.fileselect_add(self)
        return {"RUNNING_MODAL"}


classes = (MAS_OT_generate_motion, MAS_OT_generate_variants, MAS_OT_keep_variant, MAS_OT_generate_batch,
           MAS_OT_cancel, MAS_OT_random_seed, MAS_OT_bone_map_preset, MAS_OT_bone_map_save, MAS_OT_bone_map_load)
