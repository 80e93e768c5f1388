"""2D keypoint importers (COCO JSON, OpenPose, DeepLabCut, video through MediaPipe), user layouts, and a whole
prepare -> train -> generate run on a user's own 2D data."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import walking_figure

from mas_engine.errors import MasError
from mas_engine.dataset import MonocularConfig, MotionData2D
from mas_engine.importers import read_coco_json, read_deeplabcut, read_openpose, read_video, tracks_from_frames
from mas_engine.prepare import prepare_2d
from rigs.keypoints import COCO17, HUMAN16, layout_from_file

PX = 200.0          # pixels per metre of the synthetic videos


def coco_video(frames=60, shift=(640.0, 360.0), seed=0) -> np.ndarray:
    """A person walking, seen from the side: frames x 17 x 3 (x, y pixels with y down, score)."""
    X = walking_figure(frames)
    P = np.zeros((frames, 17, 3))
    for j, n in enumerate(COCO17.joints):
        if n in HUMAN16.joints:
            P[:, j] = X[:, HUMAN16.index(n)]
        elif "eye" in n or "ear" in n:
            s = 1 if n.startswith("left") else -1
            P[:, j] = X[:, HUMAN16.index("nose")] + [0.0, 0.03 * s, 0.03 if "eye" in n else -0.02]
    img = np.stack([P[..., 0] * PX + shift[0], shift[1] - P[..., 2] * PX], -1)
    score = np.random.default_rng(seed).uniform(0.6, 1.0, (frames, 17))
    return np.concatenate([img, score[..., None]], -1)


def test_coco_results_round_trip_with_tracker_ids(tmp_path):
    a, b = coco_video(seed=1), coco_video(shift=(200.0, 360.0), seed=2)
    a[10:13, 3, 2] = 0.1                                                   # an unsure ear stays unsure
    dets = [{"image_id": f"frame_{f:06d}.jpg", "category_id": 1, "keypoints": v[f].ravel().tolist(), "score": 0.9,
             "idx": k} for f in range(60) for k, v in ((1, a), (2, b))]
    (tmp_path / "v.json").write_text(json.dumps(dets))
    tracks = read_coco_json(tmp_path / "v.json", fps=25.0)
    assert [t.name for t in tracks] == ["v_id1", "v_id2"] and tracks[0].fps == 25.0
    assert np.allclose(tracks[0].keypoints, a) and np.allclose(tracks[1].keypoints, b)


def test_untracked_people_are_linked_split_when_lost_and_short_gaps_filled(tmp_path):
    a, b = coco_video(90, seed=1), coco_video(90, shift=(150.0, 360.0), seed=2)
    frames = []
    for f in range(90):
        people = [] if 30 <= f < 33 else [a[f]]                            # a missed for 3 frames: filled
        if not 40 <= f < 60:                                                # b lost for 20 frames: split
            people.append(b[f])
        frames.append([p.copy() for p in people[::-1] if True])
    tracks = tracks_from_frames(frames, "v", 30.0, COCO17, max_gap=5)
    lengths = sorted(len(t.keypoints) for t in tracks)
    assert lengths == [30, 40, 90]
    full = next(t for t in tracks if len(t.keypoints) == 90)
    assert np.allclose(full.keypoints[31, :, :2], (2 * a[29, :, :2] + 2 * a[33, :, :2]) / 4)   # linear between 29 and 33
    assert np.allclose(full.keypoints[[0, 89]], a[[0, 89]])


def test_coco_annotation_file_and_openpose_folders(tmp_path):
    v = coco_video(30)
    images = [{"id": 100 + f, "file_name": f"{f:05d}.jpg"} for f in range(30)]
    anns = [{"id": f, "image_id": 100 + f, "keypoints": v[f].ravel().tolist(), "num_keypoints": 17} for f in range(30)]
    (tmp_path / "ann.json").write_text(json.dumps({"images": images, "annotations": anns}))
    assert np.allclose(read_coco_json(tmp_path / "ann.json", 30.0)[0].keypoints, v)
    # OpenPose, BODY_25 and COCO-18 orders: COCO index -> OpenPose index
    body25 = {0: 0, 1: 16, 2: 15, 3: 18, 4: 17, 5: 5, 6: 2, 7: 6, 8: 3, 9: 7, 10: 4, 11: 12, 12: 9, 13: 13, 14: 10, 15: 14, 16: 11}
    coco18 = {0: 0, 1: 15, 2: 14, 3: 17, 4: 16, 5: 5, 6: 2, 7: 6, 8: 3, 9: 7, 10: 4, 11: 11, 12: 8, 13: 12, 14: 9, 15: 13, 16: 10}
    for name, order, n in (("b25", body25, 25), ("c18", coco18, 18)):
        folder = tmp_path / name
        folder.mkdir()
        for f in range(30):
            op = np.zeros((n, 3))
            for c, o in order.items():
                op[o] = v[f, c]
            (folder / f"clip_{f:012d}_keypoints.json").write_text(
                json.dumps({"version": 1.3, "people": [{"pose_keypoints_2d": op.ravel().tolist()}]}))
        assert np.allclose(read_openpose(folder, 30.0)[0].keypoints, v), name


MOUSE = """name = "mouse5"
joints = ["neck", "snout", "left_ear", "right_ear", "tail_base"]
edges = [["snout", "neck"], ["neck", "left_ear"], ["neck", "right_ear"], ["neck", "tail_base"]]
pairs = [["left_ear", "right_ear"]]

