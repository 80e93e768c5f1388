"""2D keypoints from pose estimators -> tracks for a training set (``mas prepare --from-2d``).

Every reader returns ``Track2D``s: one person (or animal) followed over consecutive frames,
keypoints frames x J x 3 (x, y in image pixels, y down; confidence 0..1; NaN where the
detector gave nothing) in a keypoint layout. Readers:

- ``read_coco_json``: COCO-style keypoint results, a list of {"image_id", "keypoints":
  [x, y, score] * 17, "score", optional "idx"/"track_id"} (AlphaPose, MMPose, Detectron2 write
  this), or a COCO data set file ({"images", "annotations"}); frames are the image ids in order.
- ``read_openpose``: OpenPose's folder of per-frame ``*_keypoints.json`` (BODY_25 or COCO-18).
- ``read_deeplabcut``: DeepLabCut's ``.csv`` (single- or multi-animal) or ``.h5`` (needs pandas
  and PyTables), with a user-given map from body parts to the layout's joints.
- ``read_video``: a video file through MediaPipe Pose (``pip install mediapipe==0.10.21``, whose
  wheel carries the model; it runs offline), one person, COCO-17.

Tracking and clean-up (``tracks_from_frames``): each frame's detections are linked to the
track whose last pose is nearest; a track ends when its subject is lost for more than
``max_gap`` frames; gaps up to that are filled by linear interpolation; joints below the
confidence threshold keep their low confidence (masked in training, never invented).
"""
from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rigs.keypoints import COCO17, KeypointLayout

from .dataset import CONFIDENCE_THRESHOLD
from .errors import MasError, MissingDependency


@dataclass
class Track2D:
    name: str
    keypoints: np.ndarray        # frames x J x 3: x, y (pixels, y down), confidence
    fps: float
    layout: KeypointLayout


# OpenPose joint names -> COCO-17 names (the other OpenPose joints are dropped)
OPENPOSE_BODY25 = ("nose", "neck", "right_shoulder", "right_elbow", "right_wrist", "left_shoulder", "left_elbow",
                   "left_wrist", "mid_hip", "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee",
                   "left_ankle", "right_eye", "left_eye", "right_ear", "left_ear", "left_big_toe", "left_small_toe",
                   "left_heel", "right_big_toe", "right_small_toe", "right_heel")
OPENPOSE_COCO18 = ("nose", "neck", "right_shoulder", "right_elbow", "right_wrist", "left_shoulder", "left_elbow",
                   "left_wrist", "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle",
                   "right_eye", "left_eye", "right_ear", "left_ear")


def _pose_array(flat, n: int, where: str) -> np.ndarray:
    a = np.asarray(flat, dtype=np.float64)
    if a.size != 3 * n:
        raise MasError(f"{where}: {a.size // 3 if a.size % 3 == 0 else a.size / 3:g} keypoints, the layout needs {n} "
                       f"(x, y, score each); is this the right format or layout?")
    a = a.reshape(n, 3)
    a[a[:, 2] <= 0, :2] = np.nan          # 0 score: not detected
    return a


