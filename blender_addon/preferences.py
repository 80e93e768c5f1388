"""Add-on preferences: where models and the engine's dependencies come from."""

import os
import subprocess
import threading

import bpy
from bpy.props import BoolProperty, StringProperty

from . import dependencies, model_list

ADDON_ID = __package__


def preferences(context=None):
    context = context or bpy.context
    addon = context.preferences.addons.get(ADDON_ID)
    return addon.preferences if addon else _Defaults()


class _Defaults:
    """The preference values when the add-on is used without being enabled (scripts importing it)."""
    models_folder = ""
    engine_path = ""


def deps_folder() -> str:
    """The folder the add-on owns for its Python dependencies."""
    try:
        return bpy.utils.extension_path_user(ADDON_ID, path="deps", create=True)
    except (ValueError, AttributeError):       # not installed as an extension (a development checkout)
        return os.path.join(bpy.utils.user_resource("SCRIPTS", path="mas_motion_deps", create=True))


def setup_paths(context=None) -> None:
    """sys.path for the engine: at register time, and when the engine path changes."""
    prefs = preferences(context)
    dependencies.setup_paths(bpy.path.abspath(prefs.engine_path) if prefs.engine_path else "", deps_folder())


def refresh(context=None) -> None:
    """Look for the engine and the models again (cached for the panels)."""
    setup_paths(context)
    dependencies.refresh()
    model_list.refresh(preferences(context).models_folder)


def _on_change(self, context):
    refresh(context)


_INSTALL = {"running": False, "log": "", "ok": None}


class MAS_OT_install_dependencies(bpy.types.Operator):
    """Download and install torch and the other pinned packages into the add-on's own folder"""
    bl_idname = "mas.install_dependencies"
    bl_label = "Install dependencies"
    cpu_only: BoolProperty(name="CPU build of torch", default=True,
                           description="The small CPU build (about 200 MB); off: the default build with CUDA (GBs)")

    def execute(self, context):
        if not bpy.app.online_access:
            self.report({"ERROR"}, "Online access is off (Preferences > System > Network): allow it to download "
                                   "the dependencies, or set an engine path instead")
            return {"CANCELLED"}
        if _INSTALL["running"]:
            self.report({"WARNING"}, "already installing")
            return {"CANCELLED"}
        cmd = dependencies.install_command(deps_folder(), self.cpu_only)

        def work():
            _INSTALL.update(running=True, log="installing...", ok=None)
            r = subprocess.run(cmd, capture_output=True, text=True)
            lines = (r.stdout + r.stderr).strip().splitlines()
            _INSTALL.update(running=False, ok=r.returncode == 0, log=lines[-1] if lines else f"exit {r.returncode}")
            dependencies.refresh()      # no bpy: safe in this thread
        threading.Thread(target=work, daemon=True).start()
        self.report({"INFO"}, f"installing into {deps_folder()} (see the preferences for the result)")
        return {"FINISHED"}


class MAS_AddonPreferences(bpy.types.AddonPreferences):
    bl_idname = ADDON_ID

    models_folder: StringProperty(name="Models folder", subtype="DIR_PATH", update=_on_change,
                                  description="Your checkpoints (NAME.safetensors + NAME.json from 'mas train')")
    engine_path: StringProperty(name="Engine path", subtype="DIR_PATH", update=_on_change,
                                description="A site-packages folder of a Python 3.11 environment with torch (and "
                                            "optionally the MAS packages); instead of installing dependencies")

    def draw(self, context):
        layout = self.layout
        layout.prop(self, "models_folder")
        box = layout.box()
        row = box.row()
        row.label(text="Engine")
        row.operator("mas.refresh", icon="FILE_REFRESH")
        ok, line = dependencies.status()
        box.label(text=line, icon="CHECKMARK" if ok else "INFO" if ok is None else "ERROR")
        row = box.row()
        row.enabled = not _INSTALL["running"]
        row.operator(MAS_OT_install_dependencies.bl_idname, icon="IMPORT")
        if not bpy.app.online_access:
            box.label(text="Online access is off: installing needs it (Preferences > System > Network)", icon="INFO")
        box.label(text=f"Dependencies folder: {deps_folder()}")
        if _INSTALL["log"]:
            box.label(text=f"Last install: {_INSTALL['log']}", icon="CHECKMARK" if _INSTALL["ok"] else "INFO")
        box.prop(self, "engine_path")


classes = (MAS_OT_install_dependencies, MAS_AddonPreferences)
