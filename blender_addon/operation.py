"""The scene half of a generation. An ``Operation`` says what to compute (``requests()``), builds
or writes each finished motion (``consume(result)``), closes (``finish()``), and on a failure or
a cancel removes everything it made (``abort()``), so the scene is left as it was.
"""
from __future__ import annotations

import math

import bpy

from mas_engine.errors import MasError

from . import compat, rigify, scene
from .jobs import Job, Request
from .scene_requests import model_name


def animate(obj, track, name: str, frame_start: int, key_tolerance: float = 0.0, rigify_limbs: str = "FK"):
    """Key ``track`` on armature ``obj`` as a new action (made active): on its bones, or on its
    controls if it is a generated Rigify rig (limbs switched to ``rigify_limbs``, "FK" or "IK")."""
    if rigify.is_control_rig(obj):
        action = rigify.apply_to_controls(obj, track, name, frame_start, key_tolerance, rigify_limbs)
        scene.remember_markers(obj, track.armature, rigify.ORG)
    else:
        action = scene.apply_track(obj, track, name, frame_start, key_tolerance)
        scene.remember_markers(obj, track.armature)
    return action


def realize(result, target=None, location=(0.0, 0.0, 0.0), frame_start=None, collection=None,
            key_tolerance: float = 0.0, rigify_limbs: str = "FK") -> dict:
    """Put one finished motion in the scene: a new built-in character at ``location`` (armature and
    body), or a new action on ``target`` (keys reduced to ``key_tolerance``, see
    ``scene.apply_track``). Returns {"objects", "action", "created"}; on an error
    nothing it made is left."""
    req, track = result.request, result.track
    sc = bpy.context.scene
    cont = (req.extra.get("constraints") or {}).get("continue")
    frame_start = cont["start"] if cont is not None else sc.frame_start if frame_start is None else frame_start
    name = f"{model_name(req.model)}_seed{req.seed}"
    created, previous = [], None
    try:
        if target is not None:
            previous = target.animation_data.action if target.animation_data else None
            obj, objects = target, [target]
        else:
            obj = scene.build_armature(track.armature, name, location, collection)
            created.append(obj)
            body = scene.build_body(track.armature, obj, name + "_body")
            created.append(body)
            objects = [obj, body]
            obj["mas_model"], obj["mas_seed"] = model_name(req.model), req.seed
        action = animate(obj, track, name, frame_start, key_tolerance, rigify_limbs)
        created.append(action)
        if cont is not None:                      # its first frames are the end of the action it continues
            if previous is not None:
                scene.ease_into(action, previous, obj, cont["frame"])
            scene.drop_keys_until(action, obj, cont["frame"])
        if req.loop:
            scene.make_cyclic(action, obj, travel=req.loop_travel and not req.in_place)
        if "ball" in track.props:
            ball, ball_action = scene.build_ball(obj, track, name + "_ball", frame_start)
            created += [ball, ball_action]
            objects = objects + [ball]
    except Exception:
        scene.remove(created)
        if target is not None and target.animation_data is not None:
            target.animation_data.action = previous
        raise
    end = frame_start + len(track.root) - 1 - (1 if req.loop else 0)      # a loop's last key is its first pose
    if sc.frame_end < end:
        sc.frame_end = int(math.ceil(end))
    return {"objects": objects, "action": action, "created": created, "report": result.report, "track": track}


class Operation:
    """The scene half of a generation: see the module's docstring."""

    def __init__(self):
        self.created: list = []
        self.errors: list[str] = []

    def requests(self) -> list[Request]:
        raise NotImplementedError

    def consume(self, result) -> None:
        raise NotImplementedError

    def finish(self):
        return None

    def abort(self) -> None:
        scene.remove(reversed(self.created))
        self.created = []


