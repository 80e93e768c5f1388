"""The add-on's link to the engine. No ``bpy`` here: plain requests in, rotation tracks out.

The engine (``mas_engine``, ``rigs``, ``retarget``) is imported lazily, so the add-on
registers and explains itself even when torch is not installed yet. Search order: the engine
copy inside the extension (``vendor/``; absent in a development checkout, where the
repository's packages are used), then the user's "engine path" (an environment with torch),
then the add-on's own dependency folder (filled by "Install dependencies").
"""
from __future__ import annotations

import importlib
import importlib.util
import json
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
VENDOR = HERE / "vendor"
# pinned like requirements.txt; numpy comes with Blender
DEPENDENCIES = ("torch==2.13.0", "scipy==1.17.1", "safetensors==0.8.0", "tqdm==4.70.1")
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def add_paths(*paths) -> None:
    """Put folders on sys.path (first given = first searched), once each; skip missing ones."""
    for p in reversed([str(p) for p in paths if p and os.path.isdir(str(p))]):
        if p not in sys.path:
            sys.path.insert(0, p)
    importlib.invalidate_caches()


def setup_paths(engine_path: str = "", deps_path: str = "") -> None:
    """The engine copy shipped inside the extension first (it matches this add-on's version), then
    the user's engine path and the add-on's dependency folder (torch and the other packages)."""
    add_paths(VENDOR, engine_path, deps_path)


def engine_status() -> tuple[bool, str]:
    """(usable, one line for the panel): whether torch and the engine import, and from where."""
    try:
        import torch

        importlib.import_module("mas_engine.sampler")
        importlib.import_module("retarget.api")
    except ImportError as e:
        what = e.name or str(e)
        return False, (f"engine not available: {what} is missing. Install the dependencies (add-on preferences) "
                       f"or set an engine path to a Python environment that has them")
    gpu = "CUDA GPU" if torch.cuda.is_available() else "no GPU"
    return True, f"torch {torch.__version__.split('+')[0]}, {gpu}"


def install_command(target: str, cpu_only: bool = True) -> list[str]:
    """The pip command that installs the pinned dependencies into ``target`` (Blender's own Python)."""
    cmd = [sys.executable, "-m", "pip", "install", "--disable-pip-version-check", "--target", str(target)]
    if cpu_only:
        cmd += ["--extra-index-url", TORCH_CPU_INDEX]
    return cmd + list(DEPENDENCIES)


# ---------------------------------------------------------------- models (no torch needed)

def _models_dir() -> Path | None:
    spec = importlib.util.find_spec("mas_engine")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0]) / "models"


def read_model_card(card: Path) -> dict | None:
    """A checkpoint card's facts for the panel, or None if it is not a MAS checkpoint."""
    try:
        d = json.loads(Path(card).read_text())
    except (OSError, ValueError):
        return None
    weights = Path(card).with_suffix(".safetensors")
    if not isinstance(d, dict) or d.get("format") is None or not weights.exists():
        return None
    layout = d.get("layout", {})
    name = layout.get("name", "?")
    rig = {"human16": "human", "horse17": "horse", "coco17": "human", "coco17_ball": "human"}.get(name, "")
    return {"path": str(Path(card).with_suffix("")), "layout": name, "rig": rig, "fps": d.get("fps"),
            "size_mb": weights.stat().st_size / 2 ** 20, "note": d.get("note", d.get("licence", ""))}


def list_models(models_folder: str = "") -> dict[str, dict]:
    """Shipped models by name, then the user's checkpoints (NAME.json + NAME.safetensors) by path."""
    out = {}
    shipped = _models_dir()
    for folder, shipped_names in ((shipped, True), (Path(models_folder) if models_folder else None, False)):
        if folder is None or not folder.is_dir():
            continue
        for card in sorted(folder.glob("*.json")):
            info = read_model_card(card)
            if info:
                out[card.stem if shipped_names else info["path"]] = dict(info, shipped=shipped_names)
    return out


# ---------------------------------------------------------------- generation

@dataclass
class Request:
    """One motion to make. rig: "human", "horse", or a user armature as plain data
    {name, bones, parents, heads, tails (metres, Z up), bone_map}."""

    model: str = "human"
    seed: int = 0
    seconds: float = 4.0
    fps: float = 30.0                    # the scene's frame rate: the motion is resampled to it
    views: int = 5
    steps: int = 0                       # 0: the model's own number of steps
    device: str = "auto"
    in_place: bool = False
    loop: bool = False                   # a seamless loop (the action gets Cycles modifiers)
    rig: object = "human"
    label: str = ""
    extra: dict = field(default_factory=dict)

    def group_key(self):
        """Requests that differ only in seed (and rig) are sampled as one batch; constrained ones alone."""
        return (self.model, self.seconds, self.views, self.steps, self.device, self.loop,
                id(self) if self.extra.get("constraints") else None)


@dataclass
class Result:
    request: Request
    track: object = None                 # retarget.fit.RotationTrack
    report: dict = field(default_factory=dict)
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error


_MODELS: dict = {}


def load_model(name: str, device: str):
    from mas_engine.checkpoint import load_checkpoint
    from mas_engine.device import pick_device

    dev = pick_device(device)
    key = (name, str(dev))
    if key not in _MODELS:
        _MODELS[key] = load_checkpoint(name, device=dev)
    return _MODELS[key], dev


def _user_armature(spec: dict, joints, layout):
    import numpy as np

    from retarget.api import armature_from_skeleton

    return armature_from_skeleton(spec["name"], spec["bones"], spec["parents"], np.asarray(spec["heads"]),
                                  np.asarray(spec["tails"]), spec["bone_map"], joints, layout)


