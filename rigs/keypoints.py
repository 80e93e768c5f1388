"""Keypoint layouts: the joint sets that 2D data, models and generated 3D motions use.

A layout is plain data (names, parents, left/right pairs) shared by the engine, the
retargeting and the Blender add-on. Parents make a tree rooted at joint 0, which is
how motions are drawn and how bone lengths are measured; ``mirror`` maps every joint
to its left/right twin (itself for joints on the mid-line), used for mirror
augmentation.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class KeypointLayout:
    """A named set of keypoints with a parent tree.

    name:    identifier stored in data sets and checkpoints (``"human16"``).
    joints:  joint names, in array order.
    parents: parent index of every joint, -1 for the root (any one joint; a tree).
    pairs:   (left, right) index pairs swapped by mirroring.
    floor_offset: height in metres of the lowest keypoint above the floor when the
             subject stands (ankles for humans); used to put generated motions on Z = 0.
    optional: joints that may be missing (NaN in capture, e.g. a ball out of view): masked
             like a low-confidence joint, and not part of any bone (``bones``).
    feet:    the joints that touch the floor (ankles, hooves): the sampler's floor prior keeps
             the lowest of them on one floor.
    """

    name: str
    joints: tuple[str, ...]
    parents: tuple[int, ...]
    pairs: tuple[tuple[int, int], ...] = ()
    floor_offset: float = 0.0
    description: str = field(default="", compare=False)
    optional: tuple[str, ...] = ()
    feet: tuple[str, ...] = field(default=(), compare=False)

    def __post_init__(self):
        n = len(self.joints)
        if len(self.parents) != n:
            raise ValueError(f"layout {self.name}: {n} joints but {len(self.parents)} parents")
        if n == 0 or list(self.parents).count(-1) != 1:
            raise ValueError(f"layout {self.name}: exactly one joint must be the root (parent -1)")
        for j, p in enumerate(self.parents):
            if not -1 <= p < n or p == j:
                raise ValueError(f"layout {self.name}: bad parent {p} for {self.joints[j]}")
        for j in range(n):  # every joint reaches the root: a tree, no cycles
            k, steps = j, 0
            while self.parents[k] >= 0 and steps <= n:
                k, steps = self.parents[k], steps + 1
            if steps > n:
                raise ValueError(f"layout {self.name}: the parents of {self.joints[j]} form a cycle")
        for a, b in self.pairs:
            if not (0 <= a < n and 0 <= b < n):
                raise ValueError(f"layout {self.name}: mirror pair ({a}, {b}) out of range")
        unknown = [j for j in self.optional + self.feet if j not in self.joints]
        if unknown:
            raise ValueError(f"layout {self.name}: optional joint(s) {', '.join(unknown)} are not in the layout")

    @property
    def root(self) -> int:
        """Index of the root joint: where a motion's trajectory is measured."""
        return list(self.parents).index(-1)

    @property
    def num_joints(self) -> int:
        return len(self.joints)

    @property
    def bones(self) -> list[tuple[int, int]]:
        """(parent, child) index pairs, one per non-root joint that is not optional."""
        return [(p, j) for j, p in enumerate(self.parents) if p >= 0 and self.joints[j] not in self.optional]

    @property
    def mirror(self) -> list[int]:
        """Index permutation that swaps left and right joints."""
        perm = list(range(self.num_joints))
        for a, b in self.pairs:
            perm[a], perm[b] = b, a
        return perm

    def index(self, name: str) -> int:
        return self.joints.index(name)

    def to_dict(self) -> dict:
        return {"name": self.name, "joints": list(self.joints), "parents": list(self.parents),
                "pairs": [list(p) for p in self.pairs], "floor_offset": self.floor_offset,
                "optional": list(self.optional), "feet": list(self.feet)}

    @classmethod
    def from_dict(cls, d: dict) -> "KeypointLayout":
        return cls(name=d["name"], joints=tuple(d["joints"]), parents=tuple(int(p) for p in d["parents"]),
                   pairs=tuple(tuple(int(i) for i in p) for p in d.get("pairs", ())),
                   floor_offset=float(d.get("floor_offset", 0.0)), optional=tuple(d.get("optional", ())),
                   feet=tuple(d["feet"]) if "feet" in d else _builtin_feet(d))


