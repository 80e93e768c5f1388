"""SMPLify-style fitting of the SMPL body model (via ``smplx``) to a whole motion at once.

The SMPL model file is licensed and cannot ship: the user downloads it from
https://smpl.is.tue.mpg.de and points ``--smpl-model`` (or ``MAS_SMPL_MODEL``, or the
add-on's preferences) at it. Only ``.npz`` model files are read, with pickles disabled
(``.pkl`` files are pickles: MAS never unpickles a file it is handed).

The fit optimises one shape (betas) shared by all frames, and per frame the global
orientation, the 23 body-joint rotations (axis-angle) and the translation, for all frames
in one LBFGS problem: keypoint error + joint-acceleration smoothness + small pose and
shape priors. SMPL is Y up and faces +Z; motions are Z up: (x, y, z) -> (x, z, -y).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from mas_engine.errors import MasError
from rigs.armature import Armature
from rigs.keypoints import KeypointLayout

from .fit import RotationTrack, check_motion, fit_armature, marker_error

SMPL_JOINTS = ("pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2", "left_ankle",
               "right_ankle", "spine3", "left_foot", "right_foot", "neck", "left_collar", "right_collar", "head",
               "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
               "left_hand", "right_hand")
NOSE_VERTEX, HEAD_TOP_VERTEX = 332, 411   # SMPL mesh vertices at the nose tip and the top of the head
REQUIRED_KEYS = ("v_template", "shapedirs", "posedirs", "J_regressor", "kintree_table", "weights", "f")
# human16 keypoint -> SMPL joint index, or a vertex ("v", index)
HUMAN16_TO_SMPL = {"pelvis": 0, "left_hip": 1, "right_hip": 2, "left_knee": 4, "right_knee": 5, "left_ankle": 7,
                   "right_ankle": 8, "neck": 12, "left_shoulder": 16, "right_shoulder": 17, "left_elbow": 18,
                   "right_elbow": 19, "left_wrist": 20, "right_wrist": 21, "nose": ("v", NOSE_VERTEX),
                   "head": ("v", HEAD_TOP_VERTEX)}
Z_UP_TO_SMPL = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])
HELP = ("download the SMPL body model (free for research, licensed) from https://smpl.is.tue.mpg.de, "
        "use its .npz file (e.g. SMPL_NEUTRAL.npz from the smplx model package), and pass it with "
        "--smpl-model PATH or the MAS_SMPL_MODEL environment variable; the built-in rig (--rig human) needs nothing")


def find_smpl_model(path=None) -> Path:
    path = path or os.environ.get("MAS_SMPL_MODEL")
    if not path:
        raise MasError("no SMPL model file given: " + HELP)
    p = Path(path)
    if p.is_dir():
        hits = sorted(p.glob("SMPL_NEUTRAL.npz")) or sorted(p.glob("*.npz"))
        if not hits:
            raise MasError(f"no SMPL .npz model file in {p}: " + HELP)
        p = hits[0]
    if not p.exists():
        raise MasError(f"SMPL model {p} not found: " + HELP)
    if p.suffix.lower() == ".pkl":
        raise MasError(f"{p} is a pickle, which MAS does not load from files it is handed; use the .npz "
                       f"version of the model: " + HELP)
    return p


def load_smpl(path=None):
    """An ``smplx.SMPL`` body model from a .npz file, read without pickles."""
    try:
        import smplx
        from smplx.utils import Struct
    except ImportError:
        raise MasError("SMPL fitting needs the smplx package: pip install smplx==0.1.28") from None
    p = find_smpl_model(path)
    try:
        with np.load(p, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except (ValueError, OSError) as e:
        raise MasError(f"{p} is not a readable SMPL .npz model ({e}): " + HELP) from None
    missing = [k for k in REQUIRED_KEYS if k not in arrays]
    if missing or arrays.get("v_template", np.zeros((0, 3))).shape[0] <= HEAD_TOP_VERTEX:
        raise MasError(f"{p} is not an SMPL model (missing {', '.join(missing) or 'vertices'}): " + HELP)
    if arrays["kintree_table"].shape[-1] != 24:
        raise MasError(f"{p} has {arrays['kintree_table'].shape[-1]} joints; SMPL has 24 (SMPL-H/X are not supported here)")
    return smplx.SMPL(str(p), data_struct=Struct(**arrays), num_betas=min(10, arrays["shapedirs"].shape[-1]))


SMPL_BONES = [("left_hip", "left_knee"), ("left_knee", "left_ankle"), ("right_hip", "right_knee"),
              ("right_knee", "right_ankle"), ("left_shoulder", "left_elbow"), ("left_elbow", "left_wrist"),
              ("right_shoulder", "right_elbow"), ("right_elbow", "right_wrist"), ("left_hip", "right_hip")]
# (rigid in SMPL whatever the pose: shoulder width and torso length depend on the collars and spine)


def shaped_rest(model, betas: torch.Tensor):
    """Rest joints (24 x 3) and the nose and head-top vertices (2 x 3) of a shape, SMPL frame."""
    v = model.v_template + torch.einsum("vkb,b->vk", model.shapedirs, betas)
    return model.J_regressor @ v, v[[NOSE_VERTEX, HEAD_TOP_VERTEX]]


def fit_betas(model, joints: np.ndarray, layout: KeypointLayout, iters: int = 50) -> torch.Tensor:
    """The shape whose bone lengths best match the motion's median keypoint distances."""
    want = torch.tensor([np.median(np.linalg.norm(joints[:, layout.index(a)] - joints[:, layout.index(b)], axis=-1))
                         for a, b in SMPL_BONES], dtype=torch.float64)
    ids = [(HUMAN16_TO_SMPL[a], HUMAN16_TO_SMPL[b]) for a, b in SMPL_BONES]
    betas = torch.zeros(model.num_betas, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([betas], max_iter=iters, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        J, _ = shaped_rest(model, betas)
        have = torch.stack([(J[a] - J[b]).norm() for a, b in ids])
        loss = ((have - want) ** 2).sum() + 1e-4 * (betas ** 2).sum()
        loss.backward()
        return loss
    opt.step(closure)
    return betas.detach()


def smpl_armature(model, betas: torch.Tensor) -> Armature:
    """The SMPL skeleton of a shape as an Armature (Z up, facing -Y, as the built-in rigs)."""
    with torch.no_grad():
        J, head_points = shaped_rest(model, betas.double())
    C = torch.from_numpy(Z_UP_TO_SMPL)
    J, head_points = (J @ C).numpy(), (head_points @ C).numpy()      # SMPL frame -> Z up
    parents = tuple(int(p) if i else -1 for i, p in enumerate(model.parents.tolist()))
    tails = J.copy()
    for b in range(24):
        kids = [c for c, p in enumerate(parents) if p == b]
        tails[b] = J[kids[0]] if kids else J[b] + 0.3 * (J[b] - J[parents[b]])
    tails[15] = head_points[1]
    markers = {kp: (SMPL_JOINTS[ref], J[ref]) for kp, ref in HUMAN16_TO_SMPL.items() if not isinstance(ref, tuple)}
    markers["nose"] = ("head", head_points[0])
    markers["head"] = ("head", head_points[1])
    hinges = {"left_knee": np.array([1.0, 0, 0]), "right_knee": np.array([1.0, 0, 0]),
              "left_elbow": np.array([0, 0, -1.0]), "right_elbow": np.array([0, 0, 1.0])}
    return Armature("smpl", SMPL_JOINTS, parents, J, tails, "human16", markers, hinges,
                    flat=("left_ankle", "right_ankle"))


def fit_smpl(joints: np.ndarray, layout: KeypointLayout, fps: float, model_path=None, **fit_options):
    """Fit SMPL to frames x J x 3 keypoints (metres, Z up), the whole sequence at once.

    Shape first (one for all frames, from bone lengths), then the pose of every frame with
    the skeleton fit (``retarget.fit``: analytic guess + LBFGS with smoothness and hinge
    priors) on SMPL's kinematic tree, whose joints depend on the shape alone. Local
    rotations are SMPL's pose (relative to its T-pose rest), converted to Z up.
    Returns the track and {"betas", "marker_error_m"}.
    """

    if layout.name != "human16":
        raise MasError(f"SMPL fitting maps human16 keypoints; this motion uses {layout.name}")
    model = load_smpl(model_path).double()
    check_motion(joints, layout)
    betas = fit_betas(model, joints, layout)
    arm = smpl_armature(model, betas)
    track = fit_armature(joints, layout, arm, fps, **dict({"iters": 100}, **fit_options))
    return track, {"betas": betas.numpy(), "marker_error_m": marker_error(track, joints, layout)}


def smpl_pose(track: RotationTrack) -> tuple[np.ndarray, np.ndarray]:
    """A fitted SMPL track as smplx inputs: axis-angle (frames x 24 x 3, SMPL frame) and transl (frames x 3)."""
    from scipy.spatial.transform import Rotation

    C = Z_UP_TO_SMPL
    local = C @ track.rotations @ C.T
    aa = Rotation.from_matrix(local.reshape(-1, 3, 3)).as_rotvec().reshape(local.shape[0], 24, 3)
    return aa, track.root @ C.T - track.armature.heads[0] @ C.T
