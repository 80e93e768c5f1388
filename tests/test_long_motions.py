"""Any length, loops and constraints: windows that cover the motion, a blend that is exact where
the windows agree, constraints that are met, seams measured on the shipped model."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mas_engine import constraints as C
from mas_engine.catalogue import shipped_models
from mas_engine.checkpoint import load_checkpoint
from mas_cli.cli import main
from mas_engine.errors import MasError
from mas_engine.metrics import loop_closure, seam_ratio
from mas_engine.motion_io import load_motion
from mas_engine.sampler import MasSettings, sample_mas, sample_mas_batch, window_plans
from mas_engine.windows import plan_staggered, plan_windows, windowed_denoiser
from rigs.keypoints import HUMAN16

from conftest import walking_figure


@pytest.mark.parametrize("frames, loop", [(48, False), (49, False), (200, False), (1800, False), (60, True), (30, True), (333, True)])
def test_windows_cover_every_frame_within_the_models_length(frames, loop):
    plan = plan_windows(frames, 48, 8, loop, align=2)
    assert plan.index.shape[1] <= 48 and (plan.weight > 0).all()
    covered = torch.zeros(frames).index_add_(0, plan.index.flatten(), plan.weight.flatten())
    assert (covered > 0.5).all()
    if loop:      # every window is shorter than the loop, and some window runs over the seam
        assert plan.index.shape[1] < frames and any((w[1:] < w[:-1]).any() for w in plan.index)
        assert len(plan.joins()) == len(plan)
    elif frames > 48:
        assert plan.index[0, 0] == 0 and plan.index[-1, -1] == frames - 1 and len(plan.joins()) == len(plan) - 1


def test_windowed_blend_is_exact_where_windows_agree():
    """A 'model' that returns its input: whatever the windows and weights, the blend gives x_t back."""
    plan = plan_windows(200, 48, 8, False, 2)
    x = torch.randn(3, 200, 16, 2)
    denoise = windowed_denoiser(lambda xw, t: xw, plan, 16, 0, torch.ones(20))
    assert torch.allclose(denoise(x, 5), x, atol=1e-6)
    assert torch.allclose(denoise(x, 5), x, atol=1e-6)     # later steps centre windows: exact at alpha_bar 1


def test_windows_work_on_their_own_at_high_noise_and_blend_at_low_noise():
    coupled, solo = plan_windows(400, 48, 8, False, 2), plan_windows(400, 48, 0, False, 2)
    assert len(solo) == 9 < len(coupled)                   # the fewest windows that cover the motion
    seen = []

    def model(xw, t):
        seen.append((int(t[0]), xw.shape[0]))
        return xw
    denoise = windowed_denoiser(model, coupled, 16, 0, torch.ones(20), solo=solo, solo_from=6)
    x = torch.randn(2, 400, 16, 2)
    for t in (9, 6, 5, 0):
        assert torch.allclose(denoise(x, t), x, atol=1e-6)
    assert seen == [(9, 2 * len(solo)), (6, 2 * len(solo)), (5, 2 * len(coupled)), (0, 2 * len(coupled))]


@pytest.mark.parametrize("frames", [121, 200, 901, 1800])
def test_blended_windows_are_centred_on_the_seams_of_the_solo_windows(frames):
    """A long motion's blended windows mend each place where two solo windows met in their middle,
    and meet each other inside a solo window, away from those places."""
    blended, solo = plan_staggered(frames, 100, 120, align=2)
    assert solo.index.shape[1] == 100 and blended.index.shape[1] == 120
    for plan in (blended, solo):
        assert (plan.weight > 0).all() and set(plan.index.flatten().tolist()) == set(range(frames))
    starts = blended.index[:, 0].tolist()
    for seam in solo.joins():
        assert any(abs(s + 60 - seam) <= 1.5 for s in starts) or seam < 60 or seam > frames - 60
        if frames > 300:                                    # (a short motion's windows overlap almost whole)
            assert all(abs(j - seam) >= 10 for j in blended.joins() if 60 < j < frames - 60)
    x = torch.randn(2, frames, 16, 2)                       # the blend is exact where the windows agree
    assert torch.allclose(windowed_denoiser(lambda xw, t: xw, blended, 16, 0, torch.ones(20))(x, 3), x, atol=1e-6)


def test_a_motion_that_ends_in_a_pose_takes_its_last_frames_from_the_reversed_motion_at_low_noise(tiny_checkpoint):
    """The model's last positions are its least trained: where constraints fix the last frame, the
    last 20 frames fade over to the model's prediction for the motion reversed in time, for the
    lowest 30% of the noise levels only; the frames before them, and every frame at higher noise,
    are as without."""
    from mas_engine.sampler import mas_denoiser
    m = load_checkpoint(tiny_checkpoint)                    # 20 noise levels, 48 frames
    x = torch.randn(2, 48, 16, 2, generator=torch.Generator().manual_seed(0))
    plain, posed = mas_denoiser(m, 48, MasSettings()), mas_denoiser(m, 48, MasSettings(), ends_in_pose=True)
    with torch.no_grad():
        assert torch.equal(plain(x, 6), posed(x, 6))        # 6 of 20: above the lowest 30%
        a, b = plain(x, 5), posed(x, 5)
        reversed_ = m.model(x.flip(1), torch.full((2,), 5)).flip(1)
    assert torch.equal(a[:, :28], b[:, :28]) and not torch.allclose(a[:, -1], b[:, -1])
    assert torch.allclose(b[:, -1], reversed_[:, -1], atol=0.02 * float(reversed_.abs().max()))   # the last frame: nearly all reversed


def test_a_long_motion_that_ends_in_a_pose_takes_its_last_frames_from_its_last_window_reversed(tiny_checkpoint):
    """The same for a motion longer than the model: its last window, reversed in time, gives the
    last 20 frames at the lowest 30% of the noise levels; the rest of the motion is as without."""
    from mas_engine.sampler import mas_denoiser
    m = load_checkpoint(tiny_checkpoint)                    # 20 noise levels, 48 frames
    F = 3 * 48
    x = torch.randn(2, F, 16, 2, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        # a fresh denoiser for each call: at its first call every window is centred on 0
        assert torch.equal(mas_denoiser(m, F, MasSettings())(x, 6), mas_denoiser(m, F, MasSettings(), ends_in_pose=True)(x, 6))
        a, b = mas_denoiser(m, F, MasSettings())(x, 5), mas_denoiser(m, F, MasSettings(), ends_in_pose=True)(x, 5)
        reversed_ = m.model(x[:, F - 48:].flip(1), torch.full((2,), 5)).flip(1)
    assert torch.equal(a[:, :F - 20], b[:, :F - 20]) and not torch.allclose(a[:, -1], b[:, -1])
    assert torch.allclose(b[:, -1], reversed_[:, -1], atol=0.02 * float(reversed_.abs().max()))


def test_a_loops_windows_blend_for_longer_than_a_long_motions(tiny_checkpoint):
    from mas_engine.sampler import mas_denoiser
    m = load_checkpoint(tiny_checkpoint)                    # 20 noise levels, 48 frames
    seen = []
    real = m.model.forward
    m.model.forward = lambda x, t: seen.append((int(t[0]), x.shape[0])) or real(x, t)
    F = 4 * 48
    for loop, coupling in ((False, 0.3), (True, 0.8)):
        settings = MasSettings(loop=loop, window_coupling=0.3, loop_coupling=0.8)
        coupled, solo = window_plans(m, F, settings)
        assert len(solo) < len(coupled)
        denoise = mas_denoiser(m, F, settings)
        edge = int(round(coupling * 20))                    # the lowest noise level that works solo
        seen.clear()
        for t in (19, edge, edge - 1, 0):
            denoise(torch.zeros(1, F, 16, 2), t)
        assert seen == [(19, len(solo)), (edge, len(solo)), (edge - 1, len(coupled)), (0, len(coupled))], (loop, seen)


def test_long_motions_and_loops_from_a_small_model(tiny_checkpoint):
    m = load_checkpoint(tiny_checkpoint)                    # makes 48 frames itself
    long = sample_mas(m, [1, 2], 5 * 48, MasSettings(steps=4, views=3))
    again = sample_mas(m, [2], 5 * 48, MasSettings(steps=4, views=3))
    assert long.joints.shape == (2, 240, 16, 3) and np.isfinite(long.joints).all()
    assert np.allclose(again.joints[0], long.joints[1], atol=1e-5)          # a seed's motion, whatever the batch
    short = sample_mas(m, [3], 40, MasSettings(steps=4, views=3))
    assert short.joints.shape == (1, 40, 16, 3)
    loop = sample_mas(m, [1], 40, MasSettings(steps=4, views=3, loop=True))
    assert loop.joints.shape == (1, 40, 16, 3) and np.isfinite(loop.joints).all()
    with pytest.raises(MasError, match="longer than model"):
        sample_mas(m, [1], int(601 * m.fps), MasSettings(steps=2))


def _as_motion(joints):
    return {"joints": joints, "joint_names": np.array(HUMAN16.joints), "fps": 30.0}


def test_constraints_are_met_within_2_cm(tiny_checkpoint):
    m = load_checkpoint(tiny_checkpoint)
    F = 90
    walk = walking_figure(60)
    cases = {"start": C.start_from(_as_motion(walk), F, HUMAN16, 30.0),
             "end": C.end_at(_as_motion(walk[10:11]), F, HUMAN16, 30.0),
             "path": C.root_path(C.parse_path("0,0 2,0 2,2"), F, HUMAN16, 30.0)}
    keys = np.full((F, 16, 3), np.nan)
    keys[20], keys[70, :3] = walk[5], walk[40, :3]
    cases["keys"] = C.keyframes({"joints": keys, "joint_names": np.array(HUMAN16.joints)}, F, HUMAN16, 30.0)
    cases["start + end"] = cases["start"].merge(cases["end"])
    for name, c in cases.items():
        x = sample_mas(m, [4], F, MasSettings(steps=5, views=3), constraints=c).joints[0]
        err = np.abs(x - c.targets)[c.mask]
        assert err.max() < 0.02, (name, err.max())
        if name == "path":      # walked at constant speed (4 m over 90 frames), the body carried along
            from mas_engine.metrics import bone_length_variation
            free = sample_mas(m, [4], F, MasSettings(steps=5, views=3)).joints[0]
            assert bone_length_variation(x, HUMAN16) <= bone_length_variation(free, HUMAN16) + 0.01
            step = np.linalg.norm(np.diff(x[:, 0, :2], axis=0), axis=1)
            assert np.median(step) == pytest.approx(4 / 89, abs=1e-4) and step.max() < 4 / 89 + 1e-4


def test_a_start_goes_on_with_its_velocity_and_then_blends_into_the_motion_as_made():
    from mas_engine.postprocess import blend_in, start_run
    walk = walking_figure(60)
    made = np.concatenate([walk[:3], np.repeat(walk[2:3], 57, 0) + 0.03])   # stops dead after the given frames
    out = blend_in(made, 2, 18)
    assert np.array_equal(out[:3], made[:3]) and np.array_equal(out[21:], made[21:])
    acc = lambda x: np.linalg.norm(np.diff(x, n=2, axis=0), axis=-1).max(-1)   # noqa: E731  per frame, worst joint
    assert acc(out)[:25].max() < 0.5 * acc(made)[:25].max()
    v_given = walk[2] - walk[1]
    assert np.abs((out[3] - out[2]) - v_given).max() < 0.25 * np.abs(v_given).max()   # it goes on at the given velocity
    far = list(range(30, 55))
    assert seam_ratio(out, [0, 2], far, 30.0, 0.5, given=[0, 1, 2]) < 0.3 * seam_ratio(made, [0, 2], far, 30.0, 0.5, given=[0, 1, 2])
    keep = np.zeros(made.shape, bool)
    keep[:, 0] = True                                                       # a root path: the root stays
    assert np.array_equal(blend_in(made, 2, 18, keep)[:, 0], made[:, 0])
    # which constraints start with a velocity: a start (3 frames), not an end pose or a root path alone
    start, F = C.start_from(_as_motion(walk), 90, HUMAN16, 30.0), 90
    path = C.root_path(C.parse_path("0,0 2,0"), F, HUMAN16, 30.0)
    assert start_run(start.mask) == 3 and start_run(start.merge(path).mask) == 3
    assert start_run(path.mask) == 0 and start_run(C.end_at(_as_motion(walk[:1]), F, HUMAN16, 30.0).mask) == 0


def test_a_start_with_nothing_fixed_after_it_walks_on_and_is_never_pulled_back():
    from mas_engine.postprocess import blend_in
    walk = walking_figure(60)                                               # 1.2 m/s along a heading
    made = np.concatenate([walk[:3], np.repeat(walk[2:3], 57, 0) + 0.03])   # stops dead after the given frames
    T = 30
    out = blend_in(made, 2, T, carry=0)
    assert np.array_equal(out[:3], made[:3])
    heading = (walk[2, 0, :2] - walk[1, 0, :2]) / np.linalg.norm(walk[2, 0, :2] - walk[1, 0, :2])
    along = (out[2:, 0, :2] - out[2, 0, :2]) @ heading
    assert np.all(np.diff(along) > -1e-9)                                  # the root never comes back
    v_given = walk[2, 0, :2] - walk[1, 0, :2]
    assert np.linalg.norm((out[3, 0, :2] - out[2, 0, :2]) - v_given) < 0.1 * np.linalg.norm(v_given)
    # the offset where the start ends plus half its velocity over the blend: ground covered, kept to the end
    at_start = made[2, 0, :2] - (2 * made[3, 0, :2] - made[4, 0, :2])
    assert np.allclose(out[-1, 0, :2] - made[-1, 0, :2], at_start + v_given * T / 2, atol=1e-9)
    rel = lambda x: x - x[:, :1]                                            # noqa: E731  the pose about the root
    assert np.abs(rel(out)[3 + T:] - rel(made)[3 + T:]).max() < 1e-9
    assert np.abs(out[3 + T:, :, 2] - made[3 + T:, :, 2]).max() < 1e-9      # the height comes back
    acc = lambda x: np.linalg.norm(np.diff(x, n=2, axis=0), axis=-1).max(-1)   # noqa: E731
    assert acc(out)[1:].max() < 0.5 * acc(blend_in(made, 2, 18))[1:].max()     # gentler than pulling it back


def test_the_frames_next_to_a_given_pose_are_smoothed_and_the_rest_left_as_made():
    from mas_engine.postprocess import SMOOTH_IN_S, smooth_near_poses
    rng = np.random.default_rng(0)
    made = walking_figure(90) + rng.normal(0, 0.01, (90, 16, 3))           # a shaky motion
    posed = np.zeros(90, bool)
    posed[:3] = posed[-1] = True                                            # a start and an end pose
    out = smooth_near_poses(made, posed, 30.0)
    assert np.array_equal(out[posed], made[posed])
    reach = int(np.ceil(SMOOTH_IN_S[2] * 30)) + 4
    assert np.abs(out[reach:-reach] - made[reach:-reach]).max() < 1e-12
    acc = lambda x: np.linalg.norm(np.diff(x, n=2, axis=0), axis=-1).mean(-1)   # noqa: E731
    assert acc(out)[3:9].mean() < 0.5 * acc(made)[3:9].mean()              # after the start
    assert acc(out)[-9:-3].mean() < 0.5 * acc(made)[-9:-3].mean()          # before the end
    keep = np.zeros(made.shape, bool)
    keep[:, 0] = True
    assert np.array_equal(smooth_near_poses(made, posed, 30.0, keep)[:, 0], made[:, 0])
    key = np.zeros(90, bool)
    key[45] = True                                                          # a key inside: left alone
    assert np.array_equal(smooth_near_poses(made, key, 30.0), made)


def test_a_long_motion_is_smoothed_where_its_windows_met_and_nowhere_else():
    from mas_engine.postprocess import SMOOTH_JOINS_S, smooth_joins
    from mas_engine.sampler import window_joins
    rng = np.random.default_rng(1)
    made = walking_figure(150) + rng.normal(0, 0.002, (150, 16, 3))
    made[75:] += (np.arange(75) / 30.0 * 1.5)[:, None, None] * np.array([0.0, 1.0, 0.0])   # veers at a join
    far = [f for f in range(10, 140) if abs(f - 75) > 15]
    out = smooth_joins(made, [75], 30.0)
    assert seam_ratio(made, [75], far, 30.0, 0.5) > 2.0 and seam_ratio(out, [75], far, 30.0, 0.5) < 1.2
    reach = int(np.ceil(SMOOTH_JOINS_S[2] * 30)) + 4
    assert np.abs(out[:75 - reach] - made[:75 - reach]).max() < 1e-12
    assert np.abs(out[75 + reach:] - made[75 + reach:]).max() < 1e-12
    m = load_checkpoint("human")
    assert window_joins(m, 120, MasSettings()) == [] and window_joins(m, 120, MasSettings(loop=True)) == []
    joins = window_joins(m, 900, MasSettings())
    assert len(joins) >= 12 and all(0 < j < 900 for j in joins)


def test_the_seam_measure_can_leave_out_what_the_given_frames_do_themselves():
    walk = walking_figure(60)
    jerky = walk.copy()
    jerky[1] += 0.05                                                        # the source's own last frames jerk
    far = list(range(30, 55))
    assert seam_ratio(jerky, [0, 2], far, 30.0, 0.5) > 3
    assert seam_ratio(jerky, [0, 2], far, 30.0, 0.5, given=[0, 1, 2]) > 3      # frame 2's acceleration has frame 3 in it
    jerky = walk.copy()
    jerky[0] += 0.05                                                        # in frames 0-2's acceleration only
    assert seam_ratio(jerky, [0, 2], far, 30.0, 0.5) > 3
    assert seam_ratio(jerky, [0, 2], far, 30.0, 0.5, given=[0, 1, 2]) == pytest.approx(seam_ratio(walk, [0, 2], far, 30.0, 0.5), rel=0.05)


def test_a_continued_motion_keeps_the_skeleton_of_the_pose_it_starts_from(tiny_checkpoint):
    from mas_engine.priors import constraint_lengths
    m = load_checkpoint(tiny_checkpoint)
    F, parents = 60, HUMAN16.parents
    big = walking_figure(30) * 1.3                  # a subject 30% larger than the walk: other bone lengths
    bones = lambda x: np.array([np.linalg.norm(x[..., j, :] - x[..., p, :], axis=-1) for j, p in enumerate(parents) if p >= 0])  # noqa: E731
    c = C.start_from(_as_motion(big), F, HUMAN16, 30.0)
    known = constraint_lengths(torch.from_numpy(c.targets), torch.from_numpy(c.mask.astype(float)), parents)
    assert torch.isnan(known[0]) and np.allclose(known.numpy()[1:], bones(big[-3:]).mean(1))
    path = C.root_path(C.parse_path("0,0 1,0"), F, HUMAN16, 30.0)          # no bone fixed at both ends
    assert torch.isnan(constraint_lengths(torch.from_numpy(path.targets), torch.from_numpy(path.mask.astype(float)),
                                          parents)).all()
    # MAS's 3D motion has the start pose's bones in every frame, not the model's own (this random
    # model's motion alternates wildly, so look before the final band-stop that removes it)
    x = sample_mas_batch(m, [3], F, MasSettings(steps=5, views=3), torch.device("cpu"), constraints=c)[0][0]
    free = sample_mas_batch(m, [3], F, MasSettings(steps=5, views=3), torch.device("cpu"))[0][0]
    pose = bones(big[-3:]).mean(1, keepdims=True)
    beyond = int(4 * c.falloff)           # past where the pull bends joint by joint
    ratio = bones(x[beyond:].numpy() * m.scale) / pose
    assert np.abs(ratio - 1).max() < 5e-3, ratio.min()
    assert np.abs(bones(free[beyond:].numpy() * m.scale) / pose - 1).max() > 0.1     # the model's own differ


def test_constraints_say_what_is_wrong():
    walk = _as_motion(walking_figure(20))
    with pytest.raises(MasError, match="skeleton"):
        C.start_from(dict(walk, joint_names=np.array(HUMAN16.joints[::-1])), 60, HUMAN16, 30.0)
    with pytest.raises(MasError, match="fps"):
        C.start_from(dict(walk, fps=60.0), 60, HUMAN16, 30.0)
    keys = np.full((100, 16, 3), np.nan)
    keys[95] = walk["joints"][0]
    with pytest.raises(MasError, match="key at frame 95"):
        C.keyframes({"joints": keys, "joint_names": walk["joint_names"]}, 60, HUMAN16, 30.0)
    with pytest.raises(MasError, match="NaN"):
        C.keyframes({"joints": keys, "joint_names": walk["joint_names"], "mask": np.ones((100, 16), bool)}, 100, HUMAN16, 30.0)
    with pytest.raises(MasError, match="no joint is fixed"):
        C.keyframes({"joints": np.full((5, 16, 3), np.nan), "joint_names": walk["joint_names"]}, 60, HUMAN16, 30.0)
    with pytest.raises(MasError, match="x,y"):
        C.parse_path("0,0 1")
    with pytest.raises(MasError, match="goes somewhere"):
        C.root_path(np.zeros((3, 2)), 60, HUMAN16, 30.0)
    with pytest.raises(MasError, match="fewer than half"):
        C.end_at(_as_motion(np.full((1, 16, 3), np.nan)), 60, HUMAN16, 30.0)


def test_an_unknown_joint_of_a_start_or_end_pose_is_left_free():
    """A pose read from a rig may not know every keypoint (NaN): that joint is free, and its
    target is a number (a NaN target would turn the whole motion into NaN through the pull)."""
    pose = np.random.default_rng(0).normal(size=(3, 16, 3))
    pose[:, 5] = np.nan
    for c in (C.start_from(_as_motion(pose), 60, HUMAN16, 30.0), C.end_at(_as_motion(pose), 60, HUMAN16, 30.0)):
        assert np.isfinite(c.targets).all()
        fixed = c.mask.any(-1).any(0)
        assert not fixed[5] and fixed[[0, 1, 4, 6]].all()


def test_cli_long_loop_continue_keys_and_path(tiny_checkpoint, tmp_path):
    base = ["generate", "--model", str(tiny_checkpoint), "--steps", "3", "--views", "2", "--device", "cpu"]
    assert main(base + ["--seconds", "5", "--out", str(tmp_path / "long")]) == 0
    assert main(base + ["--seconds", "1", "--floor", "--out", str(tmp_path / "floor")]) == 0   # on_floor: test_metrics
    assert load_motion(tmp_path / "floor" / "tiny_seed00000.npz")["joints"].shape == (30, 16, 3)
    assert load_motion(tmp_path / "long" / "tiny_seed00000.npz")["joints"].shape == (150, 16, 3)
    assert main(base + ["--seconds", "1.5", "--loop", "--out", str(tmp_path / "loop")]) == 0
    m = load_motion(tmp_path / "loop" / "tiny_seed00000.npz")
    assert m["joints"].shape == (46, 16, 3) and bool(m["loop"])      # 45 frames made even for the band-stop
    first = tmp_path / "long" / "tiny_seed00000.npz"
    assert main(base + ["--seconds", "2", "--continue", str(first), "--out", str(tmp_path / "cont")]) == 0
    cont = load_motion(tmp_path / "cont" / "tiny_seed00000.npz")["joints"]
    before = load_motion(first)["joints"]
    assert cont.shape == (150 + 60, 16, 3)
    assert np.array_equal(cont[:147], before[:147]) and np.abs(cont[147:150] - before[147:]).max() < 0.02
    keys = np.full((30, 16, 3), np.nan, np.float32)
    keys[29] = before[0]
    np.savez(tmp_path / "keys.npz", joints=keys, joint_names=np.array(HUMAN16.joints), fps=np.float32(30))
    assert main(base + ["--seconds", "1", "--keys", str(tmp_path / "keys.npz"), "--out", str(tmp_path / "keys")]) == 0
    k = load_motion(tmp_path / "keys" / "tiny_seed00000.npz")["joints"]
    assert np.abs(k[29] - before[0]).max() < 0.02
    assert main(base + ["--seconds", "1", "--path", "0,0 1,0", "--out", str(tmp_path / "path")]) == 0
    p = load_motion(tmp_path / "path" / "tiny_seed00000.npz")["joints"]
    assert np.abs(p[[0, -1], 0, :2] - [[0, 0], [1, 0]]).max() < 0.02
    assert main(base + ["--seconds", "1", "--loop", "--start-from", str(first), "--out", str(tmp_path / "x")]) == 2
    assert main(base + ["--seconds", "1", "--keys", str(tmp_path / "keys.npz"), "--seconds", "0.5",
                        "--out", str(tmp_path / "x")]) == 2           # a key past the end
    assert not (tmp_path / "x").exists()


needs_human = pytest.mark.skipif("human" not in shipped_models(), reason="the shipped human model is not installed")


def test_loop_closure_on_known_loops():
    # a point going round a circle at constant speed: every step alike, the seam too
    f = np.arange(60) * 2 * np.pi / 60
    circle = np.stack([np.cos(f), np.sin(f), 0 * f], -1)[:, None, :]          # 60 x 1 x 3
    c = loop_closure(circle)
    assert c["step"] == pytest.approx(c["step_p95"], rel=1e-6)
    # with noise, about nine inside frames in ten pass both 95th percentiles; a jump at the seam does not
    rng = np.random.default_rng(0)
    noisy = circle + rng.normal(0, 0.002, circle.shape)
    c = loop_closure(noisy)
    assert 0.85 < c["inside_within_p95"] < 0.95
    cut = noisy.copy()
    cut[-5:] = cut[-6]                                                       # stops short of closing
    c = loop_closure(cut)
    assert c["step"] > 2 * c["step_p95"]


@needs_human
def test_loops_close_and_long_motions_have_no_seam_on_the_shipped_model():
    m = load_checkpoint("human")
    fast = MasSettings(steps=25)
    loops = sample_mas(m, [11, 12, 13, 14], 90, MasSettings(steps=25, loop=True)).joints
    plain = sample_mas(m, [11, 12, 13, 14], 90, fast).joints
    closed = [loop_closure(x) for x in loops]
    opened = [loop_closure(x) for x in plain]
    # a loop's seam is like any other frame step; an ordinary motion's end-to-start jump is not
    assert np.median([c["step"] / c["step_p95"] for c in closed]) < 1.5
    assert np.median([c["velocity_change"] / c["velocity_change_p95"] for c in closed]) < 1.5
    assert np.median([c["step"] / c["step_p95"] for c in opened]) > 3 * np.median([c["step"] / c["step_p95"] for c in closed])
    long = sample_mas(m, [21, 22], 360, fast).joints
    blended, solo = window_plans(m, 360, fast)
    joins = blended.joins() + solo.joins()
    far = [f for f in range(15, 345) if min(abs(f - j) for j in joins) > 15]
    ratios = [seam_ratio(x, joins, far, m.fps, span_s=0.5) for x in long]
    assert np.median(ratios) < 1.5, ratios


# --- Loops that travel: a walk cycle that repeats while moving on ---

def _walk_loop(frames=50):
    """walking_figure's gait has 1.8 strides a second: 50 frames at 30 fps hold 3 whole strides, so the
    frame after the last is the first moved on by 1.2 m/s x 50 / 30 s along its heading."""
    walk = walking_figure(frames)
    travel = 1.2 * frames / 30.0 * np.array([np.cos(0.3), np.sin(0.3), 0.0])
    assert np.allclose(walking_figure(frames + 1)[-1], walk[0] + travel)
    return walk, travel


def test_loop_travel_reads_the_travel_per_period_off_the_seam():
    from mas_engine.postprocess import travel_per_period
    from mas_engine.windows import loop_travel
    walk, travel = _walk_loop()
    assert np.abs(travel_per_period(walk, HUMAN16.root) - travel).max() < 1e-4
    for k in (1, 4):
        assert np.abs(loop_travel(walk[:, 0], k=k) - travel).max() < 1e-3
    assert np.abs(loop_travel(torch.from_numpy(walk[:, 0]), k=4).numpy() - travel).max() < 1e-3   # torch too
    f = np.arange(60) * 2 * np.pi / 60                    # a closed loop, a sway of 5 cm: no travel
    sway = 0.05 * np.stack([np.cos(f), np.sin(f), 0 * f], -1)
    assert np.abs(loop_travel(sway, k=1)).max() < 1e-4 and np.abs(loop_travel(sway, k=4)).max() < 2e-3


def test_a_travelling_loops_seam_and_band_stop_go_on_with_the_walk():
    from mas_engine.postprocess import close_loop, remove_alternation, travel_per_period
    walk, travel = _walk_loop()
    c, jumped = loop_closure(walk, travel), loop_closure(walk)
    assert c["step"] <= c["step_p95"] and c["velocity_change"] <= c["velocity_change_p95"]
    assert jumped["step"] > 10 * jumped["step_p95"]                        # read as a closed loop it jumps back
    # the band-stop wraps round the seam: with the travel taken out first it removes only the alternation
    zigzag = walk + 0.01 * (-1.0) ** np.arange(50)[:, None, None]
    assert np.abs(remove_alternation(zigzag, True, travel) - walk).max() < 1e-3
    assert np.abs(remove_alternation(zigzag, True) - walk).max() > 0.05
    # a seam the sampler missed (the hands 10 cm off one period on) is spread over the loop
    missed = walk.copy()
    hands = [HUMAN16.index("left_wrist"), HUMAN16.index("right_wrist")]
    missed[:, hands, 2] += 0.1 * np.arange(50)[:, None] / 50
    c = loop_closure(missed, travel)
    assert c["step"] > c["step_p95"] and c["velocity_change"] > 1.2 * c["velocity_change_p95"]
    closed = close_loop(missed, travel_per_period(missed, HUMAN16.root))
    c = loop_closure(closed, travel)
    assert c["step"] <= c["step_p95"] and c["velocity_change"] <= c["velocity_change_p95"]
    assert np.abs(close_loop(walk, travel) - walk).max() < 2e-3                       # a closed walk stays
    # a loop in place: closed with no travel, the same way
    circle = np.stack([np.cos(np.arange(60) * 2 * np.pi / 60), np.sin(np.arange(60) * 2 * np.pi / 60),
                       np.zeros(60)], -1)[:, None, :].repeat(2, 1)
    circle = circle + np.random.default_rng(0).normal(0, 0.002, circle.shape)   # steps not all alike
    opened = circle.copy()
    opened[:, 1, 2] += 0.3 * np.arange(60) / 60                           # one joint climbs 30 cm a period
    c = loop_closure(opened)
    assert c["step"] > c["step_p95"]
    c = loop_closure(close_loop(opened, np.zeros(3)))
    assert c["step"] <= c["step_p95"] and c["velocity_change"] <= c["velocity_change_p95"]
    assert np.abs(close_loop(circle, np.zeros(3)) - circle).max() < 0.01


def test_a_travelling_loop_travels_steadily():
    """A loop that walks slowly mid-period and fast across its seam (what the model tends to make:
    standing, then sliding) is made to travel steadily, and then passes the seam test; a walk whose
    travel is already steady keeps its gait."""
    from mas_engine.postprocess import steady_travel, travel_per_period
    F, root = 250, HUMAN16.root                             # 8.3 s: the walk's 1.8 Hz gait repeats 15 times
    walk = walking_figure(F)
    travel = travel_per_period(walk, root)
    assert np.abs(steady_travel(walk, root, travel, 30.0) - walk).max() < 1e-3
    f = np.arange(F)
    heading = walk[-1, root, :2] - walk[0, root, :2]
    heading /= np.linalg.norm(heading)
    lurch = walk.copy()                                     # the same gait, standing mid-period, fast at the seam
    theta = 2 * np.pi * f / F                               # speed ~ 1 + 0.7 (cos + cos 2 + cos 3): 3.1x at the seam
    wander = 0.7 * np.linalg.norm(travel) * sum(np.sin(k * theta) / (2 * np.pi * k) for k in (1, 2, 3))
    lurch[..., :2] += wander[:, None, None] * heading
    c = loop_closure(lurch, travel)
    assert c["step"] > c["step_p95"]                        # the seam is the fastest frame: it fails
    steady = steady_travel(lurch, root, travel, 30.0)
    assert np.abs(steady - walk).max() < 1e-3               # the walk back, steady
    c = loop_closure(steady, travel)
    assert c["step"] <= c["step_p95"] and c["velocity_change"] <= c["velocity_change_p95"]


def test_windows_round_a_travelling_loops_end_see_the_walk_go_on():
    """A 'model' that fits a straight line through each window: a steady walk in 2D (a straight line
    in every view) comes back exactly when the frames past the seam are moved on by one period's
    travel, and bent at the seam when they are not."""
    F = 64
    plan = plan_windows(F, 48, 8, True, 2)
    frames = torch.arange(F, dtype=torch.float32)
    x = (torch.tensor([0.03, -0.01]) * frames[:, None])[None, :, None, :].expand(3, F, 16, 2).contiguous()
    per_period = torch.tensor([0.03, -0.01]) * F

    def line(xw, t):                                   # least squares along each window's frames
        s = torch.linspace(-1, 1, xw.shape[1])[None, :, None, None]
        mean = xw.mean(1, keepdim=True)
        return mean + s * ((xw - mean) * s).sum(1, keepdim=True) / (s * s).sum()

    moved = windowed_denoiser(line, plan, 16, 0, torch.ones(20), moved_on=lambda: per_period.expand(3, F, 16, 2))
    still = windowed_denoiser(line, plan, 16, 0, torch.ones(20))
    for _ in range(2):                                 # the first step has no travel yet, the second has
        a, b = moved(x, 5), still(x, 5)
    assert torch.allclose(a, x, atol=1e-4)
    assert (b - x).abs().max() > 0.1


def test_travelling_loops_from_a_small_model_the_cli_and_the_rig(tiny_checkpoint, tmp_path):
    from mas_app import pipeline
    from mas_engine.motion_io import Motion
    from mas_engine.postprocess import travel_per_period
    m = load_checkpoint(tiny_checkpoint)
    settings = MasSettings(steps=4, views=3, loop=True, loop_travel=True)
    x = sample_mas(m, [1], 40, settings).joints
    assert x.shape == (1, 40, 16, 3) and np.isfinite(x).all()
    assert np.array_equal(sample_mas(m, [1], 40, MasSettings(steps=4, views=3, loop=True)).joints,
                          sample_mas(m, [1], 40, MasSettings(steps=4, views=3, loop=True, loop_travel=False)).joints)
    base = ["generate", "--model", str(tiny_checkpoint), "--steps", "3", "--views", "2", "--device", "cpu"]
    assert main(base + ["--seconds", "1.5", "--loop-travel", "--out", str(tmp_path / "walk")]) == 0
    saved = load_motion(tmp_path / "walk" / "tiny_seed00000.npz")
    assert bool(saved["loop"]) and saved["loop_travel"].shape == (3,) and saved["loop_travel"][2] == 0
    assert np.allclose(saved["loop_travel"], travel_per_period(saved["joints"], 0), atol=1e-5)
    # on a rig: one period on, the first pose moved on by the travel (in place: not moved)
    walk, travel = _walk_loop()
    motion = Motion(walk.astype(np.float32), 30.0, HUMAN16, {"loop": True, "loop_travel": travel})
    track, _ = pipeline.rig_motion(motion, close_loop=True)
    assert np.allclose(track.root[-1], track.root[0] + travel, atol=1e-6)
    assert np.array_equal(track.rotations[-1], track.rotations[0])
    track, _ = pipeline.rig_motion(motion, close_loop=True, in_place=True)
    assert np.allclose(track.root[-1], track.root[0], atol=1e-6)


@needs_human
def test_travelling_loops_close_on_the_shipped_model():
    from mas_engine.postprocess import travel_per_period
    m = load_checkpoint("human")
    loops = sample_mas(m, [11, 12, 13, 14], 90, MasSettings(steps=25, loop=True, loop_travel=True)).joints
    closed = [loop_closure(x, travel_per_period(x, m.layout.root)) for x in loops]
    assert max(c["step"] / c["step_p95"] for c in closed) < 1.5
    assert max(c["velocity_change"] / c["velocity_change_p95"] for c in closed) < 1.5
    # most of them travel (10-13 cm a period at 25 steps), and read as loops that return to where
    # they started, those jump back at the seam
    moving = [x for x in loops if np.linalg.norm(travel_per_period(x, m.layout.root)) > 0.05]
    assert len(moving) >= 2
    assert all(loop_closure(x)["step"] > 2 * loop_closure(x)["step_p95"] for x in moving)


def test_windows_shorter_than_the_model(tiny_checkpoint):
    """MasSettings.window_frames: a motion longer than the model is made in solo windows of at most
    that many frames (and blended ones up to twice the overlap longer; a loop, and a motion the
    model makes in one piece, are not affected); a length too short for the model's tokens is
    refused before any work."""
    m = load_checkpoint(tiny_checkpoint)                    # makes 48 frames itself
    seen = []
    real = m.model.forward
    m.model.forward = lambda x, t: seen.append(x.shape[1]) or real(x, t)
    x = sample_mas(m, [1], 100, MasSettings(steps=2, views=2, window_frames=24)).joints
    assert x.shape == (1, 100, 16, 3) and np.isfinite(x).all() and set(seen) == {24, 48}   # blended: 24 + 2 x 0.5 s
    seen.clear()
    sample_mas(m, [1], 100, MasSettings(steps=2, views=2, window_frames=500))        # the model's 48 less the overlap
    sample_mas(m, [1], 40, MasSettings(steps=2, views=2, window_frames=32))          # one piece
    sample_mas(m, [1], 60, MasSettings(steps=2, views=2, window_frames=8, loop=True))  # a loop: the model's rule
    assert set(seen) == {32, 40, 48}                         # never 8: the loop kept the model's length
    for bad in (4, 2.5, "long"):
        with pytest.raises(MasError, match="window length"):
            sample_mas(m, [1], 100, MasSettings(steps=2, window_frames=bad))


def test_loop_travel_without_loop_is_refused(tiny_checkpoint):
    with pytest.raises(MasError, match="set loop=True"):
        sample_mas(load_checkpoint(tiny_checkpoint), [1], 40, MasSettings(steps=2, loop_travel=True))
