"""Building Blender data from the engine's plain data: armatures, their meshes, actions.

Conventions. A ``RotationTrack`` (retarget) holds per-bone local rotations relative to rest
in world-aligned rest frames (as BVH does), and the root bone's head in metres, Z up. A
Blender pose bone's rotation is relative to its own rest frame ``bone.matrix_local``, so a
track rotation q becomes ``Mw^T q Mw`` with ``Mw`` the bone's rest orientation in the world
(the object's rotation times ``matrix_local``). Bones between mapped bones stay at rest.

Everything made here is listed, so that a failure can remove it again (``remove``).
"""
from __future__ import annotations

import json
import math
from contextlib import contextmanager

import numpy as np

import bpy
from mathutils import Euler, Matrix, Quaternion, Vector

from rigs.mesh import ball, bone_tubes

from . import compat


def _link(obj, collection=None):
    (collection or bpy.context.scene.collection).objects.link(obj)
    return obj


@contextmanager
def editing(obj):
    """Edit mode on armature object ``obj`` for the ``with`` block (yields its edit bones), then
    object mode; the active object is put back (``obj`` if there was none)."""
    view_layer = bpy.context.view_layer
    previous = view_layer.objects.active
    view_layer.objects.active = obj
    try:
        with bpy.context.temp_override(active_object=obj, object=obj):
            bpy.ops.object.mode_set(mode="EDIT")
            yield obj.data.edit_bones
            bpy.ops.object.mode_set(mode="OBJECT")
    finally:
        view_layer.objects.active = previous if previous is not None else obj


def set_frame(frame: float) -> None:
    """Evaluate the scene at ``frame``, a fractional one included (as a frame and a subframe)."""
    whole = int(np.floor(frame))
    bpy.context.scene.frame_set(whole, subframe=float(frame - whole))


def build_armature(arm, name: str, location=(0.0, 0.0, 0.0), collection=None):
    """A Blender armature object from a ``rigs.armature.Armature`` (rest in metres, Z up), at ``location``."""
    data = bpy.data.armatures.new(name)
    obj = _link(bpy.data.objects.new(name, data), collection)
    obj.location = location
    with editing(obj) as edit_bones:
        bones = []
        for b, bone_name in enumerate(arm.bones):
            eb = edit_bones.new(bone_name)
            eb.head = arm.heads[b].tolist()
            eb.tail = arm.tails[b].tolist()
            if arm.parents[b] >= 0:
                eb.parent = bones[arm.parents[b]]
            bones.append(eb)
    data.display_type = "STICK"
    for pb in obj.pose.bones:
        pb.rotation_mode = "QUATERNION"
    return obj


def build_body(arm, arm_obj, name: str):
    """The rig's procedural tube mesh (``rigs.mesh``), skinned bone by bone, parented to ``arm_obj``."""

    tubes = bone_tubes(arm)
    me = bpy.data.meshes.new(name)
    me.from_pydata(tubes.vertices.tolist(), [], [list(dict.fromkeys(f)) for f in tubes.faces.tolist()])
    me.update()
    obj = _link(bpy.data.objects.new(name, me), arm_obj.users_collection[0])
    for b, bone_name in enumerate(arm.bones):
        idx = np.nonzero(tubes.bone == b)[0]
        if len(idx):
            obj.vertex_groups.new(name=bone_name).add(idx.tolist(), 1.0, "REPLACE")
    obj.modifiers.new("Armature", "ARMATURE").object = arm_obj
    obj.parent = arm_obj
    return obj


def continuous_quaternions(q: np.ndarray) -> np.ndarray:
    """Flip quaternion signs (frames x 4) so consecutive ones lie in the same hemisphere."""
    q = q.copy()
    for f in range(1, len(q)):
        if np.dot(q[f], q[f - 1]) < 0:
            q[f] = -q[f]
    return q


def write_keys(channels, data_path: str, frames: np.ndarray, values: np.ndarray, group: str, tolerance: float = 0.0) -> None:
    """One F-curve per column of values (frames x n), all keys at once. With a tolerance, only the
    frames ``reduce_keys`` keeps (the same frames for every column: a rotation stays whole), and
    then any frame where Blender's smooth curves still stray further is keyed too."""
    keep = reduce_keys(values, tolerance) if tolerance > 0 else np.arange(len(frames))
    curves = [compat.new_fcurve(channels, data_path, i, group) for i in range(values.shape[1])]
    for _ in range(8):
        for i, fc in enumerate(curves):
            fc.keyframe_points.clear()
            fc.keyframe_points.add(len(keep))
            fc.keyframe_points.foreach_set("co", np.stack([frames[keep], values[keep, i]], 1).astype(np.float32).ravel())
            fc.update()
        if len(keep) == len(frames):
            return
        played = np.array([[fc.evaluate(f) for fc in curves] for f in frames])
        stray = np.nonzero(np.abs(played - values).max(1) > tolerance)[0]
        if stray.size == 0:
            return
        keep = np.union1d(keep, stray)