def _sample_group(reqs: list[Request], progress, cancel) -> list[Result]:
    """Sample one group of requests (same model and settings) as one MAS batch, then retarget each."""
    import numpy as np

    from mas_engine.errors import MasError
    from mas_engine.motion_io import resample
    from mas_engine.sampler import MasSettings, sample_mas
    from retarget.api import retarget

    r0 = reqs[0]
    if not 0 < r0.seconds <= 600 or r0.fps <= 0:
        raise MasError(f"length {r0.seconds} s at {r0.fps} fps is not possible; use a length above 0 and at most 600 s")
    loaded, dev = load_model(r0.model, r0.device)
    frames = int(round(r0.seconds * loaded.fps))
    settings = MasSettings(views=r0.views, steps=r0.steps or None, loop=r0.loop)
    wanted = constraints_of(r0, loaded, frames)
    sampled = sample_mas(loaded, [r.seed for r in reqs], frames, settings, dev,
                         progress=lambda d, n: progress(0.9 * d / n), cancel=cancel, constraints=wanted)
    layout = loaded.layout
    out = []
    for k, (req, joints) in enumerate(zip(reqs, sampled.joints)):
        try:
            if req.loop:        # key the first pose again one frame after the last: the Cycles period
                joints = np.concatenate([joints, joints[:1]])
            joints = resample(joints, loaded.fps, req.fps)
            r = layout.root
            if wanted is None:      # start at the object's origin (constraints place the motion themselves)
                joints = joints - [joints[0, r, 0], joints[0, r, 1], 0.0]
            motion = dict(joints=joints, fps=req.fps, joint_names=layout.joints, layout=layout.name)
            rig = _user_armature(req.rig, joints, layout) if isinstance(req.rig, dict) else req.rig
            track, report = retarget(motion, rig=rig, in_place=req.in_place)
            if req.loop:            # the fit smooths each end on its own: make the period exact
                track.rotations[-1], track.root[-1] = track.rotations[0], track.root[0]
                for v in track.props.values():
                    v[-1] = v[0]
            report.update(model=loaded.name, seed=req.seed, layout=layout.name, model_fps=loaded.fps, loop=req.loop)
            out.append(Result(req, track, report))
        except MasError as e:
            out.append(Result(req, error=str(e)))
        progress(0.9 + 0.1 * (k + 1) / len(reqs))
    return out


def constraints_of(req: Request, loaded, frames: int):
    """The request's constraints (``extra["constraints"]``, read from the scene by the API) for the
    engine, at the model's frame rate: ``start_pose`` (joints x 3), ``keys`` ({frame at the scene's
    rate from the motion's start: joints x 3, NaN where free}), ``path`` (points x 2), all in metres in
    the motion's frame. None when there are none."""
    import numpy as np

    from mas_engine import constraints as C

    c = req.extra.get("constraints")
    if not c:
        return None
    layout, fps = loaded.layout, loaded.fps
    names = np.array(layout.joints)
    parts = []
    if c.get("start_pose") is not None:
        parts.append(C.start_from({"joints": np.asarray(c["start_pose"])[None], "joint_names": names}, frames, layout, fps,
                                  "the current pose"))
    if c.get("keys"):
        keys = np.full((frames, layout.num_joints, 3), np.nan)
        for f, pose in c["keys"].items():
            k = int(round(int(f) * fps / req.fps))
            if 0 <= k < frames:
                keys[k] = pose
        parts.append(C.keyframes({"joints": keys, "joint_names": names}, frames, layout, fps))
    if c.get("path") is not None:
        parts.append(C.root_path(np.asarray(c["path"]), frames, layout, fps))
    out = parts[0]
    for p in parts[1:]:
        out = out.merge(p)
    return out


class Job:
    """Requests run one group after another: in a thread for the UI (``start``), or inline (``run``).

    The thread only computes; the UI polls ``progress``, ``message``, ``results`` and ``done``
    and builds scene data on Blender's main thread.
    """

    def __init__(self, requests: list[Request]):
        self.requests = list(requests)
        self.results: list[Result] = []
        self.progress = 0.0
        self.message = "starting"
        self.done = False
        self.seconds = 0.0
        self._cancel = threading.Event()
        self.thread: threading.Thread | None = None

    def start(self) -> "Job":
        self.thread = threading.Thread(target=self.run, name="mas-generate", daemon=True)
        self.thread.start()
        return self

    def cancel(self) -> None:
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def run(self) -> "Job":
        t0 = time.perf_counter()
        try:
            from mas_engine.errors import Cancelled, MasError
        except ImportError as e:
            self.results = [Result(r, error=f"engine not available ({e}); install the dependencies") for r in self.requests]
            self.message, self.done = "failed", True
            return self
        groups: list[list[Request]] = []
        for r in self.requests:
            if groups and groups[-1][0].group_key() == r.group_key():
                groups[-1].append(r)
            else:
                groups.append([r])
        n, done = len(self.requests), 0
        try:
            for group in groups:
                if self.cancelled:
                    break
                self.message = f"{group[0].model}: {len(group)} motion(s), seed {group[0].seed}"

                def progress(f, done=done, size=len(group)):
                    self.progress = (done + f * size) / n
                try:
                    self.results += _sample_group(group, progress, self._cancel.is_set)
                except Exception as e:          # noqa: BLE001 - every failure is reported per request
                    if isinstance(e, Cancelled):
                        break
                    msg = str(e) if isinstance(e, MasError) else f"unexpected {type(e).__name__}: {e}"
                    self.results += [Result(r, error=msg) for r in group]
                done += len(group)
                self.progress = done / n
        finally:
            self.seconds = time.perf_counter() - t0
            self.message = "cancelled" if self.cancelled else "done"
            self.done = True
        return self
