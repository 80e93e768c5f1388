"""Generation jobs: plain requests in, rotation tracks out, through the one pipeline
(``mas_app.pipeline``). No ``bpy`` here; the engine is imported when a job runs, so the add-on
registers and explains itself before torch is installed.
"""
from __future__ import annotations

import threading
import time
import traceback
from dataclasses import dataclass, field


@dataclass
class Request:
    """One motion to make. rig: "human", "horse", or a user armature as plain data
    {name, bones, parents, heads, tails (metres, Z up), bone_map}. extra["constraints"]: what
    the scene asks for (``scene_requests.scene_constraints``): start_pose (joints x 3), keys ({frame
    at ``fps`` from the motion's start: joints x 3, NaN where free}), path (points x 2), metres.
    extra["inputs"]: constraints as ``mas generate`` takes them (a batch row's columns): start_from,
    end_at, keys (motion files) and path ('x,y x,y ...', metres)."""

    model: str = "human"
    seed: int = 0
    seconds: float = 4.0
    fps: float = 30.0                    # the scene's frame rate: the motion is resampled to it
    views: int = 5
    steps: int = 0                       # 0: the model's own number of steps
    device: str = "auto"
    in_place: bool = False
    foot_lock: bool = True               # the foot-contact clean-up of the fit
    loop: bool = False                   # a seamless loop (the action gets Cycles modifiers)
    loop_travel: bool = False            # the loop (loop is then True too) may travel steadily: its root
                                         # location repeats with an offset
    pace: str = "data"                   # how much the motion moves: "data" (each seed its own) or one of
                                         # PACE_LEVELS (pace_setting)
    rig: object = "human"
    label: str = ""
    extra: dict = field(default_factory=dict)

    def group_key(self):
        """Requests that differ only in seed (and rig) are sampled as one batch; constrained ones alone."""
        return (self.model, self.seconds, self.views, self.steps, self.device, self.loop, self.loop_travel, self.pace,
                id(self) if self.extra.get("constraints") or self.extra.get("inputs") else None)


@dataclass
class Result:
    request: Request
    track: object = None                 # retarget.fit.RotationTrack
    report: dict = field(default_factory=dict)
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error


PACE_LEVELS = ("still", "calm", "lively", "liveliest")


def pace_setting(pace: str, classes: int):
    """The add-on's pace -> ``MasSettings.pace`` for a model with ``classes`` pace classes: "data" (the
    seeds take the classes in turn, as often as the model card says, as ``mas generate`` does) or a level
    of PACE_LEVELS spread over the model's classes (4 classes: one each). A model without classes moves as it does."""
    from mas_engine.errors import MasError

    if pace != "data" and pace not in PACE_LEVELS:
        raise MasError(f"pace {pace!r} is not known; use 'data' (each seed its own) or one of {', '.join(PACE_LEVELS)}")
    if pace == "data" or not classes:
        return "data"
    return round(PACE_LEVELS.index(pace) * (classes - 1) / (len(PACE_LEVELS) - 1))


def plan_for(req: Request):
    """The pipeline's checked plan for a request (the model cached between jobs)."""
    import numpy as np

    from mas_app import pipeline
    from mas_engine.sampler import MasSettings
    from rigs.keypoints import get_layout

    c = req.extra.get("constraints") or {}
    start = keys = cont = None
    if c.get("start_pose") is not None or c.get("keys") or c.get("continue"):
        names = np.array(get_layout(c["layout"]).joints)
        if c.get("start_pose") is not None:
            start = {"joints": np.asarray(c["start_pose"])[None], "joint_names": names, "source": "the current pose"}
        if c.get("continue"):           # the new part is req.seconds long, after the action's last frames
            cont = {"joints": np.asarray(c["continue"]["joints"]), "joint_names": names, "source": "the active action"}
        if c.get("keys"):
            keys = {"poses": c["keys"], "fps": req.fps}
    given = req.extra.get("inputs") or {}
    loaded, _ = pipeline.load_model(req.model, req.device, cache=True)
    settings = MasSettings(views=req.views, steps=req.steps or None, loop=req.loop, loop_travel=req.loop_travel,
                           pace=pace_setting(req.pace, loaded.config.pace_classes))
    return pipeline.prepare(req.model, req.seconds, settings, req.device, start_from=given.get("start_from", start),
                            continue_from=cont, end_at=given.get("end_at"), keys=given.get("keys", keys),
                            path=given.get("path", c.get("path")), cache=True)


def sample_group(reqs: list[Request], progress, cancel) -> list[Result]:
    """Sample one group of requests (same model and settings) as one MAS batch, then fit each one's rig."""
    from mas_app import pipeline
    from mas_engine.errors import MasError

    plan = plan_for(reqs[0])
    by_seed = {}
    pipeline.sample(plan, [r.seed for r in reqs], lambda seeds, joints: by_seed.update(zip(seeds, joints)),
                    lambda d, n: progress(0.9 * d / n), cancel)
    out = []
    for k, req in enumerate(reqs):
        try:
            motion = pipeline.motion_of(plan, by_seed[req.seed], req.seed)
            track, report = pipeline.rig_motion(motion, req.rig, req.in_place, fps=req.fps, at_origin=plan.constraints is None,
                                                close_loop=req.loop, foot_lock=req.foot_lock)
            out.append(Result(req, track, report))
        except MasError as e:
            out.append(Result(req, error=str(e)))
        progress(0.9 + 0.1 * (k + 1) / len(reqs))
    return out


class Job:
    """Requests run one group after another: in a thread for the UI (``start``), or inline (``run``).

    The thread only computes; the UI polls ``progress``, ``message``, ``results`` and ``done``
    and builds scene data on Blender's main thread. A MasError fails its group's requests (the
    message is each one's error); any other exception is a bug: its traceback is printed and
    kept in ``failure``, and the job stops.
    """

    def __init__(self, requests: list[Request]):
        self.requests = list(requests)
        self.results: list[Result] = []
        self.progress = 0.0
        self.message = "starting"
        self.done = False
        self.failure = ""
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

    def groups(self) -> list[list[Request]]:
        out: list[list[Request]] = []
        for r in self.requests:
            if out and out[-1][0].group_key() == r.group_key():
                out[-1].append(r)
            else:
                out.append([r])
        return out

    def run(self) -> "Job":
        t0 = time.perf_counter()
        try:
            from mas_engine.errors import Cancelled, MasError
        except ImportError as e:
            self.results = [Result(r, error=f"engine not available ({e}); install the dependencies") for r in self.requests]
            self.message, self.done = "failed", True
            return self
        n, done = len(self.requests), 0
        try:
            for group in self.groups():
                if self.cancelled:
                    break
                self.message = f"{group[0].model}: {len(group)} motion(s), seed {group[0].seed}"

                def progress(f, done=done, size=len(group)):
                    self.progress = (done + f * size) / n
                try:
                    self.results += sample_group(group, progress, self._cancel.is_set)
                except Cancelled:
                    break
                except MasError as e:
                    self.results += [Result(r, error=str(e)) for r in group]
                done += len(group)
                self.progress = done / n
        except Exception as e:      # noqa: BLE001 - a bug: keep its traceback, stop, and say so
            traceback.print_exc()
            self.failure = f"unexpected {type(e).__name__}: {e} (a bug; the traceback is in the system console)"
        finally:
            self.seconds = time.perf_counter() - t0
            self.message = "cancelled" if self.cancelled else "failed" if self.failure else "done"
            self.done = True
        return self
