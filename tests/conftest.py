"""Shared fixtures: tiny models and synthetic motions the tests make themselves."""
from __future__ import annotations

import math
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mas_engine.checkpoint import save_checkpoint
from mas_engine.model import ModelConfig, MotionDenoiser
from rigs.keypoints import HUMAN16

SAMPLES = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "samples"


def tiny_card(layout=HUMAN16, scale=0.5, fps=30.0):
    return {"layout": layout.to_dict(), "fps": fps,
            "normalisation": {"scale": scale, "root_motion": True},
            "mas_cameras": {"elevation_deg": 11.25, "distance_m": 6.0},
            "training": {"data": "none (random weights, for tests)"}, "licence": "test"}


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A randomly initialised small human16 model saved as a checkpoint (path without suffix)."""
    torch.manual_seed(0)
    cfg = ModelConfig(num_joints=16, max_frames=48, width=32, layers=1, heads=2, ff_width=64, diffusion_steps=20)
    model = MotionDenoiser(cfg)
    path = tmp_path_factory.mktemp("ckpt") / "tiny"
    save_checkpoint(path, model, tiny_card())
    return path


def walking_figure(frames: int = 90, fps: float = 30.0, speed: float = 1.2, heading: float = 0.3) -> np.ndarray:
    """A synthetic human16 motion: a stick figure walking in a straight line (frames x 16 x 3, m, Z up)."""
    t = np.arange(frames) / fps
    ph = 2 * math.pi * 1.8 * t
    names = HUMAN16.joints
    rest = {
        "pelvis": (0, 0, 0.95), "right_hip": (0, -0.1, 0.95), "left_hip": (0, 0.1, 0.95),
        "right_knee": (0, -0.1, 0.52), "left_knee": (0, 0.1, 0.52),
        "right_ankle": (0, -0.1, 0.1), "left_ankle": (0, 0.1, 0.1),
        "neck": (0, 0, 1.45), "nose": (0.1, 0, 1.55), "head": (0, 0, 1.7),
        "left_shoulder": (0, 0.18, 1.42), "right_shoulder": (0, -0.18, 1.42),
        "left_elbow": (0, 0.2, 1.15), "right_elbow": (0, -0.2, 1.15),
        "left_wrist": (0, 0.2, 0.9), "right_wrist": (0, -0.2, 0.9),
    }
    X = np.zeros((frames, 16, 3))
    for j, n in enumerate(names):
        X[:, j] = rest[n]
    swing = 0.25 * np.sin(ph)
    for side, sgn in (("left", 1), ("right", -1)):
        X[:, names.index(f"{side}_knee"), 0] += sgn * swing * 0.5
        X[:, names.index(f"{side}_ankle"), 0] += sgn * swing
        X[:, names.index(f"{side}_wrist"), 0] -= sgn * swing * 0.8
        X[:, names.index(f"{side}_elbow"), 0] -= sgn * swing * 0.4
    c, s = math.cos(heading), math.sin(heading)
    X = X @ np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]).T
    X[..., 0] += speed * t[:, None] * c
    X[..., 1] += speed * t[:, None] * s
    return X


# The bpy modules of Blender 4.2 and 4.5 can hang or crash at interpreter exit after a glTF export
# (a bug of those wheels; Blender itself quits fine). Under test_blender_versions.py the child
# pytest leaves with its own exit status once its summary is written.
_STATUS: dict = {}


def pytest_sessionfinish(session, exitstatus):
    _STATUS["exit"] = int(exitstatus)


def pytest_unconfigure(config):
    if os.environ.get("MAS_EXIT_AFTER_TESTS"):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(_STATUS.get("exit", 1))


def gliding_figure(frames=60, fps=30.0, speed=0.15):
    """A human16 figure standing on slightly bent legs (thigh and shin 0.412 m) while its whole body,
    feet included, glides forward at ``speed`` m/s (frames x 16 x 3, m, Z up); the right foot is
    lifted 0.3 m and swung in frames 40-59."""
    X = np.zeros((frames, 16, 3))
    for name, at in (("pelvis", (0, 0, 0.95)), ("neck", (0, 0, 1.45)), ("nose", (0.1, 0, 1.6)), ("head", (0, 0, 1.7))):
        X[:, HUMAN16.index(name)] = at
    for side, y in (("left", 0.1), ("right", -0.1)):
        X[:, HUMAN16.index(f"{side}_hip")] = (0, y, 0.9)
        X[:, HUMAN16.index(f"{side}_knee")] = (0.1, y, 0.5)
        X[:, HUMAN16.index(f"{side}_ankle")] = (0, y, 0.1)
        X[:, HUMAN16.index(f"{side}_shoulder")] = (0, 2 * y, 1.4)
        X[:, HUMAN16.index(f"{side}_elbow")] = (0, 2.5 * y, 1.1)
        X[:, HUMAN16.index(f"{side}_wrist")] = (0, 2.5 * y, 0.85)
    X[..., 0] += speed * np.arange(frames)[:, None] / fps
    swing = np.arange(40, frames)
    X[swing, HUMAN16.index("right_ankle")] += np.stack([0.02 * (swing - 39), 0 * swing, 0.3 + 0 * swing], -1)
    return X