def reduce_keys(values: np.ndarray, tolerance: float) -> np.ndarray:
    """Indices of the frames to key so that the curves through them stay within ``tolerance`` of
    every value (frames x n): Ramer-Douglas-Peucker on the straight line between kept keys, the
    worst frame added first. Blender's smooth (auto-clamped Bezier) curves through the same keys
    stay as close: measured in tests/test_blender_addon.py."""
    F = len(values)
    keep = {0, F - 1}
    stack = [(0, F - 1)]
    while stack:
        a, b = stack.pop()
        if b - a < 2:
            continue
        t = (np.arange(a + 1, b) - a) / (b - a)
        line = values[a] + t[:, None] * (values[b] - values[a])
        err = np.abs(values[a + 1:b] - line).max(1)
        k = int(np.argmax(err))
        if err[k] > tolerance:
            m = a + 1 + k
            keep.add(m)
            stack += [(a, m), (m, b)]
    return np.array(sorted(keep))


def pose_channels(obj, track) -> dict[str, np.ndarray]:
    """The pose-bone values that play ``track`` on armature object ``obj``.

    Returns {bone: frames x 4 quaternions (w, x, y, z)} and "__root__": frames x 3, the root
    bone's location channel.
    """
    import torch      # here, not at the top: the add-on registers before torch is installed

    from retarget.rotations import quaternion_from_matrix

    bpy.context.view_layer.update()
    world = np.array(obj.matrix_world)
    L = world[:3, :3]
    C = np.array(obj.matrix_world.to_quaternion().to_matrix())
    arm = track.armature
    out = {}
    for k, name in enumerate(arm.bones):
        bone = obj.data.bones.get(name)
        if bone is None:
            raise ValueError(f"armature {obj.name} has no bone {name}")
        Mw = C @ np.array(bone.matrix_local.to_3x3())
        Mw /= np.linalg.norm(Mw, axis=0, keepdims=True)
        basis = np.einsum("ji,fjk,kl->fil", Mw, track.rotations[:, k], Mw)
        out[name] = continuous_quaternions(quaternion_from_matrix(torch.from_numpy(basis)).numpy())
    root = obj.data.bones[arm.bones[0]]
    head_arm = np.linalg.solve(L, (track.root / arm.scale).T).T     # armature space
    M = np.array(root.matrix_local.to_3x3())
    M /= np.linalg.norm(M, axis=0, keepdims=True)
    out["__root__"] = (head_arm - np.array(root.head_local)) @ M
    return out


def apply_track(obj, track, action_name: str, frame_start: int = 1, key_tolerance: float = 0.0):
    """Key ``track`` on armature object ``obj`` as a new action (made active); returns the action.

    Each bone is keyed in its own rotation mode (quaternion, any Euler order, axis-angle), so a
    user's rig keeps the channels its animators work with. ``key_tolerance`` > 0 keeps only the
    keys that matter: every rotation stays within that many degrees, and the root within that
    many centimetres, of the motion (``reduce_keys``); 0 keys every frame."""
    values = pose_channels(obj, track)
    root_name = track.armature.bones[0]
    F = len(track.root)
    frames = np.arange(frame_start, frame_start + F, dtype=np.float64)
    action = bpy.data.actions.new(action_name)
    channels = compat.assign_action(obj, action)
    for name, q in values.items():
        if name == "__root__":
            continue
        path, v, tol = rotation_channels(obj.pose.bones[name], q, key_tolerance)
        write_keys(channels, f'pose.bones["{name}"].{path}', frames, v, name, tol)
    write_keys(channels, f'pose.bones["{root_name}"].location', frames, values["__root__"], root_name,
           key_tolerance / 100.0 / track.armature.scale if key_tolerance else 0.0)
    compat.bind_slot(obj, action)
    action.use_fake_user = False
    return action


def rotation_channels(pose_bone, q: np.ndarray, key_tolerance: float = 0.0):
    """(data path, frames x n values, tolerance per value) of quaternions q (frames x 4, w x y z)
    in the pose bone's own rotation mode. A quaternion component or an axis-angle changes by at
    most about the angle itself, so the tolerance in degrees becomes radians for every channel
    (half of it for a quaternion component, which moves by sin(angle / 2))."""

    tol = np.radians(key_tolerance)
    mode = pose_bone.rotation_mode
    if mode == "QUATERNION":
        return "rotation_quaternion", q, tol / 2
    if mode == "AXIS_ANGLE":
        out = []
        for row in q:
            axis, angle = Quaternion(row).to_axis_angle()
            out.append((angle, *axis))
        return "rotation_axis_angle", np.array(out), tol
    out, prev = [], Euler((0.0, 0.0, 0.0), mode)
    for row in q:                          # each Euler the one closest to the frame before: no flips
        prev = Quaternion(row).to_euler(mode, prev)
        out.append(tuple(prev))
    return "rotation_euler", np.array(out), tol


