"""The model catalogue: checkpoint cards, their rules, and the models a user can pick. No torch.

A checkpoint is two files side by side, ``NAME.safetensors`` and ``NAME.json``. The JSON card
holds everything needed to use the weights: the model config (``ModelConfig``), the keypoint
layout, the normalisation (one global scale in metres), the frame rate, the default MAS
cameras, and where the training data came from with its licence. Shipped models live in
``mas_engine/models/`` and are called by name (``human``).

This module reads and checks cards without torch, so that a user interface (the Blender
add-on) can list models before the engine's dependencies are installed; ``checkpoint`` loads
the weights.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from rigs.keypoints import KeypointLayout, rig_of

from .errors import MasError

FORMAT = "mas-checkpoint"
VERSION = 1
MODELS_DIR = Path(__file__).parent / "models"
# the MAS views of a model whose card does not say: the paper's elevation (degrees) and a distance (metres)
DEFAULT_CAMERAS = {"elevation_deg": 11.25, "distance_m": 6.0}
TRAVELS = ("model", "feet", "blend")   # where a motion's horizontal travel comes from (postprocess.finish_motions)
PACES = ("data", "training", "any")    # MasSettings.pace's names (sampler.pace_classes); otherwise a class number


def check_travel(value, what: str = "travel", fix: str = "") -> str:
    """``value`` if it is one of ``TRAVELS``, else a MasError naming ``what`` and the choices (and ``fix``)."""
    if value not in TRAVELS:
        raise MasError(f"{what} {value!r} is not known; use 'model' (the model's own travel), 'feet' (the travel "
                       f"the feet imply) or 'blend' (the feet's where the body moves slowly){fix}")
    return value


@dataclass
class ModelConfig:
    num_joints: int = 16
    max_frames: int = 120
    frames_per_token: int = 2
    width: int = 256
    layers: int = 4
    heads: int = 4
    ff_width: int = 512
    dropout: float = 0.1
    diffusion_steps: int = 100
    schedule: str = "cosine"
    output: str = "frames"      # "frames": each token gives its frames; "upsampled": one value a token,
                                # the frames interpolated between token centres (it cannot alternate)
    prediction: str = "x0"      # what the network's output is: "x0", the clean motion; or "v", the velocity
                                # sqrt(ab) eps - sqrt(1 - ab) x0 (Salimans & Ho 2022), from which the model
                                # still returns x0: a nearly clean input then passes through unless changed
    frame: str = "image"        # what the network reads and writes: "image", every joint where it is in the
                                # image; or "root", every joint relative to the root joint in its frame, the
                                # root where it is
    root: int = 0               # the root joint's index (the layout's), for frame = "root"
    output_norm: bool = True    # a LayerNorm before the output layer (pre-LN transformers end with one); without
                                # it the residual stream, which carries the input, reaches the output linearly
    standardise: bool = False   # the network reads and writes every coordinate (in its frame) z-scored by the
                                # training data's mean and std, its input also scaled to unit variance at every
                                # noise level; the statistics are part of the weights
    skip_radius: int = 0        # a linear skip: x0 = h_t * x_t + c_t network, x_t filtered over 2 r + 1 frames by
                                # step t's learned filter, c_t what it leaves; fit when a run starts; 0: none
    self_condition: bool = False  # the network also reads an earlier x0 estimate (self-conditioning, Chen et al.
                                  # 2022): at sampling the step before's (MAS's consistent one), in training its
                                  # own x0 of the same x_t for half the windows (zeros for the rest, and at the
                                  # first step)
    pace_classes: int = 0       # the network also reads how much the motion moves: one of this many pace classes
                                # (quantiles of the training windows' pace, ``pace_measure``), or "any" (the
                                # class the training drops for a tenth of the windows); 0: no pace input
    pace_measure: str = "speed"  # what the pace classes bin: "speed", the mean speed of all joints over 0.2 s
                                 # (``window_pace``); or "reach", how far the most moving joint goes in 1 s
                                 # (``window_reach``: a tremor is little, one arm's long sweep much)

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def alternates(self) -> bool:
        """Whether the model's frames can alternate at half the frame rate (two or more frames a token,
        each from the token's own output): ``postprocess.remove_alternation`` then runs on its motion."""
        return self.frames_per_token > 1 and self.output == "frames"

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown model settings: {', '.join(sorted(unknown))}")
        return cls(**d)



