"""Stick-figure pictures of 3D motions with matplotlib (previews, README, visual checks)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from rigs.keypoints import KeypointLayout

from .atomic import atomic_write
from .motion_io import load_motion


def _axes(fig, pos, centre, r):
    """3D axes of half-width ``r`` (m) around a point (x, y) of the floor plane, Z from 0 to 2 r."""
    ax = fig.add_subplot(*pos, projection="3d")
    ax.set_xlim(centre[0] - r, centre[0] + r)
    ax.set_ylim(centre[1] - r, centre[1] + r)
    ax.set_zlim(0, 2 * r)
    ax.set_box_aspect((1, 1, 1))
    ax.view_init(elev=15, azim=-60)
    ax.set_xticklabels([]), ax.set_yticklabels([]), ax.set_zticklabels([])
    return ax


def _fitted_axes(fig, pos, joints):
    """Axes that hold a whole motion (frames x joints x 3)."""
    c = joints[..., :2].reshape(-1, 2).mean(0)
    r = max(np.abs(joints[..., :2].reshape(-1, 2) - c).max(), joints[..., 2].max() / 2) + 0.1
    return _axes(fig, pos, c, r)


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
    ax = _fitted_axes(fig, (1, 1, 1), joints)
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


def limb_ends(layout: KeypointLayout) -> list[int]:
    """The joints no bone leaves from (hands, feet, head, tail...): their paths show what a body does."""
    has_child = {p for p, _ in layout.bones}
    return [j for _, j in layout.bones if j not in has_child]


def describe(joints: np.ndarray, layout: KeypointLayout) -> str:
    """A short line on what a motion (frames x joints x 3, metres, Z up) does: how far its root goes (``metrics.root_travel``,
    so that a sway does not count) and how far its limbs move relative to it (``metrics.gesture``)."""
    from .metrics import gesture, root_travel

    fps = 30.0                              # any rate: the travel per second times the duration at that rate
    travel = root_travel(joints[:, layout.root], fps) * (len(joints) - 1) / fps
    return f"travels {travel:.1f} m, limbs move up to {gesture(joints, limb_ends(layout), [layout.root]):.2f} m"


def write_filmstrip(path, motions: list[np.ndarray], layout: KeypointLayout, frames: int = 6,
                    names: list[str] | None = None, trail_s: float = 0.5, fps: float = 30.0) -> Path:
    """A PNG grid: one row per motion (frames x joints x 3, metres, Z up), ``frames`` evenly spaced poses
    each, seen by a camera that follows the root at one scale per row. Grey: the root's path so far; orange:
    the limb ends' paths over the last ``trail_s`` seconds, so that a gesture shows in a still picture."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ends, k = limb_ends(layout), max(1, int(round(trail_s * fps)))
    fig, firsts = plt.figure(figsize=(2.2 * frames, 2.5 * len(motions))), []
    for r, joints in enumerate(motions):
        rel = joints - joints[:, layout.root:layout.root + 1]
        half = max(np.abs(rel[..., :2]).max(), joints[..., 2].max() / 2) + 0.1
        for c, f in enumerate(np.linspace(0, joints.shape[0] - 1, frames).astype(int)):
            ax = _axes(fig, (len(motions), frames, r * frames + c + 1), joints[f, layout.root, :2], half)  # follows
            _draw(ax, joints[f], layout, joints[: f + 1, layout.root])
            for j in ends:
                ax.plot(*joints[max(0, f - k): f + 1, j].T, color="tab:orange", lw=1, alpha=0.7)
            ax.set_title(f"frame {f}", fontsize=8, pad=0)
            if c == 0:
                firsts.append(ax)
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=1 - 0.3 / len(motions), hspace=0.3, wspace=0.02)
    for r, (ax, joints) in enumerate(zip(firsts, motions)):     # a line over each row, once the rows are placed
        label = (names[r] + ": " if names else "") + describe(joints, layout)
        fig.text(0.02, ax.get_position().y1 + 0.08 / len(motions), label, fontsize=10)
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
    out = write_filmstrip(folder / "strip.png", [m["joints"] for m in motions], get_layout(str(motions[0]["layout"])),
                          names=[f.stem for f in files], fps=float(motions[0]["fps"]))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