[source_names]
nose = "snout"
leftear = "left_ear"
rightear = "right_ear"
neck = "neck"
tailbase = "tail_base"
"""


def mouse_csv(path, frames=150, animals=("single",), gap=None):
    """DeepLabCut CSV of mice running in circles (multi-animal when ``animals`` has names)."""
    parts = ["nose", "leftear", "rightear", "neck", "tailbase", "paw"]
    local = {"nose": (30, 0), "leftear": (15, 8), "rightear": (15, -8), "neck": (10, 0), "tailbase": (-25, 0), "paw": (0, 5)}
    multi = animals != ("single",)
    head = [["scorer"] + ["DLC_resnet50"] * (3 * len(parts) * len(animals))]
    if multi:
        head.append(["individuals"] + [a for a in animals for _ in range(3 * len(parts))])
    head.append(["bodyparts"] + [p for _ in animals for p in parts for _ in range(3)])
    head.append(["coords"] + ["x", "y", "likelihood"] * len(parts) * len(animals))
    rows = []
    for f in range(frames):
        row = [str(f)]
        for k, _ in enumerate(animals):
            th = 0.05 * f + k
            c = np.array([300 + 100 * np.cos(th) + 300 * k, 250 + 100 * np.sin(th)])
            d = np.array([-np.sin(th), np.cos(th)])
            for p in parts:
                u, w = local[p]
                xy = c + u * d + w * np.array([-d[1], d[0]]) + 2 * np.sin(0.7 * f + len(p))
                lost = gap is not None and gap[0] <= f < gap[1]
                row += ["", "", ""] if lost else [f"{xy[0]:.3f}", f"{xy[1]:.3f}", "0.95"]
        rows.append(row)
    import csv

    with open(path, "w", newline="") as fh:
        csv.writer(fh).writerows(head + rows)


def test_deeplabcut_csv_with_a_user_layout(tmp_path):
    (tmp_path / "mouse.toml").write_text(MOUSE)
    layout, names = layout_from_file(tmp_path / "mouse.toml")
    assert layout.name == "mouse5" and layout.parents == (-1, 0, 0, 0, 0) and layout.mirror == [0, 1, 3, 2, 4]
    mouse_csv(tmp_path / "one.csv")
    (t,) = read_deeplabcut(tmp_path / "one.csv", 30.0, layout, names)
    assert t.keypoints.shape == (150, 5, 3) and (t.keypoints[..., 2] == 0.95).all()   # the paw is not mapped
    mouse_csv(tmp_path / "two.csv", animals=("mus1", "mus2"), gap=(60, 80))
    tracks = read_deeplabcut(tmp_path / "two.csv", 30.0, layout, names)
    assert sorted(t.name for t in tracks) == ["two_mus1#0", "two_mus1#1", "two_mus2#0", "two_mus2#1"]   # lost 20 frames: split
    assert sorted(len(t.keypoints) for t in tracks) == [60, 60, 70, 70]
    with pytest.raises(MasError, match="none of the body parts"):
        read_deeplabcut(tmp_path / "one.csv", 30.0, layout, {"whisker": "snout"})
    (tmp_path / "bad.toml").write_text('name = "x"\njoints = ["a", "b", "c"]\nedges = [["a", "b"]]\n')
    with pytest.raises(ValueError, match="c are not connected"):
        layout_from_file(tmp_path / "bad.toml")


def test_prepare_reports_bad_files_and_keeps_the_rest(tmp_path):
    data = tmp_path / "videos"
    data.mkdir()
    v = coco_video(150)
    good = [{"image_id": f, "keypoints": v[f].ravel().tolist(), "score": 0.9} for f in range(150)]
    (data / "good.json").write_text(json.dumps(good))
    (data / "truncated.json").write_text(json.dumps(good)[:5000])
    (data / "wrong_count.json").write_text(json.dumps([{"image_id": 0, "keypoints": [1.0, 2.0, 0.9] * 25}]))
    (data / "nobody.json").write_text("[]")
    nan = [{"image_id": f, "keypoints": [0.0, 0.0, 0.0] * 17} for f in range(150)]
    (data / "all_nan.json").write_text(json.dumps(nan))
    log = []
    report = prepare_2d(data, tmp_path / "set.npz", "coco", fps=30.0, log=log.append)
    why = dict(report["rejected"])
    assert set(why) == {"truncated.json", "wrong_count.json", "nobody.json", "all_nan.json"}
    assert "cannot read JSON" in why["truncated.json"] and "25 keypoints, the layout needs 17" in why["wrong_count.json"]
    assert "no person" in why["nobody.json"] and "no subject" in why["all_nan.json"]
    assert report["train_windows"] + report["val_windows"] >= 3 and (tmp_path / "set.npz").exists()
    with pytest.raises(MasError, match="frame rate 5000"):
        prepare_2d(data, tmp_path / "x.npz", "coco", fps=5000.0, log=log.append)
    for f in ("good.json",):
        (data / f).unlink()
    with pytest.raises(MasError, match="every file was rejected"):
        prepare_2d(data, tmp_path / "y.npz", "coco", fps=30.0, log=log.append)
    assert not (tmp_path / "y.npz").exists() and not list(tmp_path.glob("*.tmp*"))


def test_own_2d_data_to_generated_3d_motions(tmp_path):
    """The README's path for a user: DeepLabCut files + a layout file -> prepare -> train -> generate."""
    (tmp_path / "mouse.toml").write_text(MOUSE)
    data = tmp_path / "dlc"
    data.mkdir()
    for k in range(3):
        mouse_csv(data / f"session{k}.csv", frames=200)
    mas = [sys.executable, "-m", "mas_cli"]

    def run(*args):
        r = subprocess.run(mas + [str(a) for a in args], capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
        return r.stdout + r.stderr
    out = run("prepare", data, "--from", "deeplabcut", "--layout", tmp_path / "mouse.toml", "--fps", "30",
              "--size", "0.05", "--max-frames", "48", "--min-frames", "24", "--out", tmp_path / "mice.npz")
    assert "layout mouse5" in out
    run("train", tmp_path / "mice.npz", "--out", tmp_path / "run", "--steps", "20", "--batch-size", "8",
        "--width", "32", "--layers", "1", "--heads", "2", "--ff-width", "64", "--max-frames", "48", "--device", "cpu")
    run("generate", "--model", tmp_path / "run" / "model.json", "-n", "2", "--seconds", "1", "--steps", "5",
        "--device", "cpu", "--out", tmp_path / "gen")
    from mas_engine.motion_io import load_motion

    m = load_motion(tmp_path / "gen" / "model_seed00000.npz")
    assert m["layout"] == "mouse5" and m["joints"].shape == (30, 5, 3) and np.isfinite(m["joints"]).all()


# ---------------------------------------------------------------- videos through MediaPipe Pose

ASTRONAUT = Path(__file__).parent / "fixtures" / "astronaut_160.jpg"


def write_video(path, frames: int, fps: float = 25.0, person: bool = True, height: int = 192) -> None:
    """A real person (the astronaut photo) sliding right by one pixel a frame over a grey frame;
    a frame lower than 176 pixels cuts the photo off at the bottom."""
    cv2 = pytest.importorskip("cv2")
    src = cv2.imread(str(ASTRONAUT))
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (288, height))
    assert out.isOpened()
    for f in range(frames):
        canvas = np.full((max(height, 176), 288, 3), 90, np.uint8)
        if person:
            canvas[16:176, 10 + f:170 + f] = src
        canvas = canvas[:height]
        out.write(canvas)
    out.release()


