import numpy as np
import torch
import pytest

from mas_engine.metrics import (bone_length_variation, diversity, foot_skating, frechet_distance, jitter,
                                precision_recall)
from rigs.keypoints import HUMAN16
from conftest import SAMPLES, walking_figure


def test_frechet_distance_known_cases():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(2000, 8))
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    # a set against itself shifted by a constant: the squared length of the shift
    shift = np.arange(8) * 0.1
    assert frechet_distance(a, a + shift) == pytest.approx((shift ** 2).sum(), rel=1e-6)
    # scaled by 2 (same mean): trace(S) + trace(4S) - 2 trace(2S) = trace(S)
    assert frechet_distance(a, 2 * a) == pytest.approx(np.trace(np.cov(a, rowvar=False)), rel=1e-3)


def test_precision_and_recall_of_a_subset():
    rng = np.random.default_rng(1)
    # real data in two far clusters; generated samples from one of them only
    real = np.concatenate([rng.normal(size=(300, 4)), rng.normal(size=(300, 4)) + 50.0])
    one_mode = rng.normal(size=(300, 4))
    p, r = precision_recall(real, one_mode)
    assert p > 0.9                    # what it makes is realistic (k-NN balls miss a few) ...
    assert 0.4 < r < 0.55             # ... but it covers only half of the data (mode collapse)
    far = real + 1000.0
    assert precision_recall(real, far) == (0.0, 0.0)


def test_diversity_scales_with_the_data():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(500, 16))
    assert diversity(2 * x) == pytest.approx(2 * diversity(x))


def test_bone_length_variation_of_rigid_and_stretching_motions():
    X = walking_figure(60)
    rigid = X.copy()
    rigid[..., :2] += np.linspace(0, 1, 60)[:, None, None]           # translate: rigid
    assert bone_length_variation(rigid, HUMAN16) == pytest.approx(bone_length_variation(X, HUMAN16), abs=1e-9)
    still = np.repeat(X[:1], 60, 0)
    assert bone_length_variation(still, HUMAN16) == pytest.approx(0.0, abs=1e-9)
    stretch = still * np.linspace(1, 1.2, 60)[:, None, None]          # grows 20%
    assert bone_length_variation(stretch, HUMAN16) > 0.05


def test_foot_skating_and_jitter_known_cases():
    planted = np.zeros((30, 1, 3))
    assert foot_skating(planted, 30.0) == 0.0 and jitter(planted, 30.0) == 0.0
    sliding = planted.copy()
    sliding[:, 0, 0] = np.arange(30) * 0.01                           # 0.3 m/s on the floor
    assert foot_skating(sliding, 30.0) == 1.0


@pytest.mark.parametrize("kind,layout_name", [("bandai", "human16"), ("dog", "horse17"), ("spl", "coco17_ball")])
@pytest.mark.filterwarnings("ignore:Matrix is singular")
def test_evaluate_3d_runs_on_real_clips(tmp_path, kind, layout_name):
    from conftest import tiny_card

    import mas_engine.eval_3d as ev
    from mas_engine.checkpoint import save_checkpoint
    from mas_engine.eval_3d import evaluate_3d
    from mas_engine.model import ModelConfig, MotionDenoiser
    from rigs.keypoints import get_layout

    if not (SAMPLES / kind).is_dir():
        pytest.skip("shared data samples not present")
    layout = get_layout(layout_name)
    torch.manual_seed(0)
    cfg = ModelConfig(num_joints=layout.num_joints, max_frames=48, width=32, layers=1, heads=2, ff_width=64,
                      diffusion_steps=10)
    save_checkpoint(tmp_path / "tiny", MotionDenoiser(cfg), tiny_card(layout=layout))
    # the samples hold no validation clip of the split: use all of them as 'held out' for this check
    orig = ev.is_validation_clip
    ev.is_validation_clip = lambda name, fraction: True
    try:
        res = evaluate_3d(model=str(tmp_path / "tiny"), capture=SAMPLES / kind, num=2, seconds=1.0,
                          rows=("mas5",), device="cpu", json_out=tmp_path / "r.json", log=lambda *a: None)
    finally:
        ev.is_validation_clip = orig
    real = res["real (held-out A vs B)"]
    assert set(res) == {"real (held-out A vs B)", "mas5"}
    assert real["bone_cv"] < 0.05 and np.isfinite([real["fd"], real["jitter"], res["mas5"]["fd"]]).all()


