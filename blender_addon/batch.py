"""Batch generation: rows of settings (a CSV or JSON file, or seeds) -> files in a folder and/or
actions kept in this file, with a report. One row's failure is reported and the batch goes on."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import bpy

from mas_engine import validate
from mas_engine.atomic import atomic_write
from mas_engine.errors import MasError

from . import scene
from .exporters import FORMATS, export
from .operation import KeepAction, Operation, realize
from .scene_requests import model_name, requests_for

_TRUE = ("1", "true", "yes", "on")
SETTINGS = {"model": str, "seed": int, "seconds": float, "views": int, "steps": int, "device": str,
            "in_place": lambda v: str(v).strip().lower() in _TRUE, "name": str,
            "loop": lambda v: str(v).strip().lower() in _TRUE,
            "loop_travel": lambda v: str(v).strip().lower() in _TRUE, "foot_lock": lambda v: str(v).strip().lower() in _TRUE,
            "pace": str, "path": str, "start_from": str, "end_at": str, "keys": str}
# the columns that are constraints (as in 'mas generate'): motion files, and the root's path 'x,y x,y ...' in metres
INPUTS = ("start_from", "end_at", "keys", "path")


def batch_rows(count: int = 10, seed: int = 0, settings_file="") -> list[dict]:
    """The rows of a batch: one per row of ``settings_file``, else ``count`` seeds from ``seed``."""
    return read_settings_file(settings_file) if settings_file else [{"seed": seed + i} for i in range(count)]


def read_settings_file(path) -> list[dict]:
    """Rows of settings from a CSV (header: model, seed, seconds, views, steps, device, in_place, loop,
    loop_travel, foot_lock, pace, name, and the constraints start_from, end_at, keys (motion files) and path ('x,y x,y'))
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
        self.kept = None            # the target's own action, kept and put back (KeepAction)
        self.defaults = dict(defaults or {})
        self.key_tolerance = validate.number("key tolerance (degrees)", self.defaults.pop("key_tolerance", 0.0), 0.0, 45.0)
        self.rigify_limbs = self.defaults.pop("rigify_limbs", "FK")
        self.summary = {"folder": str(self.folder), "written": [], "skipped": [], "failed": [], "actions": []}
        self.reqs, self.paths = [], {}
        validate.output_folder(self.folder, option="folder")     # before any work: a folder we cannot write fails now
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
                                   s["in_place"], target, loop=s["loop"], foot_lock=s["foot_lock"],
                                   loop_travel=s["loop_travel"], pace=s["pace"])[0]
                req.label = stem
                inputs = {k: s[k] if k == "path" else bpy.path.abspath(s[k]) for k in INPUTS if s.get(k)}
                if inputs:
                    req.extra["inputs"] = inputs
                self.reqs.append(req)
                self.paths[id(req)] = todo
            except (MasError, ValueError, TypeError, KeyError) as e:
                self.summary["failed"].append({"row": label, "reason": str(e)})

    def _settings(self, row: dict) -> dict:
        unknown = set(row) - set(SETTINGS)
        if unknown:
            raise MasError(f"unknown setting(s) {', '.join(sorted(unknown))}; known: {', '.join(SETTINGS)}")
        s = {"model": "human", "seed": 0, "seconds": 4.0, "views": 5, "steps": 0, "device": "auto", "in_place": False,
             "loop": False, "loop_travel": False, "foot_lock": True, "pace": "data"}
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
        if self.kept is None:
            self.kept = KeepAction(self.target)
        try:
            made = realize(result, self.target, key_tolerance=self.key_tolerance, rigify_limbs=self.rigify_limbs)
            objects = made["objects"]
            for fmt, path in self.paths[id(req)].items():
                export(fmt, path, objects, made["action"], result.track)
                self.summary["written"].append(str(path))
            if "ACTION" in self.formats:
                made["action"].use_fake_user = True
                self.summary["actions"].append(made["action"].name)
        except (MasError, RuntimeError, OSError) as e:      # an exporter's failure: reported per row, the batch goes on
            self.summary["failed"].append({"row": req.label, "reason": f"{type(e).__name__}: {e}"})
            if made and "ACTION" in self.formats:
                made["action"].use_fake_user = False
        finally:
            if made is not None:
                keep = [made["action"]] if "ACTION" in self.formats and made["action"].use_fake_user else []
                scene.remove([c for c in made["created"] if c not in keep])
                self.kept.restore_active()

    def finish(self):
        if self.kept is not None:
            self.kept.undo()        # the target plays its own action again, as before the batch
        atomic_write(self.folder / "batch_report.json", lambda tmp: tmp.write_text(json.dumps(self.summary, indent=2)))
        return self.summary

    def abort(self):
        if self.kept is not None:
            self.kept.undo()
        for name in self.summary["actions"]:
            a = bpy.data.actions.get(name)
            if a is not None:
                bpy.data.actions.remove(a)
