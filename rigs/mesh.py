"""Simple procedural meshes for the built-in rigs: one tapered eight-sided tube per bone,
rigidly skinned to it, so the user sees a character rather than sticks; and a ball.

Plain data (numpy) for the add-on to build: vertices (V x 3, metres, Z up, rest pose),
quad faces (F x 4, vertex indices) and the bone each vertex follows (V).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .armature import Armature


@dataclass
class SkinnedMesh:
    vertices: np.ndarray   # V x 3
    faces: np.ndarray      # F x 4
    bone: np.ndarray       # V, the bone index every vertex is skinned to (weight 1)


def _frame(d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two unit vectors perpendicular to d and to each other."""
    a = np.array([1.0, 0, 0]) if abs(d[0]) < 0.9 else np.array([0, 1.0, 0])
    u = np.cross(d, a)
    u /= np.linalg.norm(u)
    return u, np.cross(d, u)


def bone_tubes(arm: Armature, thickness: float = 0.2, sides: int = 8, min_radius: float = 0.035) -> SkinnedMesh:
    """A closed tube around every bone, from head to tail, radius ``thickness`` x its length
    (tapering to 70% at the tail). Bones shorter than 1 cm get none."""
    verts, faces, owner = [], [], []
    ang = np.linspace(0, 2 * np.pi, sides, endpoint=False)
    for b in range(len(arm.bones)):
        h, t = arm.heads[b], arm.tails[b]
        L = np.linalg.norm(t - h)
        if L < 0.01:
            continue
        d = (t - h) / L
        u, v = _frame(d)
        r = max(thickness * L, min_radius)
        base = len(verts)
        for end, scale in ((h, 1.0), (t, 0.7)):
            for a in ang:
                verts.append(end + r * scale * (np.cos(a) * u + np.sin(a) * v))
        verts += [h - 0.3 * r * d, t + 0.2 * r * d]        # caps
        owner += [b] * (2 * sides + 2)
        for i in range(sides):
            j = (i + 1) % sides
            faces.append([base + i, base + j, base + sides + j, base + sides + i])
            faces.append([base + 2 * sides, base + j, base + i, base + i])                       # head cap (triangle)
            faces.append([base + 2 * sides + 1, base + sides + i, base + sides + j, base + sides + j])  # tail cap
    return SkinnedMesh(np.asarray(verts), np.asarray(faces, dtype=np.int64), np.asarray(owner, dtype=np.int64))


def ball(radius: float = 0.12, rings: int = 8, segments: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """A UV sphere: vertices (V x 3) around the origin and quad faces (F x 4; poles as degenerate quads)."""
    verts = [[0.0, 0.0, -radius]]
    for i in range(1, rings):
        phi = np.pi * i / rings - np.pi / 2
        for k in range(segments):
            th = 2 * np.pi * k / segments
            verts.append([radius * np.cos(phi) * np.cos(th), radius * np.cos(phi) * np.sin(th), radius * np.sin(phi)])
    verts.append([0.0, 0.0, radius])
    top = len(verts) - 1
    faces = []
    for k in range(segments):
        n = (k + 1) % segments
        faces.append([0, 1 + n, 1 + k, 1 + k])
        for i in range(rings - 2):
            a, b = 1 + i * segments, 1 + (i + 1) * segments
            faces.append([a + k, a + n, b + n, b + k])
        c = 1 + (rings - 2) * segments
        faces.append([top, c + k, c + n, c + n])
    return np.asarray(verts), np.asarray(faces, dtype=np.int64)