def tracks_from_frames(frames: list[list[np.ndarray]], name: str, fps: float, layout: KeypointLayout,
                       max_gap: int = 5, max_jump: float = 0.5, min_frames: int = 10) -> list[Track2D]:
    """Link per-frame detections (frames: for every frame, a list of J x 3 poses) into tracks.

    A detection joins the track whose last pose is nearest (mean joint distance, relative to that
    pose's size) if nearer than ``max_jump``; tracks lost for more than ``max_gap`` frames end;
    tracks shorter than ``min_frames`` are dropped."""
    open_tracks: list[dict] = []
    done: list[dict] = []

    def size(p):
        ok = np.isfinite(p[:, 0])
        return max(float(np.ptp(p[ok, :2], axis=0).max()) if ok.sum() >= 2 else 0.0, 1e-6)

    for f, people in enumerate(frames):
        free = list(people)
        for t in sorted(open_tracks, key=lambda t: -len(t["frames"])):
            if not free:
                break
            last = t["poses"][-1]
            d = [np.nanmean(np.linalg.norm(p[:, :2] - last[:, :2], axis=-1)) / size(last) for p in free]
            d = [x if np.isfinite(x) else np.inf for x in d]
            k = int(np.argmin(d))
            if d[k] < max_jump:
                t["frames"].append(f)
                t["poses"].append(free.pop(k))
        for p in free:
            if np.isfinite(p[:, 0]).sum() >= 2:
                open_tracks.append({"frames": [f], "poses": [p]})
        for t in [t for t in open_tracks if f - t["frames"][-1] > max_gap]:
            open_tracks.remove(t)
            done.append(t)
    done += open_tracks
    out = []
    for k, t in enumerate(sorted(done, key=lambda t: t["frames"][0])):
        first, last = t["frames"][0], t["frames"][-1]
        if last - first + 1 < min_frames:
            continue
        kp = np.full((last - first + 1, layout.num_joints, 3), np.nan)
        kp[np.array(t["frames"]) - first] = np.stack(t["poses"])
        out.append(Track2D(f"{name}#{len(out)}" if len(done) > 1 else name, fill_gaps(kp), fps, layout))
    return out


def fill_gaps(kp: np.ndarray) -> np.ndarray:
    """Frames where the whole subject is missing (NaN) between detections: positions linearly
    interpolated per joint, confidence of the lower neighbour. Joints still NaN get confidence 0."""
    kp = kp.copy()
    seen = np.isfinite(kp[..., 0]).any(-1)
    idx = np.nonzero(seen)[0]
    gaps = np.nonzero(~seen)[0]
    if len(gaps) and len(idx) >= 2:
        for j in range(kp.shape[1]):
            ok = np.nonzero(np.isfinite(kp[:, j, 0]))[0]
            if len(ok) < 2:
                continue
            for c in range(3):
                kp[gaps, j, c] = np.interp(gaps, ok, kp[ok, j, c])
            kp[gaps, j, 2] = np.minimum(kp[gaps, j, 2], np.interp(gaps, ok, kp[ok, j, 2]))
    missing = ~np.isfinite(kp[..., 0])
    kp[missing] = [0.0, 0.0, 0.0]
    kp[..., 2] = np.clip(np.nan_to_num(kp[..., 2]), 0.0, 1.0)
    return kp


