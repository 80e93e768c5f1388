"""The add-on's Python API: what its operators run, callable from scripts and ``blender --background``.

    from blender_addon import api           # inside Blender: from bl_ext.user_default.mas_motion import api
    made = api.generate_motion(model="human", seed=3, seconds=4)
    made["objects"], made["action"], made["report"]

Every call computes with the engine (``engine.Job``), then builds scene data on the calling
(main) thread. An ``Operation`` is the scene half: ``requests()`` says what to compute,
``consume(result)`` builds or writes one finished motion, ``finish()`` closes and
``abort()`` removes everything it made, so a failure or a cancel leaves the scene as it was.
"""
from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import bpy
import numpy as np

from . import engine, scene
from .engine import Request

try:
    from mas_engine.errors import MasError
except ImportError:                        # the engine is not importable yet: still a clear error type
    class MasError(Exception):
        pass


FORMATS = {"BLEND": ".blend", "BVH": ".bvh", "FBX": ".fbx", "GLB": ".glb"}
SETTINGS = {"model": str, "seed": int, "seconds": float, "views": int, "steps": int, "device": str,
            "in_place": lambda v: str(v).strip().lower() in ("1", "true", "yes", "on"), "name": str,
            "loop": lambda v: str(v).strip().lower() in ("1", "true", "yes", "on")}


def scene_fps(sc=None) -> float:
    sc = sc or bpy.context.scene
    return sc.render.fps / sc.render.fps_base


def model_name(model: str) -> str:
    return Path(model).stem if ("/" in model or os.sep in model) else model


def model_info(model: str, models_folder: str = "") -> dict:
    """The card facts of a shipped model name or a checkpoint path; MasError when there is none."""
    models = engine.list_models(models_folder)
    if model in models:
        return models[model]
    info = engine.read_model_card(Path(model).with_suffix(".json"))
    if info is None:
        raise MasError(f"model {model!r} not found: shipped models are {', '.join(k for k, v in models.items() if v['shipped']) or 'none'}; "
                       f"a checkpoint is NAME.safetensors + NAME.json (put yours in the models folder of the preferences)")
    return dict(info, shipped=False)


def resolve_bone_map(obj, rig: str, bone_map="auto", sc=None) -> dict[str, str]:
    """{built-in bone: bone of obj}: "auto" (the best preset), a preset name, "panel" (the scene's
    edited map), a JSON file from ``rigs.bonemaps.save_bone_map``, or a dict."""
    from rigs.bonemaps import PRESETS, detect_preset, load_bone_map, resolve_preset

    names = [b.name for b in obj.data.bones]
    if isinstance(bone_map, dict):
        return dict(bone_map)
    if bone_map == "auto":
        return detect_preset(rig, names)[1]
    if bone_map == "panel":
        return {p.builtin: p.bone for p in (sc or bpy.context.scene).mas.bone_map if p.bone}
    if bone_map in PRESETS.get(rig, {}):
        return resolve_preset(PRESETS[rig][bone_map], names)
    if str(bone_map).lower().endswith(".json"):
        try:
            map_rig, m = load_bone_map(bpy.path.abspath(bone_map))
        except ValueError as e:
            raise MasError(str(e)) from None
        if map_rig != rig:
            raise MasError(f"bone map {bone_map} is for the {map_rig} rig; this model drives the {rig} rig")
        return m
    raise MasError(f"unknown bone map {bone_map!r}: use auto, panel, a preset ({', '.join(PRESETS.get(rig, {}))}) or a .json file")


def check_target(obj):
    if obj is None or getattr(obj, "type", None) != "ARMATURE":
        raise MasError("the target must be an armature object: select your character's armature, "
                       "or generate a new built-in character")
    return obj