def shipped_models() -> dict[str, Path]:
    """Names of the models that ship in the package -> their JSON card."""
    if not MODELS_DIR.is_dir():
        return {}
    return {p.stem: p for p in sorted(MODELS_DIR.glob("*.json")) if p.with_suffix(".safetensors").exists()}


def checkpoint_paths(path) -> tuple[Path, Path]:
    """NAME, NAME.json or NAME.safetensors -> (weights path, card path)."""
    p = Path(path)
    if p.suffix in (".json", ".safetensors"):
        p = p.with_suffix("")
    return p.with_suffix(".safetensors"), p.with_suffix(".json")


def resolve(name_or_path) -> tuple[str, Path, Path]:
    """A shipped model's name or a checkpoint path -> (name, weights path, card path)."""
    s = str(name_or_path)
    if not s.strip():
        raise MasError("no model given; pass a shipped model's name (see 'mas models') or a checkpoint path")
    shipped = shipped_models()
    if s in shipped:
        w, c = checkpoint_paths(shipped[s])
        return s, w, c
    w, c = checkpoint_paths(s)
    if not w.exists() or not c.exists():
        if os.sep not in s and "/" not in s and not s.endswith((".json", ".safetensors")):
            known = ", ".join(shipped) or "none installed"
            raise MasError(f"unknown model {s!r}: not a shipped model (shipped: {known}) and no checkpoint "
                           f"{w.name} + {c.name} here; pass a shipped name or a checkpoint path")
        missing = [str(p) for p in (w, c) if not p.exists()]
        raise MasError(f"checkpoint not found: {', '.join(missing)} missing (a checkpoint is NAME.safetensors "
                       f"plus NAME.json, as 'mas train' writes them)")
    for p in (w, c):
        if not p.is_file():                 # a FIFO or device would hang or never end
            raise MasError(f"checkpoint file {p} is not a regular file")
        if p.stat().st_size > MAX_FILE_BYTES:
            raise MasError(f"checkpoint file {p} is {p.stat().st_size / 1e9:.1f} GB, more than any MAS model; "
                           f"is it the right file?")
    return w.stem, w, c


MAX_FILE_BYTES = 2_000_000_000
MAX_CARD_BYTES = 10_000_000         # a card is a few kB of JSON
# what a sane card may say (the model is built before its weights are read: an absurd size would
# try to allocate it)
CARD_LIMITS = {"max_frames": (2, 100_000), "width": (8, 8192), "layers": (1, 128), "heads": (1, 128),
               "ff_width": (8, 32768), "num_joints": (1, 1000), "frames_per_token": (1, 64),
               "diffusion_steps": (1, 10_000), "skip_radius": (0, 64), "pace_classes": (0, 64)}
OUTPUTS = ("frames", "upsampled")
PREDICTIONS = ("x0", "v")
FRAMES = ("image", "root")
SCHEDULES = ("cosine", "cosine_tau_2")
PACE_MEASURES = ("speed", "reach")


def check_config(cfg: ModelConfig, where: str) -> ModelConfig:
    """Every size of a model config within CARD_LIMITS (an absurd one would try to allocate it)."""
    for key, (lo, hi) in CARD_LIMITS.items():
        v = getattr(cfg, key)
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            raise MasError(f"{where}: model {key} {v!r} is not an integer in {lo}..{hi}")
    if cfg.width % cfg.heads:
        raise MasError(f"{where}: width {cfg.width} is not a multiple of heads {cfg.heads}")
    if cfg.output not in OUTPUTS:
        raise MasError(f"{where}: model output {cfg.output!r} is not one of {', '.join(OUTPUTS)}")
    if cfg.schedule not in SCHEDULES:
        raise MasError(f"{where}: noise schedule {cfg.schedule!r} is not one of {', '.join(SCHEDULES)}")
    if cfg.prediction not in PREDICTIONS:
        raise MasError(f"{where}: model prediction {cfg.prediction!r} is not one of {', '.join(PREDICTIONS)}")
    if cfg.frame not in FRAMES:
        raise MasError(f"{where}: model frame {cfg.frame!r} is not one of {', '.join(FRAMES)}")
    if cfg.pace_measure not in PACE_MEASURES:
        raise MasError(f"{where}: pace measure {cfg.pace_measure!r} is not one of {', '.join(PACE_MEASURES)}")
    if isinstance(cfg.root, bool) or not isinstance(cfg.root, int) or not 0 <= cfg.root < cfg.num_joints:
        raise MasError(f"{where}: model root {cfg.root!r} is not a joint index below {cfg.num_joints}")
    for key in ("standardise", "output_norm"):
        if not isinstance(getattr(cfg, key), bool):
            raise MasError(f"{where}: model setting {key} {getattr(cfg, key)!r} is not true or false")
    return cfg


