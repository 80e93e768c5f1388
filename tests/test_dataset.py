import numpy as np
import pytest
import torch

from mas_engine.dataset import (CONFIDENCE_THRESHOLD, DetectorNoise, MonocularConfig, MotionData2D,
                                build_monocular_set, project_window, save_monocular_set, smooth_detections)
from mas_engine.errors import MasError
from rigs.keypoints import HUMAN16
from conftest import walking_figure


def clean_cfg(**kw):
    return MonocularConfig(noise=DetectorNoise(visible_std=0.0, occlusion_prob=0.0), **kw)


def test_every_window_is_one_perspective_view_and_keeps_the_trajectory():
    clips = [(f"walk{i}", walking_figure(150, heading=i), 30.0) for i in range(6)]
    built = build_monocular_set(clips, HUMAN16, clean_cfg(min_frames=40, max_frames=60, val_fraction=0.0))
    pose, length = built["train_pose"], built["train_length"]
    assert pose.shape[1:] == (60, 16, 3) and len(pose) == len(length) > 6
    assert built["val_pose"].shape[0] == 0
    assert ((length >= 40) & (length <= 60)).all()
    assert (pose[0, length[0]:] == 0).all()                # padding is zero
    # confidences of clean data are near 1
    valid = np.arange(60)[None] < length[:, None]
    assert pose[..., 2][valid].min() > 0.5
    # the root moves in 2D (a static camera sees the walk travel) unless the camera looks along it
    travel = np.array([np.linalg.norm(p[l - 1, 0, :2] - p[0, 0, :2]) for p, l in zip(pose, length)])
    assert np.median(travel) > 0.3
    # the global scale is the RMS of the confident coordinates
    uv = pose[..., :2][valid]
    assert built["meta"]["scale"] == pytest.approx(float(np.sqrt((uv.astype(np.float64) ** 2).mean())), rel=1e-5)


def test_project_window_is_the_camera_projection_and_in_place_removes_the_root():
    X = walking_figure(60)
    uv = project_window(X, azimuth=0.0, elevation=0.0, distance=6.0)
    # camera on +X looking at the mean root: the image x axis is world +Y, y is up (Z)
    centred = X - X[:, :1].mean(0, keepdims=True)
    depth = 6.0 - centred[..., 0]
    np.testing.assert_allclose(uv[..., 0], 6.0 * centred[..., 1] / depth, atol=1e-9)
    np.testing.assert_allclose(uv[..., 1], 6.0 * centred[..., 2] / depth, atol=1e-9)
    still = project_window(X, 1.0, 0.2, 6.0, root_motion=False)
    np.testing.assert_allclose(still[:, 0], 0.0, atol=1e-12)


def test_bad_clips_are_reported_not_fatal():
    good = walking_figure(90)
    nan = good.copy()
    nan[10, 3, 1] = np.nan
    clips = [("good", good, 30.0), ("nan", nan, 30.0), ("empty", np.zeros((0, 16, 3)), 30.0),
             ("short", good[:10], 30.0), ("wrong", np.zeros((50, 17, 3)), 30.0)]
    built = build_monocular_set(clips, HUMAN16, clean_cfg(val_fraction=0.0))
    reasons = dict(built["rejected"])
    assert set(reasons) == {"nan", "empty", "short", "wrong"}
    assert "NaN" in reasons["nan"] and "no frames" in reasons["empty"]
    assert "shorter than" in reasons["short"] and "17" in reasons["wrong"]
    with pytest.raises(MasError, match="no usable training windows"):
        build_monocular_set(clips[1:], HUMAN16, clean_cfg())


def test_resampling_to_the_data_rate():
    built = build_monocular_set([("w", walking_figure(240, fps=60.0), 60.0)], HUMAN16,
                                clean_cfg(val_fraction=0.0, min_frames=110, max_frames=120))
    assert built["train_length"].max() <= 120 and built["train_length"].min() >= 110


