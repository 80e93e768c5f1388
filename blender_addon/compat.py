"""Differences between Blender versions (4.2 LTS to 5.0) in one place.

Blender 4.4 introduced slotted actions (keeping ``Action.fcurves`` as a legacy view of the first
slot) and 5.0 removed ``Action.fcurves`` / ``Action.groups``: F-curves live in a channel bag per
slot (per animated ID). Everything that adds F-curves or NLA strips goes through here. The tests
run on 5.0, and on 4.5 and 4.2 (``python3 build.py test --blender 4.5``), so every branch runs.
"""
from __future__ import annotations

import bpy


def assign_action(obj, action):
    """Make ``action`` the active action of ``obj``; returns what F-curves are added to
    (the slot's channel bag on 4.4+, the action itself before)."""
    ad = obj.animation_data or obj.animation_data_create()
    ad.action = action
    if hasattr(action, "fcurves"):       # 4.2-4.5: the legacy API (on 4.4+ it maps to the first slot)
        return action
    from bpy_extras.anim_utils import action_ensure_channelbag_for_slot    # 5.0+

    slot = ad.action_slot
    if slot is None:
        slot = action.slots.new(id_type="OBJECT", name=obj.name)
        ad.action_slot = slot
    return action_ensure_channelbag_for_slot(action, slot)


def bind_slot(obj, action) -> None:
    """4.4-4.5: F-curves added through the legacy ``Action.fcurves`` create the action's first slot
    after the action was assigned, and the object stays bound to no slot: it would not play the
    action (the rig stays in its rest pose). Bind it to that slot. Nothing to do on 4.2 or 5.0."""
    ad = obj.animation_data
    if ad is not None and hasattr(ad, "action_slot") and ad.action_slot is None and len(getattr(action, "slots", ())):
        ad.action_slot = action.slots[0]


def new_fcurve(channels, data_path: str, index: int, group: str):
    """An F-curve in a channel bag (4.4+) or a legacy action, in the named group."""
    if isinstance(channels, bpy.types.Action):
        return channels.fcurves.new(data_path, index=index, action_group=group)
    return channels.fcurves.new(data_path, index=index, group_name=group)


def action_fcurves(action, obj=None):
    """All F-curves of an action (for ``obj``'s slot on 4.4+)."""
    if hasattr(action, "fcurves"):
        return list(action.fcurves)
    out = []
    for layer in action.layers:
        for strip in layer.strips:
            for bag in strip.channelbags:
                if obj is None or obj.animation_data is None or bag.slot == obj.animation_data.action_slot \
                        or len(action.slots) == 1:
                    out += list(bag.fcurves)
    return out


def push_to_nla(obj, action, name: str, start: int, mute: bool, track=None):
    """Put ``action`` on a new NLA track of ``obj`` (or after the strips of ``track``), one slot for
    the object on 4.4+; returns the track."""
    ad = obj.animation_data or obj.animation_data_create()
    if track is None:
        track = ad.nla_tracks.new()
        track.name = name
    strip = track.strips.new(name, int(start), action)
    if getattr(strip, "action_slot", False) is None and len(action.slots):     # 4.4+: a slot to play
        strip.action_slot = action.slots[0]
    track.mute = mute
    return track