def ease_into(action, before, obj, frame: float, frames: int = 10) -> None:
    """Make ``action`` (a continuation of ``before``) leave ``frame`` in ``before``'s pose: each channel
    that both actions key is shifted by their difference at ``frame``, the shift fading out over the next
    ``frames`` frames. The joints already meet there; the rotations a fit leaves open (a straight leg's
    twist, so the foot's heading) need not, and would turn in one frame. A bone's quaternion is first
    given the sign of ``before``'s (the same rotation), so the shift is the small one."""
    old = {(fc.data_path, fc.array_index): fc for fc in compat.action_fcurves(before, obj)}
    curves = [(fc, old[fc.data_path, fc.array_index]) for fc in compat.action_fcurves(action, obj)
              if (fc.data_path, fc.array_index) in old]
    quats: dict[str, list] = {}
    for fc, fb in curves:
        if fc.data_path.endswith("rotation_quaternion"):
            quats.setdefault(fc.data_path, []).append((fc, fb))
    flip = {path for path, pair in quats.items()
            if sum(fc.evaluate(frame) * fb.evaluate(frame) for fc, fb in pair) < 0}
    for fc, fb in curves:
        sign = -1.0 if fc.data_path in flip else 1.0
        shift = fb.evaluate(frame) - sign * fc.evaluate(frame)
        if fc.data_path.endswith("rotation_euler"):       # the same angle a turn apart: the short way
            shift = (shift + math.pi) % (2 * math.pi) - math.pi
        for k in fc.keyframe_points:
            fade = 1.0 - (k.co[0] - frame) / (frames + 1) if k.co[0] > frame else 1.0
            d = shift * min(max(fade, 0.0), 1.0)
            k.co[1] = sign * k.co[1] + d
            k.handle_left[1] = sign * k.handle_left[1] + d
            k.handle_right[1] = sign * k.handle_right[1] + d
        fc.update()


def drop_keys_until(action, obj, frame: float) -> None:
    """Remove the keys of ``action`` at or before ``frame`` (a continuation's first frames repeat
    the end of the action it continues)."""
    for fc in compat.action_fcurves(action, obj):
        points = fc.keyframe_points
        for i in reversed(range(len(points))):
            if points[i].co[0] <= frame + 1e-4:
                points.remove(points[i], fast=True)
        fc.update()


def make_cyclic(action, obj=None, travel: bool = False) -> None:
    """A Cycles modifier on every F-curve of ``action``: a loop plays forever without a pop (its last
    key is its first pose, one period after the first key). ``travel``: a loop that travels on (its
    last key is its first pose moved on by the travel of one period); its location curves repeat
    with that offset (Repeat with Offset), so the walk goes on instead of jumping back."""
    for fc in compat.action_fcurves(action, obj):
        cycles = next((m for m in fc.modifiers if m.type == "CYCLES"), None) or fc.modifiers.new("CYCLES")
        if travel and fc.data_path.endswith("location"):
            cycles.mode_before = cycles.mode_after = "REPEAT_OFFSET"


def prop_positions(obj, track, name: str) -> np.ndarray:
    """A prop's path (frames x 3) in the local space of armature object ``obj`` (see ``pose_channels``)."""
    L = np.array(obj.matrix_world)[:3, :3]
    return np.linalg.solve(L, (track.props[name] / track.armature.scale).T).T


def build_ball(obj, track, name: str, frame_start: int = 1):
    """The ball of a track as a sphere parented to armature object ``obj``, keyed on its location.
    Returns (ball object, its action)."""

    verts, faces = ball()
    me = bpy.data.meshes.new(name)
    me.from_pydata(verts.tolist(), [], [list(dict.fromkeys(f)) for f in faces.tolist()])
    me.update()
    ball_obj = _link(bpy.data.objects.new(name, me), obj.users_collection[0])
    ball_obj.parent = obj
    path = prop_positions(obj, track, "ball")
    frames = np.arange(frame_start, frame_start + len(path), dtype=np.float64)
    action = bpy.data.actions.new(name)
    write_keys(compat.assign_action(ball_obj, action), "location", frames, path, "Object Transforms")
    compat.bind_slot(ball_obj, action)
    return ball_obj, action