def _builtin_feet(d: dict) -> tuple[str, ...]:
    """Cards written before layouts named their feet: a built-in layout's, if it is one."""
    known = LAYOUTS.get(d.get("name"))
    return known.feet if known is not None and list(known.joints) == list(d.get("joints", ())) else ()


# The 16 joints of the paper's NBA data, in the reference code's order.
HUMAN16 = KeypointLayout(
    name="human16",
    joints=("pelvis", "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle",
            "neck", "nose", "head", "left_shoulder", "left_elbow", "left_wrist",
            "right_shoulder", "right_elbow", "right_wrist"),
    parents=(-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 7, 10, 11, 7, 13, 14),
    pairs=((1, 4), (2, 5), (3, 6), (10, 13), (11, 14), (12, 15)),
    floor_offset=0.10,
    feet=("left_ankle", "right_ankle"),
    description="Human, 16 keypoints as in the MAS paper's NBA data (pelvis is the mid-hip).",
)

# The 17 keypoints of the paper's horse data (APT-36K style), in the reference's order.
HORSE17 = KeypointLayout(
    name="horse17",
    joints=("left_eye", "right_eye", "nose", "neck", "tail", "left_front_shoulder", "left_front_knee",
            "left_front_hoof", "right_front_shoulder", "right_front_knee", "right_front_hoof", "left_back_hip",
            "left_back_knee", "left_back_hoof", "right_back_hip", "right_back_knee", "right_back_hoof"),
    parents=(2, 2, 3, -1, 3, 3, 5, 6, 3, 8, 9, 4, 11, 12, 4, 14, 15),
    pairs=((0, 1), (5, 8), (6, 9), (7, 10), (11, 14), (12, 15), (13, 16)),
    floor_offset=0.03,
    feet=("left_front_hoof", "right_front_hoof", "left_back_hoof", "right_back_hoof"),
    description="Quadruped, 17 keypoints as in the MAS paper's horse data (root: the neck).",
)

_COCO_JOINTS = ("nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
                "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee",
                "right_knee", "left_ankle", "right_ankle")

# COCO's 17 keypoints, what most pose estimators output (AlphaPose, MMPose, Detectron2, OpenPose's subset).
COCO17 = KeypointLayout(
    name="coco17",
    joints=_COCO_JOINTS,
    parents=(5, 0, 0, 1, 2, 11, 12, 5, 6, 7, 8, -1, 11, 11, 12, 13, 14),
    pairs=((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16)),
    floor_offset=0.10,
    feet=("left_ankle", "right_ankle"),
    description="Human, COCO's 17 keypoints (root: the left hip).",
)

# COCO's 17 keypoints (what most pose estimators output) plus a ball, as in the paper's gymnastics data.
COCO17_BALL = KeypointLayout(
    name="coco17_ball",
    joints=_COCO_JOINTS + ("ball",),
    parents=(5, 0, 0, 1, 2, 11, 12, 5, 6, 7, 8, -1, 11, 11, 12, 13, 14, 10),
    pairs=((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16)),
    floor_offset=0.10,
    optional=("ball",),
    feet=("left_ankle", "right_ankle"),
    description="Human, COCO's 17 keypoints, plus the ball (optional: masked where not seen). Root: the left hip.",
)

LAYOUTS = {L.name: L for L in (HUMAN16, HORSE17, COCO17, COCO17_BALL)}

# the built-in character each layout drives, and the layout that character's keypoints use
# (a COCO motion drives the human rig through ``coco17_to_human16``; the ball becomes a prop)
RIG_OF_LAYOUT = {"human16": "human", "horse17": "horse", "coco17": "human", "coco17_ball": "human"}


def rig_of(layout_name: str) -> str:
    """The built-in rig ("human", "horse") for motions of a layout; "" when there is none."""
    return RIG_OF_LAYOUT.get(layout_name, "")