def test_video_through_mediapipe_follows_the_person(tmp_path):
    pytest.importorskip("mediapipe")
    write_video(tmp_path / "walk.mp4", 40)
    (track,) = read_video(tmp_path / "walk.mp4")
    assert track.fps == 25.0 and track.keypoints.shape == (40, 17, 3) and track.name == "walk"
    nose = track.keypoints[:, COCO17.index("nose")]
    assert (nose[:, 2] > 0.9).all()
    slope = np.polyfit(np.arange(40), nose[:, 0], 1)[0]          # the picture moves 1 px a frame
    assert 0.8 < slope < 1.2 and np.abs(np.diff(nose[:, 1])).max() < 2.0
    assert 70 < nose[0, 0] < 90 and 40 < nose[0, 1] < 80            # where her nose is in the frame
    write_video(tmp_path / "cut.mp4", 20, height=112)               # the frame ends at her chest
    (cut,) = read_video(tmp_path / "cut.mp4", fps=30.0)
    legs = [COCO17.index(n) for n in ("left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle")]
    assert cut.fps == 30.0 and (cut.keypoints[:, legs, 1] > 112).all()   # MediaPipe guesses them below the picture:
    assert (cut.keypoints[:, legs, 2] == 0).all() and (cut.keypoints[:, :5, 2] > 0.9).all()   # masked, not invented