def requests_for(seeds, model="human", seconds=4.0, views=5, steps=0, device="auto", in_place=False,
                 target=None, bone_map="auto", fps=None, models_folder="", loop=False, constraints=None) -> list[Request]:
    """One request per seed; the rig is the model's built-in character or ``target`` (an armature object)."""
    info = model_info(model, models_folder)
    if not info["rig"]:
        raise MasError(f"model {model} uses keypoint layout {info['layout']}, which has no built-in character")
    rig: object = info["rig"]
    if target is not None:
        check_target(target)
        spec = scene.read_skeleton(target)
        spec["bone_map"] = resolve_bone_map(target, info["rig"], bone_map)
        rig = spec
    fps = fps or scene_fps()
    return [Request(model=info["path"] if not info["shipped"] else model, seed=int(s), seconds=float(seconds),
                    fps=float(fps), views=int(views), steps=int(steps), device=device, in_place=bool(in_place),
                    loop=bool(loop), rig=rig, extra={"constraints": constraints} if constraints else {})
            for s in seeds]


def realize(result, target=None, location=(0.0, 0.0, 0.0), frame_start=None, collection=None) -> dict:
    """Put one finished motion in the scene: a new built-in character at ``location`` (armature and
    body), or a new action on ``target``. Returns {"objects", "action", "created"}; on an error
    nothing it made is left."""
    req, track = result.request, result.track
    sc = bpy.context.scene
    frame_start = sc.frame_start if frame_start is None else frame_start
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
        action = scene.apply_track(obj, track, name, frame_start)
        created.append(action)
        scene.remember_markers(obj, track.armature)
        if req.loop:
            scene.make_cyclic(action, obj)
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
        sc.frame_end = end
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


class Motions(Operation):
    """One motion per seed, as characters at ``location`` (side by side) or as NLA strips on one
    character, or as actions on ``target``. All or nothing: any failure removes every motion."""

    def __init__(self, reqs, target=None, location=(0.0, 0.0, 0.0), arrange="SIDE_BY_SIDE", spacing=1.5, group=""):
        super().__init__()
        self.reqs, self.target, self.location = reqs, target, tuple(location)
        self.arrange, self.spacing, self.group = arrange, spacing, group
        self.made: list[dict] = []
        self.previous_action = target.animation_data.action if target is not None and target.animation_data else None

    def requests(self):
        return self.reqs

    def consume(self, result):
        if not result.ok:
            self.errors.append(f"seed {result.request.seed}: {result.error}")
            return
        i = len(self.made)
        if self.arrange == "NLA" and self.made:
            holder = self.target or self.made[0]["objects"][0]
            action = scene.apply_track(holder, result.track, f"{model_name(result.request.model)}_seed{result.request.seed}",
                                       bpy.context.scene.frame_start)
            self.created.append(action)
            made = {"objects": [holder], "action": action, "report": result.report, "track": result.track}
        else:
            x, y, z = self.location
            made = realize(result, self.target, (x + i * self.spacing, y, z))
            self.created += made["created"]
        if self.group:
            for o in made["objects"]:
                if self.target is None:
                    o["mas_group"] = self.group
                    o["mas_variant"] = i
        self.made.append(made)

    def finish(self):
        if self.errors:
            self.abort()
            raise MasError("; ".join(self.errors))
        if self.arrange == "NLA" and len(self.made) > 1:
            from . import compat

            holder = self.made[0]["objects"][0]
            for i, m in enumerate(self.made):
                compat.push_to_nla(holder, m["action"], m["action"].name, bpy.context.scene.frame_start, mute=i > 0)
                m["action"].use_fake_user = True
            holder.animation_data.action = None
        return self.made

    def abort(self):
        super().abort()
        if self.target is not None and self.target.animation_data is not None:
            self.target.animation_data.action = self.previous_action


def run(op: Operation, job: engine.Job | None = None):
    """Compute ``op``'s requests inline and build the results: the synchronous path."""
    job = job or engine.Job(op.requests())
    job.run()
    try:
        for r in job.results:
            op.consume(r)
    except Exception:
        op.abort()
        raise
    return op.finish()


def _ensure_engine():
    from .preferences import setup_paths

    setup_paths()
    ok, line = engine.engine_status()
    if not ok:
        raise MasError(line)


