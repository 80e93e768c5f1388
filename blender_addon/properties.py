"""The panel's settings, stored in the scene (``scene.mas``), and the editable bone map."""

import bpy
from bpy.props import (BoolProperty, CollectionProperty, EnumProperty, FloatProperty, IntProperty, PointerProperty,
                       StringProperty)

from rigs.bonemaps import PRESETS

from . import model_list
from .preferences import preferences

_MODEL_ITEMS: list = []      # Blender needs the enum item strings kept alive


def model_items(self, context):
    """Shipped models (``human`` first: the default), then checkpoints in the preferences' models
    folder; one that cannot be used says why. Read from the cached list (``model_list``)."""
    _MODEL_ITEMS.clear()
    found = model_list.models(preferences(context).models_folder)
    for key in sorted(found, key=lambda k: (not found[k].shipped, k != "human", k)):
        info = found[key]
        label = key if info.shipped else f"{bpy.path.basename(key)} (yours)"
        if info.problem:
            _MODEL_ITEMS.append((key, f"{label} (cannot be used)", f"{key}: {info.problem}"))
        else:
            _MODEL_ITEMS.append((key, label, f"{info.layout} keypoints, {info.size_mb:.1f} MB: {key}. {info.note}"))
    if not _MODEL_ITEMS:
        _MODEL_ITEMS.append(("", "no model found", "no shipped model and no checkpoint in the models folder"))
    return _MODEL_ITEMS


def preset_items(self, context):
    return [(name, name.capitalize() if name != "smpl" else "SMPL / SMPL-X", "") for name in PRESETS.get(self.bone_map_rig, {})]


class MAS_PG_bone_pair(bpy.types.PropertyGroup):
    builtin: StringProperty(name="Built-in bone", description="Bone of the built-in rig")
    bone: StringProperty(name="Your bone", description="The bone of the selected armature that plays it (empty: not driven)")


DEVICES = [("auto", "Auto", "The GPU when torch sees one, else the CPU"), ("cpu", "CPU", ""), ("cuda", "GPU (CUDA)", "")]


PACES = [("data", "By seed", "Each seed its own pace, from still to lively in turn, as often as the model's card says "
                               "(the shipped human: walks about a third of the time; seed 0 the liveliest)"),
         ("still", "Still", "Stands or moves a little (the stillest quarter of the training data)"),
         ("calm", "Calm", "Moves calmly (the second quarter)"),
         ("lively", "Lively", "Moves a lot (the third quarter)"),
         ("liveliest", "Liveliest", "Walks, runs, dances (the liveliest quarter)")]


RIGIFY_LIMBS = [("FK", "FK", "The limbs play their FK controls; IK targets and poles are keyed too"),
         ("IK", "IK", "The limbs play their IK targets and poles (the IK chains' stretch keyed off, so they follow "
                      "the motion exactly); FK controls are keyed too")]