def test_training_windows_come_from_the_training_clips_only(monkeypatch):
    import mas_engine.eval_3d as ev

    if not (SAMPLES / "bandai").is_dir():
        pytest.skip("shared data samples not present")
    # the walk is the one training clip; every other sample clip counts as held out
    monkeypatch.setattr(ev, "is_validation_clip", lambda name, fraction: "walk" not in name)
    (walk,), _ = ev.held_out_clips(SAMPLES / "bandai", None, "bandai", 30.0, held_out=False)
    held, _ = ev.held_out_clips(SAMPLES / "bandai", None, "bandai", 30.0)
    assert len(held) == 6
    windows = ev.training_windows(SAMPLES / "bandai", None, 30, 30.0, 8, seed=0)
    assert windows.shape == (8, 30, 16, 3)
    for w in windows:     # each window is a stretch of the walk
        starts = [s for s in range(len(walk) - 29) if np.allclose(walk[s:s + 30], w)]
        assert len(starts) == 1
    assert ev.training_windows(SAMPLES / "bandai", None, len(walk) + 1, 30.0, 8) is None


def test_features_3d_of_a_walk():
    from mas_engine.eval_3d import features_3d

    f = features_3d(walking_figure(40), HUMAN16, 30.0)
    assert f.shape == (34,) and np.isfinite(f).all()


@pytest.mark.skipif(not (SAMPLES / "bandai").is_dir(), reason="shared data samples not present")
@pytest.mark.filterwarnings("ignore:Matrix is singular")
def test_evaluate_2d_protocol_runs_every_row(tiny_checkpoint, tmp_path):
    from mas_engine.eval_2d import ROWS_2D, evaluate_2d, facing_azimuth, load_evaluator

    import mas_engine.eval_3d as ev

    orig = ev.is_validation_clip
    ev.is_validation_clip = lambda name, fraction: True        # the samples hold no held-out clip of the split
    try:
        res = evaluate_2d(model=str(tiny_checkpoint), capture=SAMPLES / "bandai", num=12, reps=2, seconds=1.0, quick=True,
                          evaluator=tmp_path / "ev", evaluator_steps=3, device="cpu", out=tmp_path / "t",
                          log=lambda *a: None)
        again = evaluate_2d(model=str(tiny_checkpoint), capture=SAMPLES / "bandai", num=12, reps=2, seconds=1.0,
                            rows=("ground truth",), side=True, evaluator=tmp_path / "ev", device="cpu",
                            log=lambda *a: None)
        alone = evaluate_2d(model=str(tiny_checkpoint), capture=SAMPLES / "bandai", num=12, reps=2, seconds=1.0,
                            rows=("MAS 2 views",), evaluator=tmp_path / "ev", device="cpu", log=lambda *a: None)
    finally:
        ev.is_validation_clip = orig
    assert list(res["rows"]) == list(ROWS_2D)
    for row in res["rows"].values():
        assert all(np.isfinite(v).all() for v in row.values()) and 0 <= row["recall"][0] <= 1
    assert (tmp_path / "t.json").exists() and "| MAS 5 views |" in (tmp_path / "t.md").read_text()
    vae, card = load_evaluator(tmp_path / "ev")                # trained once, then reused
    assert card["steps"] == 3 and again["views"] == "side"
    assert alone["rows"]["MAS 2 views"] == res["rows"]["MAS 2 views"]   # a row's numbers do not depend on the others run
    # facing: the test figure walks along +X with its left hip at +Y
    assert abs(facing_azimuth(walking_figure(10, heading=0.0), HUMAN16)) < 1e-6