def coco17_to_human16(joints, layout: KeypointLayout):
    """COCO-17 keypoints (frames x J x 3, metres, Z up; extra joints ignored) -> human16.

    Same-named joints are copied; pelvis = mid-hip; neck = mid-shoulder raised 6 cm along the
    torso (human16's neck sits above the shoulder line); head (top) = mid-ear raised 12 cm along
    the neck -> mid-ear direction. Eyes and ears are not used otherwise.
    """
    import numpy as np

    def at(n):
        return joints[:, layout.index(n)]

    def unit(v):
        return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-9)

    out = np.empty((joints.shape[0], HUMAN16.num_joints, 3))
    for j, n in enumerate(HUMAN16.joints):
        if n in layout.joints:
            out[:, j] = at(n)
    pelvis = 0.5 * (at("left_hip") + at("right_hip"))
    shoulders = 0.5 * (at("left_shoulder") + at("right_shoulder"))
    neck = shoulders + 0.06 * unit(shoulders - pelvis)
    ears = 0.5 * (at("left_ear") + at("right_ear"))
    out[:, HUMAN16.index("pelvis")] = pelvis
    out[:, HUMAN16.index("neck")] = neck
    out[:, HUMAN16.index("head")] = ears + 0.12 * unit(ears - neck)
    return out


# layouts whose body is retargeted through another layout's rig: name -> (that layout, conversion)
BODY_LAYOUT = {"coco17_ball": (HUMAN16, coco17_to_human16), "coco17": (HUMAN16, coco17_to_human16)}


def body_keypoints(joints, layout: KeypointLayout):
    """(layout, joints) of the body as its rig's keypoints: unchanged unless the layout is driven
    through another (COCO -> human16). joints: frames x J x 3, metres, Z up."""
    if layout.name in BODY_LAYOUT:
        to, convert = BODY_LAYOUT[layout.name]
        return to, convert(joints, layout)
    return layout, joints


def get_layout(name: str) -> KeypointLayout:
    """The built-in layout called ``name``; a clear error lists the known ones."""
    try:
        return LAYOUTS[name]
    except KeyError:
        raise KeyError(f"unknown keypoint layout {name!r}; known layouts: {', '.join(sorted(LAYOUTS))}") from None


def layout_from_file(path) -> tuple[KeypointLayout, dict[str, str]]:
    """A user's keypoint layout from a small JSON or TOML file. Returns it and ``source_names``
    ({name in the keypoint files: joint}, for DeepLabCut body parts; empty if not given).

        name = "mouse5"
        joints = ["neck", "snout", "left_ear", "right_ear", "tail_base"]
        edges = [["neck", "snout"], ["neck", "left_ear"], ["neck", "right_ear"], ["neck", "tail_base"]]
        root = "neck"                     # optional: the first joint
        pairs = [["left_ear", "right_ear"]]   # left/right twins, for mirroring
        floor_offset = 0.0                # optional, metres
        [source_names]                    # optional
        nose = "snout"

    Raises ValueError naming the file and the problem.
    """
    import json
    import tomllib
    from pathlib import Path

    path = Path(path)
    try:
        text = path.read_text()
        d = tomllib.loads(text) if path.suffix.lower() == ".toml" else json.loads(text)
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: cannot read the layout file ({e})") from None
    try:
        joints = tuple(str(j) for j in d["joints"])
        if len(set(joints)) != len(joints):
            raise ValueError("joint names repeat")
        root = str(d.get("root", joints[0]))
        edges = [tuple(map(str, e)) for e in d["edges"]]
        for a, b in edges:
            if a not in joints or b not in joints:
                raise ValueError(f"edge {a}-{b} names a joint that is not in 'joints'")
        parents = {root: -1}
        frontier = [root]
        while frontier:            # breadth-first from the root: edges may be given either way round
            j = frontier.pop(0)
            for a, b in edges:
                for u, v in ((a, b), (b, a)):
                    if u == j and v not in parents:
                        parents[v] = joints.index(j)
                        frontier.append(v)
        unreached = [j for j in joints if j not in parents]
        if unreached:
            raise ValueError(f"joint(s) {', '.join(unreached)} are not connected to the root {root} by edges")
        pairs = tuple((joints.index(a), joints.index(b)) for a, b in d.get("pairs", []))
        layout = KeypointLayout(name=str(d["name"]), joints=joints, parents=tuple(parents[j] for j in joints),
                                pairs=pairs, floor_offset=float(d.get("floor_offset", 0.0)),
                                description=str(d.get("description", f"user layout from {path.name}")))
    except (KeyError, TypeError, IndexError) as e:
        raise ValueError(f"{path}: the layout needs name, joints and edges ({type(e).__name__}: {e})") from None
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
    if layout.name in LAYOUTS and LAYOUTS[layout.name] != layout:
        raise ValueError(f"{path}: the name {layout.name} is a built-in layout's; choose another name")
    return layout, {str(k): str(v) for k, v in d.get("source_names", {}).items()}