def test_saved_set_loads_normalised_and_rejects_nan(tmp_path):
    built = build_monocular_set([(f"c{i}", walking_figure(120, heading=i), 30.0) for i in range(4)], HUMAN16,
                                MonocularConfig(val_fraction=0.0))
    path = tmp_path / "set.npz"
    save_monocular_set(path, built)
    data = MotionData2D.load(path)
    assert len(data) == len(built["train_length"])
    scale = built["meta"]["scale"]
    torch.testing.assert_close(data.pose[0, :5], torch.from_numpy(built["train_pose"][0, :5, :, :2] / scale))
    # a corrupted set is refused with a clear message
    bad = dict(np.load(path))
    bad["train_pose"][0, 0, 0, 0] = np.nan
    np.savez(tmp_path / "bad.npz", **bad)
    with pytest.raises(MasError, match="NaN"):
        MotionData2D.load(tmp_path / "bad.npz")
    bad = dict(np.load(path))
    bad["train_length"][0] = 0
    np.savez(tmp_path / "zero.npz", **bad)
    with pytest.raises(MasError, match="zero length"):
        MotionData2D.load(tmp_path / "zero.npz")
    with pytest.raises(MasError, match="not found"):
        MotionData2D.load(tmp_path / "nope.npz")


def test_mirrored_batches_swap_left_and_right():
    pose = np.random.default_rng(0).normal(size=(1, 10, 16, 3)).astype(np.float32)
    pose[..., 2] = 1.0
    meta = {"layout": HUMAN16.to_dict(), "scale": 1.0, "fps": 30.0}
    data = MotionData2D(pose, np.array([10]), meta)
    g = torch.Generator().manual_seed(0)
    seen = set()
    for x, conf, length in data.batches(1, g, mirror=True):
        if torch.equal(x[0], data.pose[0]):
            seen.add("plain")
        else:
            mirrored = data.pose[0][:, HUMAN16.mirror] * torch.tensor([-1.0, 1.0])
            torch.testing.assert_close(x[0], mirrored)
            seen.add("mirror")
        if len(seen) == 2:
            break


def test_full_share_draws_full_length_windows_and_changes_nothing_by_default():
    from mas_engine.dataset import windows_of_clip

    def lengths(**kw):
        cfg = MonocularConfig(stride_seconds=0.25, **kw)
        return np.array([n for _, n in windows_of_clip(30 * 600, cfg, np.random.default_rng(0))])

    uniform, full = lengths(), lengths(full_share=0.5)
    assert uniform.min() >= 40 and uniform.max() <= 120
    assert lengths(full_share=0.0).tolist() == uniform.tolist()          # the default draws as before
    assert 0.10 < np.mean(uniform >= 110) < 0.15                         # uniform: the last positions rarely
    assert 0.50 < np.mean(full >= 110) < 0.62 and np.mean(full == 120) > 0.45   # half drawn at full length + 12%


def test_smoothed_detections_stand_still_keep_a_steady_motion_and_never_read_a_masked_span():
    F, rng = 90, np.random.default_rng(0)
    t = np.arange(F, dtype=np.float64)
    clean = np.zeros((F, 3, 3))
    clean[..., 2] = 0.9
    clean[:, 0, :2] = [0.3, 1.2]                                       # a joint that stands still
    clean[:, 1, 0], clean[:, 1, 1] = 0.04 * t - 1.0, 0.5 - 0.01 * t    # a steady motion (1.2 m/s at 30 fps)
    clean[:, 2, 0] = 0.2 * np.sin(2 * np.pi * t / 30)                  # a 1 Hz swing
    noisy = clean.copy()
    noisy[..., :2] += rng.normal(size=(F, 3, 2)) * 0.004              # the detector's 4 mm tremor
    speed = lambda p: np.linalg.norm(np.diff(p[:, 0, :2], axis=0), axis=-1).mean() * 30  # noqa: E731
    smooth = smooth_detections(noisy, 1.5)
    assert speed(noisy) > 0.2 and speed(smooth) < 0.1                  # still again, by the evaluation's measure
    assert np.abs(smooth_detections(clean, 1.5)[:, 1, :2] - clean[:, 1, :2]).max() < 1e-9   # ends included
    swing = smooth_detections(clean, 1.5)[30:60, 2, 0]          # a Gaussian's gain at 1 Hz: exp(-(1.5 * 2 pi / 30)^2 / 2)
    assert np.ptp(swing) / np.ptp(clean[30:60, 2, 0]) == pytest.approx(np.exp(-0.5 * (1.5 * 2 * np.pi / 30) ** 2), abs=0.005)
    assert (smooth[..., 2] == noisy[..., 2]).all()
    assert smooth_detections(noisy, 0) is noisy
    # an occluded span (confidence under the threshold, large noise) is neither read nor moved
    hidden = clean.copy()
    hidden[40:55, 1, 2] = CONFIDENCE_THRESHOLD / 2
    hidden[40:55, 1, :2] = 5.0
    out = smooth_detections(hidden, 1.5)
    assert (out[40:55, 1, :2] == 5.0).all()
    assert np.abs(out[:40, 1, :2] - clean[:40, 1, :2]).max() < 1e-9 and np.abs(out[55:, 1, :2] - clean[55:, 1, :2]).max() < 1e-9


