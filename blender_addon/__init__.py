"""MAS Generate Motion: a Blender add-on (extension) over the MAS engine.

Modules by role (see docs/ARCHITECTURE.md). Without bpy: ``dependencies`` (where the engine
comes from, whether it imports), ``model_list`` (the cached models), ``jobs`` (requests through
``mas_app.pipeline``, in a thread). With bpy: ``scene_requests`` (scene -> requests), ``scene``
(armatures, meshes, actions), ``operation`` (building results, rollback), ``batch``,
``exporters``, ``api`` (the public Python API), ``operators``, ``panels``, ``properties``,
``preferences``, ``compat`` (Blender version differences).
"""
from __future__ import annotations

import bpy

from . import dependencies

# the engine copy inside an installed extension (or the checkout); the user's engine path and
# the dependency folder are added at register time, from the preferences
dependencies.setup_paths()

from . import operators, panels, preferences, properties  # noqa: E402


def register():
    for c in preferences.classes:
        bpy.utils.register_class(c)
    preferences.setup_paths()
    properties.register()
    for c in operators.classes + panels.classes:
        bpy.utils.register_class(c)
    # importing torch takes a second: check the engine just after Blender has started, not while it
    # starts (without a window timers never run: scripts check it when they first generate)
    if not bpy.app.background:
        bpy.app.timers.register(_check_engine, first_interval=0.5)


def _check_engine():
    preferences.refresh()
    return None             # once


def unregister():
    if bpy.app.timers.is_registered(_check_engine):
        bpy.app.timers.unregister(_check_engine)
    if operators.RUNNING["job"] is not None:
        operators.RUNNING["job"].cancel()
    for c in reversed(operators.classes + panels.classes):
        bpy.utils.unregister_class(c)
    properties.unregister()
    for c in reversed(preferences.classes):
        bpy.utils.unregister_class(c)
