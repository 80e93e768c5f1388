"""The README's picture of a 30 s motion, a 4 s loop, an in-between of two poses and a travelling
2 s loop played three times (the first of seeds 5000-5015 whose loop travels at 0.5 m/s or more):

    python docs/draw_long.py [--out docs/long_loop_between.png]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mas_engine import constraints as C  # noqa: E402
from mas_engine.checkpoint import load_checkpoint  # noqa: E402
from mas_engine.postprocess import travel_per_period  # noqa: E402
from mas_engine.sampler import MasSettings, sample_mas  # noqa: E402
from mas_engine.viz import write_filmstrip  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="docs/long_loop_between.png")
    a = ap.parse_args(argv)
    m = load_checkpoint("human")
    fps, layout = m.fps, m.layout
    long = sample_mas(m, [5000], int(30 * fps)).joints[0]
    loop = sample_mas(m, [5001], int(4 * fps), MasSettings(loop=True)).joints[0]
    a_pose, b_pose = (sample_mas(m, [s], int(4 * fps)).joints[0][k] for s, k in ((5002, 0), (5003, 60)))
    names = np.array(layout.joints)
    F = int(3 * fps)
    c = C.start_from({"joints": a_pose[None], "joint_names": names}, F, layout, fps).merge(
        C.end_at({"joints": b_pose[None], "joint_names": names}, F, layout, fps))
    between = sample_mas(m, [5004], F, constraints=c).joints[0]
    walks = sample_mas(m, list(range(5000, 5016)), int(2 * fps), MasSettings(loop_travel=True, loop=True)).joints
    travel = [travel_per_period(w, layout.root) for w in walks]
    k = next(i for i, t in enumerate(travel) if np.linalg.norm(t) / 2.0 >= 0.5)
    walk = np.concatenate([walks[k] + n * travel[k] for n in range(3)])
    write_filmstrip(a.out, [long, loop, between, walk], layout, frames=8)
    print(f"wrote {a.out}: rows: 30 s motion (seed 5000), 4 s loop (5001), in-between of two poses (5004), "
          f"travelling 2 s loop (seed {5000 + k}, {np.linalg.norm(travel[k]):.2f} m a period) played three times")


if __name__ == "__main__":
    main()