def scene_constraints(model, target=None, start_from_pose=False, use_keyframes=False, path=None, location=None,
                      seconds=4.0, models_folder="") -> dict | None:
    """Constraints read from the scene, as plain data for the engine (``engine.constraints_of``):
    the current pose of ``target`` as the start, the poses at its active action's keyframes
    (in-betweening, frames counted from the scene's start), and a curve object as the root's path.
    The pose and keys need an armature that the add-on has animated (it knows where the model's
    keypoints sit on its bones)."""
    if not (start_from_pose or use_keyframes or path is not None):
        return None
    info = model_info(model, models_folder)
    out: dict = {}
    if start_from_pose or use_keyframes:
        check_target(target)
        if "mas_markers" not in target or target.get("mas_layout") != info["layout"]:
            raise MasError(f"{target.name} has no {info['layout']} keypoints the add-on knows of: start from a pose or "
                           f"in-between keys on a character made or driven by Generate Motion with this model")
        from rigs.keypoints import get_layout

        names = get_layout(info["layout"]).joints
        sc = bpy.context.scene
        if start_from_pose:
            out["start_pose"] = scene.armature_keypoints(target, names)
        if use_keyframes:
            frames = [f for f in scene.keyed_frames(target) if 0 <= f - sc.frame_start < seconds * scene_fps()]
            if not frames:
                raise MasError(f"{target.name}'s active action has no keyframes within the {seconds:g} s to generate")
            now = sc.frame_current
            try:
                out["keys"] = {}
                for f in frames:
                    sc.frame_set(f)
                    out["keys"][f - sc.frame_start] = scene.armature_keypoints(target, names)
            finally:
                sc.frame_set(now)
    if path is not None:
        if getattr(path, "type", None) != "CURVE":
            raise MasError(f"the root path must be a curve object, not {getattr(path, 'name', path)!r}")
        origin = np.array(target.matrix_world.translation if target is not None else (location or (0.0, 0.0, 0.0)))[:2]
        try:
            out["path"] = scene.curve_points(path) - origin
        except ValueError as e:
            raise MasError(str(e)) from None
    return out


def generate_motion(model="human", seed=0, seconds=4.0, views=5, steps=0, device="auto", in_place=False,
                    target=None, bone_map="auto", location=None, models_folder="", loop=False,
                    start_from_pose=False, use_keyframes=False, path=None) -> dict:
    """Generate one motion into the current scene. target: an armature object to drive (None: a
    new built-in character at ``location``, default the 3D cursor). ``loop``: a seamless loop
    (Cycles modifiers). On ``target``: ``start_from_pose`` begins in its current pose,
    ``use_keyframes`` passes through the poses of its active action's keyframes; ``path``: a curve
    object the root follows. Returns {"objects", "action", "report"}."""
    _ensure_engine()
    loc = bpy.context.scene.cursor.location[:] if location is None else location
    wanted = scene_constraints(model, target, start_from_pose, use_keyframes, path, loc, seconds, models_folder)
    reqs = requests_for([seed], model, seconds, views, steps, device, in_place, target, bone_map, models_folder=models_folder,
                        loop=loop, constraints=wanted)
    return run(Motions(reqs, target, loc))[0]


def generate_variants(count=3, seed=0, arrange="SIDE_BY_SIDE", spacing=1.5, location=None, **settings) -> list[dict]:
    """``count`` motions with seeds seed, seed+1, ...: side by side (offset along X by ``spacing``) or
    as NLA tracks of one character (arrange="NLA"). Keep one with ``keep_variant``."""
    _ensure_engine()
    target, bone_map = settings.pop("target", None), settings.pop("bone_map", "auto")
    reqs = requests_for(range(seed, seed + count), target=target, bone_map=bone_map, **settings)
    loc = bpy.context.scene.cursor.location[:] if location is None else location
    group = f"{model_name(reqs[0].model)}_seeds{seed}-{seed + count - 1}"
    return run(Motions(reqs, target, loc, "NLA" if target is not None else arrange, spacing, group))