def check_card(card: dict, card_path) -> ModelConfig:
    """The model config of a card, each number within CARD_LIMITS and the card's fps and scale
    positive and finite, else MasError naming the field."""
    try:
        cfg = ModelConfig.from_dict(card["model"])
        fps, scale = float(card["fps"]), float(card["normalisation"]["scale"])
    except (KeyError, TypeError, ValueError) as e:
        raise MasError(f"checkpoint card {card_path} is incomplete or invalid: {e}") from None
    check_config(cfg, f"checkpoint card {card_path} (damaged)")
    for key, v, hi in (("fps", fps, 1000.0), ("normalisation scale", scale, 1e6)):
        if not (math.isfinite(v) and 0 < v <= hi):
            raise MasError(f"checkpoint card {card_path}: {key} {v} is not a positive number up to {hi:g}; "
                           f"the card is damaged")
    return cfg


def read_card(card_path: Path) -> dict:
    try:
        card = json.loads(Path(card_path).read_text())
    except (OSError, ValueError) as e:
        raise MasError(f"cannot read checkpoint card {card_path}: {e}") from None
    if not isinstance(card, dict) or card.get("format") != FORMAT:
        raise MasError(f"{card_path} is not a MAS checkpoint card (no \"format\": \"{FORMAT}\")")
    return _check_version(card, card_path)


def _check_version(card: dict, card_path) -> dict:
    if card.get("version", 0) > VERSION:
        raise MasError(f"{card_path} was written by a newer version of MAS (format {card['version']}); update MAS")
    return card


@dataclass
class ModelInfo:
    """What a model list shows of one checkpoint. ``problem``: why it cannot be used ("" if it can)."""

    name: str           # a shipped model's name, or the checkpoint's stem
    path: str           # the checkpoint without suffix (what load_checkpoint takes)
    shipped: bool
    layout: str = "?"
    rig: str = ""       # the built-in character it drives ("" for none)
    fps: float = 0.0
    size_mb: float = 0.0
    note: str = ""      # how it was trained and the data's licence
    problem: str = ""

    @property
    def usable(self) -> bool:
        return not self.problem


def describe(card_path, shipped: bool = False) -> ModelInfo | None:
    """The facts of one card, with the reason it cannot be used; None when the JSON file is not a
    MAS card at all (other JSON files may share a folder with checkpoints)."""
    card_path = Path(card_path)
    weights = card_path.with_suffix(".safetensors")
    info = ModelInfo(card_path.stem, str(card_path.with_suffix("")), shipped)
    try:
        raw = json.loads(card_path.read_text()) if card_path.stat().st_size <= MAX_CARD_BYTES else None
    except (OSError, ValueError):
        raw = None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        return None
    try:
        card = _check_version(raw, card_path)         # read once, above
        check_card(card, card_path)
        layout = KeypointLayout.from_dict(card["layout"])
        info.layout, info.rig, info.fps = layout.name, rig_of(layout.name), float(card["fps"])
        info.note = str(card.get("note", card.get("licence", "")))
        if not weights.is_file():
            raise MasError(f"{weights.name} is missing")
        info.size_mb = weights.stat().st_size / 2 ** 20
    except (MasError, KeyError, TypeError, ValueError) as e:
        info.problem = str(e)
    return info


def list_models(folder=None) -> dict[str, ModelInfo]:
    """Shipped models by name, then the cards in ``folder`` (a user's checkpoints) by path,
    unusable ones included with their ``problem``."""
    out = {name: describe(card, shipped=True) for name, card in shipped_models().items()}
    if folder and Path(folder).is_dir():
        for card in sorted(Path(folder).glob("*.json")):
            info = describe(card)
            if info is not None:
                out[info.path] = info
    return {k: v for k, v in out.items() if v is not None}


def model_info(model: str, folder=None) -> ModelInfo:
    """The facts of a shipped model's name or a checkpoint path; MasError when it cannot be used."""
    models = list_models(folder)
    info = models.get(model)
    if info is None:
        _, _, card = resolve(model)
        info = describe(card)
        if info is None:
            raise MasError(f"{card} is not a MAS checkpoint card (no \"format\": \"{FORMAT}\")")
    if info.problem:
        raise MasError(f"model {info.name} cannot be used: {info.problem}")
    return info