def _load_json(path: Path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise MasError(f"{path}: cannot read JSON ({e})") from None


def read_coco_json(path, fps: float, layout: KeypointLayout = COCO17) -> list[Track2D]:
    """COCO-style keypoint results or a COCO annotation file -> tracks (see the module docstring)."""
    path = Path(path)
    d = _load_json(path)
    if isinstance(d, dict) and "annotations" in d:
        order = {im["id"]: k for k, im in enumerate(sorted(d.get("images", []), key=lambda im: (im.get("frame_id", 0), str(im.get("file_name", "")), im["id"])))}
        dets = d["annotations"]
    elif isinstance(d, list):
        order, dets = None, d
    else:
        raise MasError(f"{path}: not COCO keypoint results (a list of detections) or a COCO file with 'annotations'")
    if not dets:
        raise MasError(f"{path}: no person detected in any frame")
    by_frame: dict = {}
    by_id: dict = {}
    for det in dets:
        if not isinstance(det, dict) or "keypoints" not in det or "image_id" not in det:
            raise MasError(f"{path}: a detection without 'image_id' and 'keypoints'")
        img = det["image_id"]
        key = order.get(img, img) if order is not None else _frame_number(img)
        pose = _pose_array(det["keypoints"], layout.num_joints, str(path))
        track_id = det.get("idx", det.get("track_id"))
        by_frame.setdefault(key, []).append(pose)
        if track_id is not None:
            by_id.setdefault(_scalar(track_id), {})[key] = pose
    keys = sorted(by_frame)
    index = {k: i for i, k in enumerate(keys)}
    if by_id:            # the estimator tracked people itself: keep its ids, split them where lost
        out = []
        for tid, poses in sorted(by_id.items(), key=lambda kv: str(kv[0])):
            frames = [[] for _ in keys]
            for k, p in poses.items():
                frames[index[k]].append(p)
            out += tracks_from_frames(frames, f"{path.stem}_id{tid}", fps, layout)
        return out
    return tracks_from_frames([by_frame[k] for k in keys], path.stem, fps, layout)


def _scalar(v):
    return v[0] if isinstance(v, list) and v else v


def _frame_number(image_id):
    """An image id as a sortable frame number: 12, '12', 'frame_000012.jpg' -> 12."""
    if isinstance(image_id, (int, float)):
        return image_id
    nums = re.findall(r"\d+", str(image_id))
    return int(nums[-1]) if nums else str(image_id)


def read_openpose(folder, fps: float, layout: KeypointLayout = COCO17) -> list[Track2D]:
    """A folder of OpenPose ``*_keypoints.json`` files (one per frame, BODY_25 or COCO-18)."""
    folder = Path(folder)
    files = sorted(folder.glob("*_keypoints.json"), key=lambda p: _frame_number(p.stem.replace("_keypoints", "")))
    if not files:
        raise MasError(f"{folder}: no OpenPose *_keypoints.json files")
    frames = []
    for p in files:
        d = _load_json(p)
        people = []
        for person in d.get("people", []) if isinstance(d, dict) else []:
            flat = person.get("pose_keypoints_2d", [])
            n = len(flat) // 3
            names = {25: OPENPOSE_BODY25, 18: OPENPOSE_COCO18}.get(n)
            if names is None or len(flat) % 3:
                raise MasError(f"{p}: {len(flat) / 3:g} keypoints per person; OpenPose BODY_25 has 25, COCO 18")
            src = _pose_array(flat, n, str(p))
            pose = np.full((layout.num_joints, 3), np.nan)
            for j, name in enumerate(layout.joints):
                if name in names:
                    pose[j] = src[names.index(name)]
            people.append(pose)
        frames.append(people)
    return tracks_from_frames(frames, folder.name, fps, layout)


def read_deeplabcut(path, fps: float, layout: KeypointLayout, body_parts: dict[str, str] | None = None) -> list[Track2D]:
    """DeepLabCut output (.csv, or .h5 read with h5py, never unpickled): one track per individual.

    body_parts: {DeepLabCut body part: layout joint}; default: the same names.
    """
    path = Path(path)
    rows = _dlc_rows(path)
    header_rows = [r for r in rows[:4] if r and r[0] in ("scorer", "individuals", "bodyparts", "coords")]
    if len(header_rows) < 3:
        raise MasError(f"{path}: not DeepLabCut output (expected header rows scorer, bodyparts, coords)")
    h = {r[0]: r[1:] for r in header_rows}
    parts, coords = h["bodyparts"], h["coords"]
    individuals = h.get("individuals", ["single"] * len(parts))
    data = np.array([[float(v) if v not in ("", "nan", "NaN") else np.nan for v in r[1:]]
                     for r in rows[len(header_rows):] if r], dtype=np.float64)
    if data.size == 0:
        raise MasError(f"{path}: no frames")
    mapping = body_parts or {n: n for n in layout.joints}
    unknown = sorted(set(mapping.values()) - set(layout.joints))
    if unknown:
        raise MasError(f"{path}: the body-part map names joints the layout {layout.name} does not have: {', '.join(unknown)}")
    if not set(mapping) & set(parts):
        raise MasError(f"{path}: none of the body parts {sorted(set(parts))[:8]} is mapped to the layout "
                       f"{layout.name}; give a map (the layout file's \"source_names\")")
    out = []
    for ind in dict.fromkeys(individuals):
        kp = np.full((data.shape[0], layout.num_joints, 3), np.nan)
        for c, (i, part, coord) in enumerate(zip(individuals, parts, coords)):
            if i == ind and part in mapping:
                kp[:, layout.index(mapping[part]), {"x": 0, "y": 1, "likelihood": 2}[coord]] = data[:, c]
        kp[kp[..., 2] <= 0, :2] = np.nan
        frames = [[kp[f]] if np.isfinite(kp[f, :, 0]).any() else [] for f in range(len(kp))]
        out += tracks_from_frames(frames, f"{path.stem}_{ind}" if ind != "single" else path.stem, fps, layout)
    return out


def _dlc_rows(path: Path) -> list[list[str]]:
    if path.suffix.lower() in (".h5", ".hdf5"):
        return _dlc_rows_h5(path)
    try:
        with open(path, newline="") as f:
            return list(csv.reader(f))
    except (OSError, UnicodeDecodeError) as e:
        raise MasError(f"{path}: cannot read ({e})") from None


DLC_LEVELS = {3: ("scorer", "bodyparts", "coords"), 4: ("scorer", "individuals", "bodyparts", "coords")}


def _dlc_rows_h5(path: Path) -> list[list[str]]:
    """DeepLabCut's .h5 (a pandas HDFStore, 'table' or 'fixed' format) as the rows of its CSV, read
    with h5py: only numeric arrays and fixed-width strings are read, never a pickle (pandas' own
    HDF reader unpickles object nodes, which can run code). The column names of the 'table'
    format sit in protocol-0 pickled attributes: those are parsed opcode by opcode
    (``_pickled_names``) and refused unless they are plain lists and tuples of strings."""
    try:
        import h5py
    except ImportError:
        raise MissingDependency(f"{path}: reading DeepLabCut .h5 needs h5py (pip install h5py), or export "
                                f"the CSV from DeepLabCut") from None
    bad = f"{path}: not a DeepLabCut .h5 of plain numbers (export the CSV from DeepLabCut instead)"
    try:
        with h5py.File(path, "r") as h:
            groups = [g for g in h.values() if isinstance(g, h5py.Group)]
            if len(groups) != 1:
                raise MasError(bad)
            g = groups[0]
            if "table" in g:                                     # format="table" (what DeepLabCut writes)
                table = g["table"]
                blocks = [n for n in (table.dtype.names or ()) if n.startswith("values_block_")]
                columns, values = [], []
                for b in blocks:
                    columns += _pickled_names(table.attrs.get(f"{b}_kind"), bad)
                    values.append(_numeric(table.fields(b)[...], bad).reshape(table.shape[0], -1))
            elif "block0_values" in g:                            # format="fixed"
                nlev = sum(1 for k in g if k.startswith("block0_items_level"))
                levels = [[_text(v, bad) for v in _strings(g[f"block0_items_level{k}"], bad)] for k in range(nlev)]
                labels = [_numeric(g[f"block0_items_label{k}"][...], bad).astype(int) for k in range(nlev)]
                columns = [tuple(levels[k][labels[k][c]] for k in range(nlev)) for c in range(len(labels[0]))] if nlev else []
                values = [_numeric(g["block0_values"][...], bad)]
                if int(g.attrs.get("nblocks", 1)) != 1:
                    raise MasError(bad)
            else:
                raise MasError(bad)
    except OSError as e:
        raise MasError(f"{path}: cannot read as HDF5 ({e})") from None
    if not columns or len({len(c) for c in columns}) != 1 or len(columns[0]) not in DLC_LEVELS:
        raise MasError(bad)
    data = np.concatenate(values, 1)
    if data.shape[1] != len(columns):
        raise MasError(bad)
    names = DLC_LEVELS[len(columns[0])]
    rows = [[n] + [c[k] for c in columns] for k, n in enumerate(names)]
    return rows + [[str(i)] + [repr(float(v)) for v in row] for i, row in enumerate(data)]


def _numeric(a: np.ndarray, bad: str) -> np.ndarray:
    if a.dtype.kind not in "fiu":
        raise MasError(bad)
    return np.asarray(a, np.float64)


def _strings(ds, bad: str):
    if ds.dtype.kind != "S":                                     # fixed-width bytes only, never objects
        raise MasError(bad)
    return ds[...]


def _text(v, bad: str) -> str:
    try:
        return bytes(v).decode("utf-8")
    except UnicodeDecodeError:
        raise MasError(bad) from None


# the opcodes of a pickle that only builds lists and tuples of strings and small integers
_DATA_OPCODES = {"MARK", "LIST", "EMPTY_LIST", "TUPLE", "EMPTY_TUPLE", "TUPLE1", "TUPLE2", "TUPLE3", "APPEND", "APPENDS",
                 "UNICODE", "STRING", "BINUNICODE", "SHORT_BINUNICODE", "SHORT_BINSTRING", "BINSTRING", "INT",
                 "BININT", "BININT1", "BININT2", "PUT", "BINPUT", "LONG_BINPUT", "GET", "BINGET", "LONG_BINGET",
                 "PROTO", "FRAME", "MEMOIZE", "STOP"}


def _pickled_names(raw, bad: str) -> list[tuple[str, ...]]:
    """Column names from a pandas 'table' attribute: a pickled list of tuples of strings, read with
    ``pickletools.genops`` (a disassembler: nothing is built by pickle, nothing can run). Any opcode
    outside plain lists, tuples, strings and integers (a global, a call, an object) is refused."""
    import pickletools

    if not isinstance(raw, (bytes, np.bytes_)):
        raise MasError(bad)
    stack, memo = [], {}
    try:
        for op, arg, _ in pickletools.genops(bytes(raw)):
            name = op.name
            if name not in _DATA_OPCODES:
                raise MasError(f"{bad} (it holds a pickled {name}: refused)")
            if name == "MARK":
                stack.append(_MARK)
            elif name in ("LIST", "TUPLE"):
                k = len(stack) - 1 - stack[::-1].index(_MARK)
                items = stack[k + 1:]
                del stack[k:]
                stack.append(list(items) if name == "LIST" else tuple(items))
            elif name in ("EMPTY_LIST", "EMPTY_TUPLE"):
                stack.append([] if name == "EMPTY_LIST" else ())
            elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
                n = int(name[-1])
                items = tuple(stack[-n:])
                del stack[-n:]
                stack.append(items)
            elif name == "APPEND":
                item = stack.pop()
                stack[-1].append(item)
            elif name == "APPENDS":
                k = len(stack) - 1 - stack[::-1].index(_MARK)
                items = stack[k + 1:]
                del stack[k:]
                stack[-1].extend(items)
            elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
                memo[arg] = stack[-1]
            elif name == "MEMOIZE":
                memo[len(memo)] = stack[-1]
            elif name in ("GET", "BINGET", "LONG_BINGET"):
                stack.append(memo[arg])
            elif name in ("PROTO", "FRAME", "STOP"):
                pass
            else:                                                # strings and integers
                stack.append(arg.decode("latin-1") if isinstance(arg, bytes) else arg)
    except (ValueError, IndexError, KeyError, AttributeError, TypeError):
        raise MasError(bad) from None
    names = stack[-1] if len(stack) == 1 else None
    if not isinstance(names, list) or not all(isinstance(c, tuple) and all(isinstance(x, str) for x in c) for c in names):
        raise MasError(bad)
    return names


_MARK = object()


# MediaPipe Pose's 33 landmarks -> COCO-17 (nose, eyes, ears, shoulders, elbows, wrists, hips, knees, ankles)
MEDIAPIPE_TO_COCO17 = (0, 2, 5, 7, 8, 11, 12, 13, 14, 15, 16, 23, 24, 25, 26, 27, 28)
VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv")
MEDIAPIPE_HINT = ("reading videos needs MediaPipe: pip install mediapipe==0.10.21 (later versions carry no "
                  "pose model and would download one), or run a pose estimator yourself and prepare from its "
                  "keypoint files (--from coco|openpose)")


def read_video(path, fps: float | None = None, layout: KeypointLayout = COCO17, progress=None) -> list[Track2D]:
    """A video file -> tracks of one person, COCO-17, through MediaPipe Pose (``model_complexity=1``,
    the model inside the mediapipe 0.10.21 wheel; no download). Keypoints are in pixels with y down;
    the confidence is MediaPipe's visibility, and 0 for a landmark outside the picture (MediaPipe
    guesses those: masked, not invented). Frames without a person split the track where the gap is
    longer than ``tracks_from_frames``' max_gap.

    fps: the video's frame rate; default: the file's own (an implausible one is an error).
    progress: optional callable(frames_done, frames_total)."""
    path = Path(path)
    if layout.name != "coco17":
        raise MasError(f"{path}: videos give COCO-17 keypoints (MediaPipe Pose); use --layout coco17")
    try:
        import cv2
        import mediapipe as mp
    except ImportError:
        raise MissingDependency(MEDIAPIPE_HINT) from None
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise MasError(f"{path}: cannot open the video (not a video, truncated, or a codec OpenCV cannot read)")
        rate = float(fps) if fps else float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        if not (np.isfinite(rate) and 1.0 <= rate <= 1000.0):
            raise MasError(f"{path}: frame rate {rate:g} in the file is not plausible; give the real one with --fps")
        total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        frames: list[list[np.ndarray]] = []
        with mp.solutions.pose.Pose(static_image_mode=False, model_complexity=1) as pose:
            while True:
                ok, bgr = cap.read()
                if not ok:
                    break
                h, w = bgr.shape[:2]
                found = pose.process(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)).pose_landmarks
                if found is None:
                    frames.append([])
                else:
                    lm = np.array([(found.landmark[i].x, found.landmark[i].y, found.landmark[i].visibility)
                                   for i in MEDIAPIPE_TO_COCO17], dtype=np.float64)
                    inside = (lm[:, 0] >= 0) & (lm[:, 0] <= 1) & (lm[:, 1] >= 0) & (lm[:, 1] <= 1)
                    frames.append([np.stack([lm[:, 0] * w, lm[:, 1] * h, np.where(inside, lm[:, 2], 0.0)], -1)])
                if progress is not None and len(frames) % 100 == 0:
                    progress(len(frames), total)
    finally:
        cap.release()
    if not frames:
        raise MasError(f"{path}: no frames could be decoded (empty or truncated video)")
    if not any(frames):
        raise MasError(f"{path}: no person detected in any of its {len(frames)} frames")
    return tracks_from_frames(frames, path.stem, rate, layout)


def normalise_track(kp: np.ndarray, layout: KeypointLayout, size_m: float = 0.5) -> np.ndarray:
    """Pixels (y down) -> the 2D set's units (metres-like, y up): flip y and scale the whole track
    so the subject's median spread (RMS distance of its confident joints from their centre) is
    ``size_m`` (0.5 m is about a standing adult's). The position in the image is kept."""
    conf = kp[..., 2] >= CONFIDENCE_THRESHOLD
    uv = kp[..., :2] * [1.0, -1.0]
    spreads = []
    for f in range(len(kp)):
        ok = conf[f]
        if ok.sum() >= 3:
            c = uv[f, ok].mean(0)
            spreads.append(np.sqrt(np.mean(np.sum((uv[f, ok] - c) ** 2, -1))))
    if not spreads:
        raise MasError("no frame with three confident keypoints")
    s = size_m / max(float(np.median(spreads)), 1e-9)
    return np.concatenate([uv * s, kp[..., 2:3]], -1)