class MAS_PG_settings(bpy.types.PropertyGroup):
    model: EnumProperty(name="Model", items=model_items, description="Motion model (shipped, or a checkpoint of yours)")
    seconds: FloatProperty(name="Length", default=4.0, min=0.5, max=600.0, soft_max=60.0, unit="TIME_ABSOLUTE",
                           description="Seconds of motion (any length up to 10 minutes; beyond the model's own "
                                       "length it is made in overlapping windows); frames at the scene's frame rate")
    seed: IntProperty(name="Seed", default=0, min=0, description="Same seed, same settings, same device: same motion")
    views: IntProperty(name="Views", default=5, min=2, max=16, description="MAS views triangulated at every step")
    steps: IntProperty(name="Steps", default=0, min=0, max=1000,
                       description="Diffusion steps (0: the model's own); fewer is faster and rougher")
    device: EnumProperty(name="Device", items=DEVICES, default="auto")
    pace: EnumProperty(name="Pace", items=PACES, default="data",
                       description="How much the motion moves (a model trained with pace classes; others move as they do)")
    in_place: BoolProperty(name="In place", default=False, description="Remove the horizontal root motion")
    key_tolerance: FloatProperty(name="Key tolerance", default=0.0, min=0.0, max=45.0, soft_max=5.0,
                                 description="Keep only the keys that matter: every rotation within this many degrees, "
                                             "the root within this many cm, of the motion (0: a key on every frame)")
    foot_lock: BoolProperty(name="Foot contacts", default=True,
                            description="Clean up foot contacts when fitting the rig: planted feet stay put "
                                        "(off: the plain fit, a little closer to the generated joints)")
    loop: BoolProperty(name="Loop", default=False,
                       description="A seamless loop: the last frame flows into the first, the action cycles forever")
    loop_travel: BoolProperty(name="Loop travels", default=False,
                              description="A loop that may travel steadily, a walk cycle that goes on: the root's "
                                          "location repeats with an offset (implies Loop)")
    start_from_pose: BoolProperty(name="Start from the current pose", default=False,
                                  description="Begin in the selected armature's current pose (a character made or "
                                              "driven by Generate Motion)")
    continue_action: BoolProperty(name="Continue the active action", default=False,
                                  description="Begin where the selected armature's active action ends, with its "
                                              "velocity (a character made or driven by Generate Motion); the two then "
                                              "play one after the other on an NLA track (the new part's fit is "
                                              "the plain one: Foot contacts would re-plant the feet at the join)")
    use_keyframes: BoolProperty(name="Through its keyframes", default=False,
                                description="In-between: pass through the poses at the selected armature's keyframes "
                                            "(its active action, from the scene's start)")
    path: PointerProperty(name="Root path", type=bpy.types.Object, poll=lambda self, obj: obj.type == "CURVE",
                          description="A curve the character's root follows on the floor, at constant speed")
    rigify_limbs: EnumProperty(name="Limbs", default="FK", items=RIGIFY_LIMBS,
                               description="On a generated Rigify rig: what the limbs' IK/FK switches are keyed to")
    target: EnumProperty(name="Target", default="NEW", items=[
        ("NEW", "New character", "A built-in character for the model (human, horse) at the 3D cursor"),
        ("SELECTED", "Selected armature", "Drive the active armature through the bone map")])
    bone_map_rig: StringProperty(default="human")
    bone_map_preset: EnumProperty(name="Preset", items=preset_items)
    bone_map: CollectionProperty(type=MAS_PG_bone_pair)
    variants: IntProperty(name="Variants", default=3, min=2, max=32)
    arrange: EnumProperty(name="Arrange", default="SIDE_BY_SIDE", items=[
        ("SIDE_BY_SIDE", "Side by side", "One character per variant, offset along X"),
        ("NLA", "NLA strips", "One character, one NLA track per variant (the first one plays)")])
    spacing: FloatProperty(name="Spacing", default=1.5, min=0.0, unit="LENGTH")
    batch_count: IntProperty(name="Motions", default=10, min=1)
    batch_file: StringProperty(name="Settings file", subtype="FILE_PATH",
                               description="Optional CSV or JSON list of settings, one motion per row")
    batch_folder: StringProperty(name="Folder", subtype="DIR_PATH", default="//mas_batch")
    batch_formats: EnumProperty(name="Write", options={"ENUM_FLAG"}, default={"BVH"}, items=[
        ("ACTION", "Actions", "Keep the actions in this file (fake user)"), ("BLEND", ".blend", ""),
        ("BVH", "BVH", ""), ("FBX", "FBX", ""), ("GLB", "glTF", "")])
    batch_overwrite: BoolProperty(name="Overwrite", default=False, description="Replace files that exist")
    show_bone_map: BoolProperty(name="Bone map", default=False)


classes = (MAS_PG_bone_pair, MAS_PG_settings)


def register():
    for c in classes:
        bpy.utils.register_class(c)
    bpy.types.Scene.mas = PointerProperty(type=MAS_PG_settings)


def unregister():
    del bpy.types.Scene.mas
    for c in reversed(classes):
        bpy.utils.unregister_class(c)
