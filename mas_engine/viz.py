"""Stick-figure pictures of 3D motions with matplotlib (previews, README, visual checks)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from rigs.keypoints import KeypointLayout

from .atomic import atomic_write
from .motion_io import load_motion


def _axes(fig, pos, joints):
    ax = fig.add_subplot(*pos, projection="3d")
    c = joints[..., :2].reshape(-1, 2).mean(0)
    r = max(np.abs(joints[..., :2].reshape(-1, 2) - c).max(), joints[..., 2].max() / 2) + 0.1
    ax.set_xlim(c[0] - r, c[0] + r)
    ax.set_ylim(c[1] - r, c[1] + r)
    ax.set_zlim(0, 2 * r)
    ax.set_box_aspect((1, 1, 1))
    ax.view_init(elev=15, azim=-60)
    ax.set_xticklabels([]), ax.set_yticklabels([]), ax.set_zticklabels([])
    return ax


def _draw(ax, pose, layout, trail=None):
    lines = []
    for p, j in layout.bones:
        name = layout.joints[j]
        color = "tab:blue" if "left" in name else "tab:red" if "right" in name else "dimgray"
        lines += ax.plot(*pose[[p, j]].T, color=color, lw=2)
    if trail is not None:
        lines += ax.plot(*trail.T, color="gray", lw=0.8)
    return lines


def write_animation(path, joints: np.ndarray, layout: KeypointLayout, fps: float, step: int = 2,
                    overwrite: bool = True) -> Path:
    """A GIF of a motion (frames x joints x 3, metres, Z up); every ``step``-th frame. Atomic."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.animation import FuncAnimation, PillowWriter

    fig = plt.figure(figsize=(4, 4))
    ax = _axes(fig, (1, 1, 1), joints)
    frames = range(0, joints.shape[0], step)

    def update(f):
        for ln in list(ax.lines):
            ln.remove()
        return _draw(ax, joints[f], layout, joints[: f + 1, layout.root])

    anim = FuncAnimation(fig, update, frames=frames, blit=False)
    try:
        return atomic_write(path, lambda tmp: anim.save(tmp, writer=PillowWriter(fps=fps / step)), overwrite=overwrite)
    finally:
        plt.close(fig)


def write_filmstrip(path, motions: list[np.ndarray], layout: KeypointLayout, frames: int = 6) -> Path:
    """A PNG grid: one row per motion, ``frames`` evenly spaced poses each."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(2.2 * frames, 2.4 * len(motions)))
    for r, joints in enumerate(motions):
        for c, f in enumerate(np.linspace(0, joints.shape[0] - 1, frames).astype(int)):
            ax = _axes(fig, (len(motions), frames, r * frames + c + 1), joints)
            _draw(ax, joints[f], layout, joints[: f + 1, layout.root])
            ax.set_title(f"frame {f}", fontsize=8)
    fig.tight_layout()
    try:
        return atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=70))
    finally:
        plt.close(fig)


def main(argv=None) -> None:
    """python -m mas_engine.viz FOLDER: a film strip (strip.png) of the motions in FOLDER."""
    import sys

    from rigs.keypoints import get_layout

    folder = Path((argv or sys.argv[1:])[0])
    files = sorted(folder.glob("*.npz"))[:4]
    if not files:
        raise SystemExit(f"no motions (.npz) in {folder}")
    motions = [load_motion(f) for f in files]
    out = write_filmstrip(folder / "strip.png", [m["joints"] for m in motions], get_layout(str(motions[0]["layout"])))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