class KeepAction:
    """The action a target armature plays before we give it ours: given a fake user while ours is
    active (else it would have no user and be gone after save and reload), and put back on ``undo``."""

    def __init__(self, target):
        ad = target.animation_data if target is not None else None
        self.target, self.action = target, ad.action if ad is not None else None
        self.faked = self.action is not None and not self.action.use_fake_user
        if self.faked:
            self.action.use_fake_user = True

    @property
    def name(self) -> str:
        return self.action.name if self.action is not None else ""

    def restore_active(self) -> None:
        """Make the user's action the target's active one again."""
        if self.target is not None and self.target.animation_data is not None:
            self.target.animation_data.action = self.action

    def undo(self) -> None:
        self.restore_active()
        if self.faked:
            self.action.use_fake_user = False


class Motions(Operation):
    """One motion per seed, as characters at ``location`` (side by side) or as NLA strips on one
    character, or as actions on ``target``. All or nothing: any failure removes every motion."""

    def __init__(self, reqs, target=None, location=(0.0, 0.0, 0.0), arrange="SIDE_BY_SIDE", spacing=1.5, group="",
                 key_tolerance: float = 0.0, rigify_limbs: str = "FK"):
        super().__init__()
        self.key_tolerance, self.rigify_limbs = key_tolerance, rigify_limbs
        self.reqs, self.target, self.location = reqs, target, tuple(location)
        self.arrange, self.spacing, self.group = arrange, spacing, group
        self.made: list[dict] = []
        self.kept: KeepAction | None = None

    def requests(self):
        return self.reqs

    def consume(self, result):
        if not result.ok:
            self.errors.append(f"seed {result.request.seed}: {result.error}")
            return
        i = len(self.made)
        if self.kept is None:
            self.kept = KeepAction(self.target)
        if self.arrange == "NLA" and self.made:
            holder = self.target or self.made[0]["objects"][0]
            action = animate(holder, result.track, f"{model_name(result.request.model)}_seed{result.request.seed}",
                             bpy.context.scene.frame_start, self.key_tolerance, self.rigify_limbs)
            self.created.append(action)
            made = {"objects": [holder], "action": action, "report": result.report, "track": result.track}
        else:
            x, y, z = self.location
            made = realize(result, self.target, (x + i * self.spacing, y, z), key_tolerance=self.key_tolerance,
                           rigify_limbs=self.rigify_limbs)
            self.created += made["created"]
        if self.group:
            for o in made["objects"]:
                if self.target is None:
                    o["mas_group"] = self.group
                    o["mas_variant"] = i
        made["kept_action"] = self.kept.name
        self.made.append(made)

    def finish(self):
        if self.errors:
            self.abort()
            raise MasError("; ".join(self.errors))
        if self.made and self.kept is not None and self.kept.action is not None \
                and (self.reqs[0].extra.get("constraints") or {}).get("continue"):
            if self.kept.faked:                   # a strip plays it from now on: it has a user
                self.kept.action.use_fake_user = False
            continue_on_nla(self.target, self.kept.action, self.made[0]["action"])
        if self.arrange == "NLA" and len(self.made) > 1:
            holder = self.made[0]["objects"][0]
            for i, m in enumerate(self.made):
                compat.push_to_nla(holder, m["action"], m["action"].name, bpy.context.scene.frame_start, mute=i > 0)
                m["action"].use_fake_user = True
            holder.animation_data.action = None
        return self.made

    def abort(self):
        super().abort()
        if self.kept is not None:
            self.kept.undo()


def continue_on_nla(obj, before, after) -> None:
    """Play ``before`` and then ``after`` (the motion continuing it): two strips of one NLA track
    of ``obj``, each at the frames it was keyed on; no active action."""
    track = compat.push_to_nla(obj, before, f"{before.name} + {after.name}", int(round(before.frame_range[0])), False)
    compat.push_to_nla(obj, after, after.name, int(round(after.frame_range[0])), False, track)
    obj.animation_data.action = None


def run(op: Operation, job: Job | None = None):
    """Compute ``op``'s requests inline and build the results: the synchronous path."""
    job = job or Job(op.requests())
    job.run()
    if job.failure:
        raise RuntimeError(job.failure)
    try:
        for r in job.results:
            op.consume(r)
    except Exception:
        op.abort()
        raise
    return op.finish()