def read_skeleton(obj) -> dict:
    """A Blender armature's rest pose as plain data for ``retarget.armatures.armature_from_skeleton``:
    bone names, parents, heads and tails in metres, Z up, world-aligned (the object's rotation
    and scale applied, not its location)."""
    bones = list(obj.data.bones)
    index = {b.name: i for i, b in enumerate(bones)}
    L = np.array(obj.matrix_world)[:3, :3]
    heads = np.array([b.head_local for b in bones]) @ L.T
    tails = np.array([b.tail_local for b in bones]) @ L.T
    return {"name": obj.name, "bones": [b.name for b in bones],
            "parents": [index[b.parent.name] if b.parent else -1 for b in bones],
            "heads": heads, "tails": tails}


def remember_markers(obj, armature, prefix: str = "") -> None:
    """Store where ``armature``'s keypoints sit on the bones of ``obj`` (custom properties), so that
    ``armature_keypoints`` can read its poses back as the model's keypoints later. ``prefix``: what
    obj's bone names have before ``armature``'s ("ORG-" on a Rigify control rig)."""
    obj["mas_markers"] = json.dumps({kp: [prefix + bone, *map(float, pos)] for kp, (bone, pos) in armature.markers.items()})
    obj["mas_scale"] = float(armature.scale)
    obj["mas_layout"] = armature.layout


def armature_keypoints(obj, joint_names) -> np.ndarray:
    """The keypoints of armature object ``obj`` at the current frame, in the motion frame its actions
    were made in (metres, Z up, the object's origin at 0): len(joint_names) x 3, NaN for keypoints
    it has no marker for. Needs ``remember_markers`` (any armature the add-on has animated)."""

    markers = json.loads(obj["mas_markers"])
    scale = float(obj["mas_scale"])
    bpy.context.view_layer.update()
    L = np.array(obj.matrix_world.to_3x3())
    out = np.full((len(joint_names), 3), np.nan)
    for j, name in enumerate(joint_names):
        if name not in markers:
            continue
        bone, *rest = markers[name]
        pb = obj.pose.bones[bone]
        local = Vector(np.linalg.solve(L, np.asarray(rest) / scale).tolist())
        posed = Matrix(pb.matrix) @ pb.bone.matrix_local.inverted() @ local
        out[j] = L @ np.array(posed) * scale
    return out


def keyed_frames(obj) -> list[int]:
    """The frames at which the active action of ``obj`` has keys (sorted)."""
    ad = obj.animation_data
    if ad is None or ad.action is None:
        return []
    frames = set()
    for fc in compat.action_fcurves(ad.action, obj):
        co = np.zeros(2 * len(fc.keyframe_points), np.float32)
        fc.keyframe_points.foreach_get("co", co)
        frames.update(int(round(f)) for f in co[0::2])
    return sorted(frames)


def curve_points(obj, samples: int = 64) -> np.ndarray:
    """A curve object's path as world points on the floor (samples x 2, metres), evenly along its
    evaluated points."""
    deps = bpy.context.evaluated_depsgraph_get()
    mesh = obj.evaluated_get(deps).to_mesh()
    try:
        pts = np.array([obj.matrix_world @ v.co for v in mesh.vertices])[:, :2]
    finally:
        obj.evaluated_get(deps).to_mesh_clear()
    if len(pts) < 2:
        raise ValueError(f"curve {obj.name} has fewer than two points")
    return pts


def remove(ids) -> None:
    """Remove objects (with their armature or mesh data) and actions; tolerant of ones already gone."""
    for idb in ids:
        try:
            if isinstance(idb, bpy.types.Object):
                data = idb.data
                bpy.data.objects.remove(idb)
                if data is not None and data.users == 0:
                    (bpy.data.armatures if isinstance(data, bpy.types.Armature) else bpy.data.meshes).remove(data)
            elif isinstance(idb, bpy.types.Action):
                bpy.data.actions.remove(idb)
        except ReferenceError:
            pass


@contextmanager
def selected(objects):
    """Select exactly ``objects`` (active: the first) for exporters that read the selection; restore after."""
    view_layer = bpy.context.view_layer
    before = [o for o in view_layer.objects if o.select_get()]
    active = view_layer.objects.active
    for o in before:
        o.select_set(False)
    for o in objects:
        o.select_set(True)
    view_layer.objects.active = objects[0]
    try:
        with bpy.context.temp_override(selected_objects=list(objects), active_object=objects[0], object=objects[0]):
            yield
    finally:
        for o in objects:
            try:
                o.select_set(False)
            except ReferenceError:
                pass
        for o in before:
            o.select_set(True)
        view_layer.objects.active = active