def test_built_windows_are_raw_by_default_and_smoothed_on_request():
    clips = [(f"walk{i}", walking_figure(150, heading=i), 30.0) for i in range(3)]
    cfg = dict(min_frames=60, max_frames=60, val_fraction=0.0, noise=DetectorNoise(occlusion_prob=0.0))
    raw = build_monocular_set(clips, HUMAN16, MonocularConfig(**cfg))["train_pose"]
    smooth = build_monocular_set(clips, HUMAN16, MonocularConfig(smooth_frames=1.5, **cfg))["train_pose"]
    clean = build_monocular_set(clips, HUMAN16, clean_cfg(min_frames=60, max_frames=60, val_fraction=0.0))["train_pose"]
    clean_smooth = build_monocular_set(clips, HUMAN16, clean_cfg(min_frames=60, max_frames=60, val_fraction=0.0,
                                                                  smooth_frames=1.5))["train_pose"]
    err = lambda p, q: np.sqrt(((p[..., :2] - q[..., :2]) ** 2).mean())  # noqa: E731
    assert err(raw, clean) == pytest.approx(0.004, rel=0.1)             # the same windows, cameras and noise
    assert err(smooth, clean_smooth) < 0.5 * err(raw, clean)            # the noise, smoothed


def test_time_scales_add_each_clip_played_faster_and_change_nothing_by_default():
    """A hand that waves at 1 Hz waves twice as often in the windows of the clip played 2x; the default
    (1,) builds the same set as before."""
    from mas_engine.dataset import CameraDistribution

    t = np.arange(240) / 30.0
    clip = np.repeat(walking_figure(1), 240, axis=0)
    clip[:, HUMAN16.index("right_wrist"), 2] += 0.2 * np.sin(2 * np.pi * t + 0.3)
    level = CameraDistribution(elevation_mean=0.0, elevation_std=0.0, elevation_min=0.0, elevation_max=0.0)
    cfg = dict(min_frames=60, max_frames=60, val_fraction=0.0, cameras=level)
    once = build_monocular_set([("wave", clip, 30.0)], HUMAN16, clean_cfg(**cfg))
    assert np.array_equal(once["train_pose"], build_monocular_set([("wave", clip, 30.0)], HUMAN16,
                                                                 clean_cfg(time_scales=(1.0,), **cfg))["train_pose"])
    both = build_monocular_set([("wave", clip, 30.0)], HUMAN16, clean_cfg(time_scales=(1.0, 2.0), **cfg))
    v = both["train_pose"][:, :, HUMAN16.index("right_wrist"), 1]            # image up: the wave, whatever the azimuth
    crossings = (np.diff(np.sign(v - v.mean(1, keepdims=True)), axis=1) != 0).sum(1)
    n = len(once["train_pose"])
    assert len(both["train_pose"]) > n        # 2 s: 2 waves (4 sign changes, 3 where one falls on an end), then 4
    assert set(crossings[:n]) <= {3, 4} and set(crossings[n:]) <= {7, 8}