def keep_variant(obj, nla_index: int | None = None) -> list[str]:
    """Keep one variant and delete the others. Side by side: ``obj`` is the kept character (or its
    body). NLA: ``nla_index`` is the track to keep. Returns the names of what was removed."""
    if obj.type == "MESH" and obj.parent is not None:
        obj = obj.parent
    removed = []
    if nla_index is not None:
        ad = obj.animation_data
        if ad is None or not 0 <= nla_index < len(ad.nla_tracks):
            raise MasError(f"{obj.name} has no NLA track {nla_index}")
        keep = ad.nla_tracks[nla_index].strips[0].action
        for t in list(ad.nla_tracks):
            for s in t.strips:
                if s.action is not keep:
                    removed.append(s.action.name)
                    bpy.data.actions.remove(s.action)
            ad.nla_tracks.remove(t)
        ad.action = keep
        return removed
    group = obj.get("mas_group")
    if not group:
        raise MasError(f"{obj.name} is not one of a set of variants")
    doomed = [o for o in bpy.data.objects if o.get("mas_group") == group and o is not obj and o.parent is not obj]
    actions = {o.animation_data.action for o in doomed if o.animation_data and o.animation_data.action}
    removed = [o.name for o in doomed]
    scene.remove(doomed + list(actions))
    for o in [obj, *obj.children]:
        for k in ("mas_group", "mas_variant"):
            if k in o:
                del o[k]
    return removed


# ---------------------------------------------------------------- batch

def read_settings_file(path) -> list[dict]:
    """Rows of settings from a CSV (header: model, seed, seconds, views, steps, device, in_place, name)
    or a JSON list of objects with those keys. Values are checked per row in ``Batch``."""
    path = Path(bpy.path.abspath(str(path)))
    try:
        text = path.read_text()
    except OSError as e:
        raise MasError(f"cannot read settings file {path}: {e.strerror}") from None
    if path.suffix.lower() == ".json":
        try:
            rows = json.loads(text)
        except ValueError as e:
            raise MasError(f"{path} is not valid JSON: {e}") from None
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise MasError(f"{path}: expected a JSON list of objects, one per motion")
        return rows
    if path.suffix.lower() == ".csv":
        return [{k.strip(): v for k, v in row.items() if k and v not in (None, "")} for row in csv.DictReader(text.splitlines())]
    raise MasError(f"settings file {path}: use a .csv or .json file")


def _output_folder(folder) -> Path:
    if str(folder).startswith("//") and not bpy.data.filepath:
        raise MasError(f"the folder {folder} is relative to the .blend file, which is not saved yet: "
                       f"save the file or choose an absolute folder")
    return Path(bpy.path.abspath(str(folder)))


