import numpy as np
import pytest
import torch

from mas_engine.errors import MasError
from retarget.bvh_writer import write_bvh
from retarget.fit import RotationTrack
from retarget.rotations import axis_angle_matrix
from retarget.smpl import HUMAN16_TO_SMPL, Z_UP_TO_SMPL, fit_smpl, load_smpl, smpl_armature, smpl_pose
from rigs.keypoints import HUMAN16
from smpl_standin import make_standin_smpl

pytest.importorskip("smplx")


@pytest.fixture(scope="module")
def standin(tmp_path_factory):
    path = tmp_path_factory.mktemp("smpl") / "SMPL_NEUTRAL.npz"
    make_standin_smpl(path)
    return path


def keypoints_of(model, betas, pose, orient, transl):
    out = model(betas=betas, body_pose=pose, global_orient=orient, transl=transl)
    kp = np.zeros((pose.shape[0], 16, 3))
    for name, ref in HUMAN16_TO_SMPL.items():
        src = out.vertices[:, ref[1]] if isinstance(ref, tuple) else out.joints[:, ref]
        kp[:, HUMAN16.index(name)] = src.detach().numpy()
    return kp @ Z_UP_TO_SMPL          # SMPL frame -> Z up (the matrix is orthogonal: inverse = transpose)


def random_motion(model, F=30, seed=0):
    g = torch.Generator().manual_seed(seed)
    t = torch.linspace(0, 2, F, dtype=torch.float64)[:, None]
    betas = torch.tensor([[1.0, 0, 0, 0, 0, 0, 0, 0, 0, 0]], dtype=torch.float64)
    pose = 0.3 * torch.sin(3 * t + torch.rand(1, 69, generator=g, dtype=torch.float64) * 6)
    orient = torch.cat([torch.zeros(F, 1, dtype=torch.float64), 0.5 * t, torch.zeros(F, 1, dtype=torch.float64)], 1)
    transl = torch.cat([t, torch.zeros(F, 2, dtype=torch.float64)], 1)
    return betas, pose, orient, transl


def test_smpl_armature_moves_like_smplx(standin):
    """The SMPL skeleton as an Armature, driven by SMPL's own pose, gives smplx's joints."""
    model = load_smpl(standin).double()
    betas, pose, orient, transl = random_motion(model, F=8)
    out = model(betas=betas.expand(8, -1), body_pose=pose, global_orient=orient, transl=transl)
    arm = smpl_armature(model, betas[0])
    C = torch.from_numpy(Z_UP_TO_SMPL)
    aa = torch.cat([orient, pose], 1).reshape(8, 24, 3)
    local = C.T @ axis_angle_matrix(aa, aa.norm(dim=-1)) @ C
    root = (out.joints[:, 0] @ C).detach().numpy()
    track = RotationTrack(arm, local.numpy(), root, 30.0)
    np.testing.assert_allclose(track.heads(), (out.joints[:, :24] @ C).detach().numpy(), atol=1e-7)
    aa_back, transl_back = smpl_pose(track)
    np.testing.assert_allclose(aa_back.reshape(8, -1)[:, 3:], pose.numpy(), atol=1e-6)
    np.testing.assert_allclose(transl_back, transl.numpy(), atol=1e-9)


def test_smpl_fit_recovers_a_known_body_and_motion(standin, tmp_path):
    model = load_smpl(standin).double()
    betas, pose, orient, transl = random_motion(model)
    kp = keypoints_of(model, betas.expand(len(pose), -1), pose, orient, transl)
    track, info = fit_smpl(kp, HUMAN16, 30.0, standin, smooth=0.0)
    assert info["marker_error_m"] < 0.005
    assert abs(info["betas"][0] - 1.0) < 0.2                   # the shape is found (from limb lengths)
    assert track.rotations.shape == (len(pose), 24, 3, 3) and track.armature.bones[0] == "pelvis"
    write_bvh(tmp_path / "smpl.bvh", track)                    # the SMPL skeleton writes like any other


def test_missing_or_unsafe_smpl_model_is_explained(tmp_path, monkeypatch):
    monkeypatch.delenv("MAS_SMPL_MODEL", raising=False)
    with pytest.raises(MasError, match="smpl.is.tue.mpg.de"):
        load_smpl(None)
    with pytest.raises(MasError, match="not found"):
        load_smpl(tmp_path / "nope.npz")
    (tmp_path / "SMPL_NEUTRAL.pkl").write_bytes(b"\x80\x04K\x01.")
    with pytest.raises(MasError, match="pickle"):
        load_smpl(tmp_path / "SMPL_NEUTRAL.pkl")
    np.savez(tmp_path / "wrong.npz", v_template=np.zeros((10, 3)))
    with pytest.raises(MasError, match="not an SMPL model"):
        load_smpl(tmp_path / "wrong.npz")
