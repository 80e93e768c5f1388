"""A stand-in SMPL model file with the real one's keys and shapes (6890 vertices, 24 joints),
made up by the tests: the real model is licensed and cannot be in the repository."""
from __future__ import annotations

import numpy as np

SMPL_PARENTS = [-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21]
# rest joints in SMPL's frame: metres, Y up, facing +Z, the subject's left at +X
REST = np.array([
    [0, 0.92, 0], [0.09, 0.83, 0], [-0.09, 0.83, 0], [0, 1.02, -0.02], [0.1, 0.45, 0], [-0.1, 0.45, 0],
    [0, 1.15, -0.02], [0.1, 0.08, -0.03], [-0.1, 0.08, -0.03], [0, 1.2, -0.01], [0.11, 0.02, 0.1],
    [-0.11, 0.02, 0.1], [0, 1.45, -0.02], [0.08, 1.38, -0.01], [-0.08, 1.38, -0.01], [0, 1.58, 0.02],
    [0.18, 1.38, -0.02], [-0.18, 1.38, -0.02], [0.44, 1.38, -0.03], [-0.44, 1.38, -0.03],
    [0.69, 1.38, -0.02], [-0.69, 1.38, -0.02], [0.77, 1.38, -0.02], [-0.77, 1.38, -0.02]])


def make_standin_smpl(path, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    V = 6890
    owner = np.arange(V) % 24
    v = REST[owner] + rng.normal(0, 0.03, (V, 3))
    v[:24] = REST
    v[332] = REST[15] + [0, 0.0, 0.11]     # nose, in front of the head joint
    v[411] = REST[15] + [0, 0.14, 0.0]     # top of the head
    owner[[332, 411]] = 15
    weights = np.zeros((V, 24))
    weights[np.arange(V), owner] = 1.0
    J_regressor = np.zeros((24, V))
    J_regressor[np.arange(24), np.arange(24)] = 1.0
    shapedirs = rng.normal(0, 0.01, (V, 3, 10))
    shapedirs[:24] = 0.0
    for j in range(24):  # the first shape component scales the body about the pelvis, 3% per unit
        shapedirs[owner == j, :, 0] = 0.03 * (v[owner == j] - REST[0])
    kintree = np.array([[4294967295] + SMPL_PARENTS[1:], list(range(24))], dtype=np.int64)
    faces = rng.integers(0, V, (13776, 3)).astype(np.int64)
    np.savez(path, v_template=v, shapedirs=shapedirs, posedirs=np.zeros((V, 3, 207)), J_regressor=J_regressor,
             kintree_table=kintree, weights=weights, f=faces)