class Batch(Operation):
    """Rows of settings -> files in a folder (and/or actions kept in this file). One row's failure
    is reported and the batch goes on; existing files are skipped unless ``overwrite``."""

    def __init__(self, rows, folder, formats=("BVH",), overwrite=False, defaults=None, target=None):
        super().__init__()
        self.folder = _output_folder(folder)
        self.formats = {f.upper() for f in formats}
        unknown = self.formats - set(FORMATS) - {"ACTION"}
        if unknown or not self.formats:
            raise MasError(f"batch formats: {', '.join(sorted(unknown)) or 'none given'}; use ACTION, BLEND, BVH, FBX, GLB")
        self.overwrite, self.target = overwrite, target
        self.defaults = dict(defaults or {})
        self.summary = {"folder": str(self.folder), "written": [], "skipped": [], "failed": [], "actions": []}
        self.reqs, self.paths = [], {}
        self.folder.mkdir(parents=True, exist_ok=True)
        for i, row in enumerate(rows):
            label = str(row.get("name") or f"row {i + 1}")
            try:
                s = self._settings(row)
                stem = s.pop("name", None) or f"{model_name(s['model'])}_seed{s['seed']:05d}"
                paths = {f: self.folder / (stem + FORMATS[f]) for f in self.formats if f in FORMATS}
                todo = {f: p for f, p in paths.items() if overwrite or not p.exists()}
                for f in set(paths) - set(todo):
                    self.summary["skipped"].append({"file": str(paths[f]), "reason": "exists (overwrite is off)"})
                if paths and not todo and "ACTION" not in self.formats:
                    continue
                req = requests_for([s["seed"]], s["model"], s["seconds"], s["views"], s["steps"], s["device"],
                                   s["in_place"], target, loop=s["loop"])[0]
                req.label = stem
                self.reqs.append(req)
                self.paths[id(req)] = todo
            except (MasError, ValueError, TypeError, KeyError) as e:
                self.summary["failed"].append({"row": label, "reason": str(e)})

    def _settings(self, row: dict) -> dict:
        unknown = set(row) - set(SETTINGS)
        if unknown:
            raise MasError(f"unknown setting(s) {', '.join(sorted(unknown))}; known: {', '.join(SETTINGS)}")
        s = {"model": "human", "seed": 0, "seconds": 4.0, "views": 5, "steps": 0, "device": "auto", "in_place": False,
             "loop": False}
        s.update(self.defaults)
        for k, v in row.items():
            try:
                s[k] = SETTINGS[k](v)
            except (TypeError, ValueError):
                raise MasError(f"setting {k}={v!r} is not a valid {SETTINGS[k].__name__}") from None
        return s

    def requests(self):
        return self.reqs

    def consume(self, result):
        req = result.request
        if not result.ok:
            self.summary["failed"].append({"row": req.label, "reason": result.error})
            return
        made = None
        try:
            made = realize(result, self.target)
            objects = made["objects"]
            for fmt, path in self.paths[id(req)].items():
                _export(fmt, path, objects, made["action"], result.track)
                self.summary["written"].append(str(path))
            if "ACTION" in self.formats:
                made["action"].use_fake_user = True
                self.summary["actions"].append(made["action"].name)
        except Exception as e:         # noqa: BLE001 - reported per row; the batch goes on
            self.summary["failed"].append({"row": req.label, "reason": f"{type(e).__name__}: {e}"})
            if made and "ACTION" in self.formats:
                made["action"].use_fake_user = False
        finally:
            if made is not None:
                keep = [made["action"]] if "ACTION" in self.formats and made["action"].use_fake_user else []
                scene.remove([c for c in made["created"] if c not in keep])
                if self.target is not None and self.target.animation_data is not None:
                    self.target.animation_data.action = None

    def finish(self):
        from mas_engine.atomic import atomic_write

        atomic_write(self.folder / "batch_report.json", lambda tmp: tmp.write_text(json.dumps(self.summary, indent=2)))
        return self.summary

    def abort(self):
        for name in self.summary["actions"]:
            a = bpy.data.actions.get(name)
            if a is not None:
                bpy.data.actions.remove(a)


def _export(fmt: str, path: Path, objects, action, track) -> None:
    """Write one format atomically (``mas_engine.atomic``: a unique temporary in the same folder, then renamed)."""
    from mas_engine.atomic import atomic_write

    def write(tmp: Path):
        if fmt == "BVH":
            from retarget.api import write_track

            write_track(tmp, track)
        elif fmt == "BLEND":
            bpy.data.libraries.write(str(tmp), set(objects) | {action}, fake_user=True)
        else:
            sc = bpy.context.scene
            end = sc.frame_start + len(track.root) - 1
            with scene.selected(objects):
                old = (sc.frame_start, sc.frame_end)
                sc.frame_end = end
                try:
                    if fmt == "FBX":
                        bpy.ops.export_scene.fbx(filepath=str(tmp), use_selection=True, bake_anim=True,
                                                 add_leaf_bones=False, bake_anim_use_nla_strips=False,
                                                 bake_anim_use_all_actions=False)
                    else:
                        bpy.ops.export_scene.gltf(filepath=str(tmp), export_format="GLB", use_selection=True,
                                                  export_animations=True, export_animation_mode="ACTIVE_ACTIONS")
                finally:
                    sc.frame_start, sc.frame_end = old
        if not tmp.exists() or tmp.stat().st_size == 0:
            raise MasError(f"the {fmt} exporter wrote nothing to {tmp.name}")

    atomic_write(path, write)


def generate_batch(folder, count=10, seed=0, settings_file="", rows=None, formats=("BVH",), overwrite=False,
                   target=None, **defaults) -> dict:
    """Write motions into ``folder``: ``count`` seeds from ``seed``, or one per row of ``rows`` /
    ``settings_file`` (CSV or JSON). Returns the summary (written, skipped, failed with reasons,
    actions) that is also saved as ``batch_report.json``."""
    _ensure_engine()
    if rows is None:
        rows = read_settings_file(settings_file) if settings_file else [{"seed": seed + i} for i in range(count)]
    return run(Batch(rows, folder, formats, overwrite, defaults, target))