def test_video_errors_are_reported_by_file(tmp_path):
    pytest.importorskip("mediapipe")
    data = tmp_path / "videos"
    data.mkdir()
    write_video(data / "good.mp4", 60)
    write_video(data / "empty_room.mp4", 30, person=False)
    write_video(data / "fast.mp4", 30, fps=5000.0)
    (data / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(200))
    (data / "notes.txt").write_text("not a video")
    with pytest.raises(MasError, match="no person detected in any of its 30 frames"):
        read_video(data / "empty_room.mp4")
    log = []
    report = prepare_2d(data, tmp_path / "set.npz", "video", cfg=MonocularConfig(min_frames=24, max_frames=48),
                        log=log.append)
    why = dict(report["rejected"])
    assert set(why) == {"empty_room.mp4", "fast.mp4", "broken.mp4"}, why
    assert "no person" in why["empty_room.mp4"] and "frame rate 5000" in why["fast.mp4"] and "--fps" in why["fast.mp4"]
    assert "cannot open" in why["broken.mp4"] or "no frames" in why["broken.mp4"]
    assert report["files"] == 4 and report["tracks"] == 1 and report["train_windows"] + report["val_windows"] >= 1
    assert any("finding the person" in line for line in log)
    s = MotionData2D.load(tmp_path / "set.npz", "train" if report["train_windows"] else "val")
    assert s.layout.name == "coco17" and s.fps == 30.0 and s.pose.shape[1:] == (48, 17, 2)
    with pytest.raises(MasError, match="use --layout coco17"):
        prepare_2d(data, tmp_path / "x.npz", "video", layout=HUMAN16, log=log.append)
    assert not (tmp_path / "x.npz").exists()
    r = subprocess.run([sys.executable, "-m", "mas_cli", "prepare", str(data), "--from", "video",
                        "--min-frames", "24", "--max-frames", "48", "--out", str(tmp_path / "cli.npz")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "layout coco17" in r.stdout and "rejected fast.mp4: frame rate 5000" in r.stdout, r.stdout + r.stderr[-2000:]


def test_video_without_mediapipe_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "mediapipe", None)           # as if not installed
    (tmp_path / "v.mp4").write_bytes(b"")
    with pytest.raises(MasError, match=r"pip install mediapipe==0\.10\.21"):
        prepare_2d(tmp_path, tmp_path / "set.npz", "video", log=lambda s: None)
