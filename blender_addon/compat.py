"""Differences between Blender versions (4.2 LTS to 5.0) in one place.

Blender 4.4 introduced slotted actions and 5.0 removed ``Action.fcurves`` / ``Action.groups``:
F-curves live in a channel bag per slot (per animated ID). Everything that adds F-curves or
NLA strips goes through here.
"""
from __future__ import annotations

import bpy


def assign_action(obj, action):
    """Make ``action`` the active action of ``obj``; returns what F-curves are added to
    (the slot's channel bag on 4.4+, the action itself before)."""
    ad = obj.animation_data or obj.animation_data_create()
    ad.action = action
    if not hasattr(action, "slots"):                      # 4.2, 4.3: legacy actions
        return action
    slot = ad.action_slot
    if slot is None:
        slot = action.slots.new(id_type="OBJECT", name=obj.name)
        ad.action_slot = slot
    try:
        from bpy_extras.anim_utils import action_ensure_channelbag_for_slot    # 5.0
        return action_ensure_channelbag_for_slot(action, slot)
    except ImportError:                                   # 4.4, 4.5
        layer = action.layers[0] if len(action.layers) else action.layers.new("Layer")
        strip = layer.strips[0] if len(layer.strips) else layer.strips.new(type="KEYFRAME")
        return strip.channelbag(slot, ensure=True)


def new_fcurve(channels, data_path: str, index: int, group: str):
    """An F-curve in a channel bag (4.4+) or a legacy action, in the named group."""
    if isinstance(channels, bpy.types.Action):
        return channels.fcurves.new(data_path, index=index, action_group=group)
    return channels.fcurves.new(data_path, index=index, group_name=group)


def action_fcurves(action, obj=None):
    """All F-curves of an action (for ``obj``'s slot on 4.4+)."""
    if not hasattr(action, "slots"):
        return list(action.fcurves)
    out = []
    for layer in action.layers:
        for strip in layer.strips:
            for bag in strip.channelbags:
                if obj is None or obj.animation_data is None or bag.slot == obj.animation_data.action_slot \
                        or len(action.slots) == 1:
                    out += list(bag.fcurves)
    return out


def push_to_nla(obj, action, name: str, start: int, mute: bool):
    """Put ``action`` on a new NLA track of ``obj`` (one slot for the object on 4.4+)."""
    ad = obj.animation_data or obj.animation_data_create()
    track = ad.nla_tracks.new()
    track.name = name
    strip = track.strips.new(name, int(start), action)
    if hasattr(strip, "action_slot") and len(action.slots):
        strip.action_slot = action.slots[0]
    track.mute = mute
    return track