def test_motion_statistics_on_motions_with_known_answers():
    """A still pose is 100% still with no travel and nothing visibly moving; a figure walking at a speed you
    set travels at that speed, steps, and stands on one floor; a figure that floats up has a floor range of
    its rise."""
    from mas_engine.metrics import motion_statistics, root_travel
    from rigs.keypoints import HUMAN16

    from conftest import walking_figure

    j = HUMAN16.index
    limbs = [j(f"{s}_{n}") for s in ("left", "right") for n in ("hip", "knee", "ankle", "shoulder", "elbow", "wrist")]
    feet = [j("left_ankle"), j("right_ankle")]
    still = np.repeat(walking_figure(1), 120, axis=0)[None].repeat(4, 0)
    s = motion_statistics(still, 30.0, limbs, feet, [0])
    assert s["still_share"] == 1.0 and s["root_travel"]["p90"] == 0.0 and s["floor_range"]["p95"] == 0.0
    assert s["travelling_share"] == 0.0 and np.isnan(s["stepping_share"])
    assert s["still_gesture"]["p90"] == 0.0 and s["still_sway"]["p90"] == 0.0 and s["visible_share"] == 0.0
    waving = still.copy()                        # one hand moves 30 cm up and down, slowly: still, but it gestures
    wave = 0.15 - 0.15 * np.cos(np.linspace(0, 2 * np.pi, 120))
    waving[:, :, j("right_wrist"), 2] += wave[None]
    v = motion_statistics(waving, 30.0, limbs, feet, [0])
    assert v["still_share"] == 1.0 and v["still_gesture"]["p50"] == pytest.approx(0.3, abs=1e-3)
    assert v["still_sway"]["p50"] == 0.0 and v["visible_share"] == 0.0      # 30 cm: under the 40 cm a viewer sees
    waving[:2, :, j("right_wrist"), 2] += wave[None]                        # two windows wave 60 cm: they are seen
    assert motion_statistics(waving, 30.0, limbs, feet, [0])["visible_share"] == 0.5
    walk = np.stack([walking_figure(120, speed=1.3, heading=h) for h in (0.0, 1.0, 2.0)])
    assert root_travel(walk[0][:, 0], 30.0) == pytest.approx(1.3, rel=1e-3)
    w = motion_statistics(walk, 30.0, limbs, feet, [0])
    assert w["still_share"] == 0.0 and w["root_travel"]["p50"] == pytest.approx(1.3, rel=1e-3)
    assert w["travelling_share"] == 1.0 and np.isnan(w["still_gesture"]["p50"])   # no still window to measure
    assert w["visible_share"] == 1.0
    lifting = walk.copy()
    lifting[..., 2] += np.linspace(0, 0.5, 120)[None, :, None]
    assert motion_statistics(lifting, 30.0, limbs, feet, [0])["floor_range"]["p50"] == pytest.approx(0.5, abs=0.02)


def test_the_floor_prior_puts_the_lowest_foot_on_one_floor():
    import torch

    from mas_engine.priors import on_floor
    from rigs.keypoints import HUMAN16

    from conftest import walking_figure

    X = torch.tensor(walking_figure(60))[None].float()
    feet = [HUMAN16.index("left_ankle"), HUMAN16.index("right_ankle")]
    bob = X.clone()
    bob[..., 2] += 0.3 * torch.sin(torch.linspace(0, 6, 60))[None, :, None]   # floats up and sinks
    low = on_floor(bob, feet)[..., feet, 2].amin(-1)
    assert (low - low[:, :1]).abs().max() < 1e-6
    pose = on_floor(bob, feet)
    assert torch.allclose(pose - pose[..., :1, :], bob - bob[..., :1, :], atol=1e-6)   # the pose itself is unchanged


def test_motion_statistics_2d_knows_a_still_pose_a_walk_and_a_glide():
    """Known answers: a still pose is 100% still and never travels; a 2D walk whose standing foot
    stays put while the body moves at 1 m/s plants a foot in its travelling frames; the same body
    with both feet carried along (a glide) plants none."""
    from mas_engine.metrics import motion_statistics_2d

    F, fps = 90, 30.0
    t = np.arange(F) / fps
    still = np.zeros((4, F, 3, 2))
    still[:, :, 1:] = [[0.1, -0.9], [-0.1, -0.9]]                      # root, two feet
    s = motion_statistics_2d(still, fps, feet=[1, 2], root=0)
    assert s["still_share"] == 1.0 and s["travelling_share"] == 0.0 and np.isnan(s["planted_share_p50"])

    walk = np.zeros((1, F, 3, 2))
    walk[0, :, 0, 0] = 1.0 * t                                         # the body: 1 m/s
    step = 0.5                                                         # each foot stands 0.5 s, then swings 0.5 s
    for k, phase in ((1, 0.0), (2, step)):
        p = (t + phase) % (2 * step)
        base = np.floor((t + phase) / (2 * step)) * 2 * step - phase   # when this foot last set down
        stand = p < step
        walk[0, :, k, 0] = np.where(stand, base + step, base + step + 2 * (p - step))  # stands, then swings at 2 m/s
        walk[0, :, k, 1] = -0.9
    s = motion_statistics_2d(walk, fps, feet=[1, 2], root=0)
    assert s["travelling_share"] == 1.0 and s["planted_share_p50"] > 0.8 and s["planting_windows_share"] == 1.0
    glide = np.zeros((1, F, 3, 2))
    glide[0, :, :, 0] = t[:, None]
    glide[0, :, 1:, 1] = -0.9
    s = motion_statistics_2d(glide, fps, feet=[1, 2], root=0)
    assert s["travelling_share"] == 1.0 and s["planted_share_p50"] == 0.0 and s["planting_windows_share"] == 0.0
