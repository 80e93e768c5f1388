"""MAS Generate Motion: a Blender add-on (extension) over the MAS engine.

Modules by role: ``engine`` (the link to the engine, no bpy), ``scene`` (armatures, meshes,
actions), ``compat`` (Blender version differences), ``api`` (the Python API the operators
run), ``operators``, ``panels``, ``properties``, ``preferences``.
"""
from __future__ import annotations

import bpy

from . import engine

# the engine copy inside an installed extension; the user's engine path comes with the preferences
engine.setup_paths()

from . import operators, panels, preferences, properties  # noqa: E402


def register():
    for c in preferences.classes:
        bpy.utils.register_class(c)
    properties.register()
    for c in operators.classes + panels.classes:
        bpy.utils.register_class(c)


def unregister():
    if operators.RUNNING["job"] is not None:
        operators.RUNNING["job"].cancel()
    for c in reversed(operators.classes + panels.classes):
        bpy.utils.unregister_class(c)
    properties.unregister()
    for c in reversed(preferences.classes):
        bpy.utils.unregister_class(c)
