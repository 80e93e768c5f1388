"""Checkpoints: weights as safetensors plus a JSON card, never pickles.

A checkpoint is two files side by side, ``NAME.safetensors`` and ``NAME.json``. The JSON
holds everything needed to use the weights: the model config, the keypoint layout, the
normalisation (one global scale in metres), the frame rate, the default MAS cameras, and
where the training data came from with its licence.

Shipped models live in ``mas_engine/models/`` and are called by name (``human``).
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from rigs.keypoints import KeypointLayout

from .atomic import atomic_write
from .errors import MasError
from .model import ModelConfig, MotionDenoiser

FORMAT = "mas-checkpoint"
VERSION = 1
MODELS_DIR = Path(__file__).parent / "models"


@dataclass
class LoadedModel:
    """A denoiser ready for sampling, with what the sampler needs to know about it."""

    name: str
    model: MotionDenoiser
    card: dict

    @property
    def config(self) -> ModelConfig:
        return self.model.cfg

    @property
    def layout(self) -> KeypointLayout:
        return KeypointLayout.from_dict(self.card["layout"])

    @property
    def scale(self) -> float:
        """Metres per normalised unit."""
        return float(self.card["normalisation"]["scale"])

    @property
    def fps(self) -> float:
        return float(self.card["fps"])

    @property
    def root_motion(self) -> bool:
        return bool(self.card["normalisation"].get("root_motion", True))

    @property
    def cameras(self) -> dict:
        """Default MAS views: elevation (degrees) and distance (metres)."""
        return self.card.get("mas_cameras", {"elevation_deg": 11.25, "distance_m": 6.0})


def shipped_models() -> dict[str, Path]:
    """Names of the models that ship in the package -> their JSON card."""
    if not MODELS_DIR.is_dir():
        return {}
    return {p.stem: p for p in sorted(MODELS_DIR.glob("*.json")) if p.with_suffix(".safetensors").exists()}


def _paths(path) -> tuple[Path, Path]:
    p = Path(path)
    if p.suffix in (".json", ".safetensors"):
        p = p.with_suffix("")
    return p.with_suffix(".safetensors"), p.with_suffix(".json")


def save_checkpoint(path, model: MotionDenoiser, card: dict, state_dict: dict | None = None,
                    dtype: torch.dtype = torch.float32) -> None:
    """Write NAME.safetensors and NAME.json atomically (each written then renamed).

    ``card`` is completed with the format, version and model config; ``state_dict``
    defaults to the model's (pass the EMA weights to ship those). ``dtype`` float16 halves
    the file for shipping; weights are cast back to float32 on load.
    """
    weights_path, card_path = _paths(path)
    weights_path.parent.mkdir(parents=True, exist_ok=True)
    sd = state_dict if state_dict is not None else model.state_dict()
    tensors = {k: v.detach().to("cpu", dtype if v.is_floating_point() else v.dtype).contiguous() for k, v in sd.items()}
    card = dict(card, format=FORMAT, version=VERSION, model=model.cfg.to_dict(), weights_dtype=str(dtype).split(".")[-1])
    atomic_write(weights_path, lambda tmp: save_file(tensors, str(tmp)))
    atomic_write(card_path, lambda tmp: tmp.write_text(json.dumps(card, indent=2)))


def resolve(name_or_path) -> tuple[str, Path, Path]:
    """A shipped model's name or a checkpoint path -> (name, weights path, card path)."""
    s = str(name_or_path)
    if not s.strip():
        raise MasError("no model given; pass a shipped model's name (see 'mas models') or a checkpoint path")
    shipped = shipped_models()
    if s in shipped:
        w, c = _paths(shipped[s])
        return s, w, c
    w, c = _paths(s)
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
# what a sane card may say (the model is built before its weights are read: an absurd size would
# try to allocate it)
CARD_LIMITS = {"max_frames": (2, 100_000), "width": (8, 8192), "layers": (1, 128), "heads": (1, 128),
               "ff_width": (8, 32768), "num_joints": (1, 1000), "frames_per_token": (1, 64),
               "diffusion_steps": (1, 10_000)}


def check_config(cfg: ModelConfig, where: str) -> ModelConfig:
    """Every size of a model config within CARD_LIMITS (an absurd one would try to allocate it)."""
    for key, (lo, hi) in CARD_LIMITS.items():
        v = getattr(cfg, key)
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            raise MasError(f"{where}: model {key} {v!r} is not an integer in {lo}..{hi}")
    if cfg.width % cfg.heads:
        raise MasError(f"{where}: width {cfg.width} is not a multiple of heads {cfg.heads}")
    return cfg


def check_card(card: dict, card_path) -> ModelConfig:
    """The model config of a card, each number within CARD_LIMITS and the card's fps and scale
    positive and finite, else MasError naming the field."""
    import math

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
    if card.get("version", 0) > VERSION:
        raise MasError(f"{card_path} was written by a newer version of MAS (format {card['version']}); update MAS")
    return card


def load_checkpoint(name_or_path, device="cpu", layout: KeypointLayout | None = None) -> LoadedModel:
    """Load a shipped model or a checkpoint for sampling (eval mode, float32 on ``device``).

    ``layout``: when given, refuse a checkpoint made for another keypoint layout.
    """
    name, weights_path, card_path = resolve(name_or_path)
    card = read_card(card_path)
    cfg = check_card(card, card_path)
    try:
        ck_layout = KeypointLayout.from_dict(card["layout"])
    except (KeyError, TypeError, ValueError) as e:
        raise MasError(f"checkpoint card {card_path} is incomplete or invalid: {e}") from None
    if cfg.num_joints != ck_layout.num_joints:
        raise MasError(f"checkpoint {name}: model has {cfg.num_joints} joints but layout {ck_layout.name} has "
                       f"{ck_layout.num_joints}")
    if layout is not None and (layout.name != ck_layout.name or layout.num_joints != ck_layout.num_joints):
        raise MasError(f"checkpoint {name} is for keypoint layout {ck_layout.name} ({ck_layout.num_joints} joints), "
                       f"not {layout.name} ({layout.num_joints} joints); pick a model made for {layout.name}")
    try:
        state = load_file(str(weights_path))
    except (SafetensorError, OSError) as e:
        raise MasError(f"cannot read weights {weights_path}: {e}") from None
    model = MotionDenoiser(cfg)
    expected = model.state_dict()
    bad = [k for k in expected if k not in state or state[k].shape != expected[k].shape]
    if bad or set(state) - set(expected):
        raise MasError(f"weights {weights_path} do not fit the config in {card_path.name} "
                       f"(mismatched: {', '.join((bad or sorted(set(state) - set(expected)))[:4])})")
    model.load_state_dict({k: v.float() for k, v in state.items()})
    model.to(device).eval().requires_grad_(False)
    return LoadedModel(name, model, card)


MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


def export_model(src, name: str, dest=MODELS_DIR, note: str | None = None, overwrite: bool = False) -> Path:
    """Copy a checkpoint (EMA weights from 'mas train') into ``dest`` as NAME, in float16 (half the size).

    Returns the card's path. ``note`` is added to the card (how it was trained, where the data came from).
    NAME is a plain file name (no folders); an existing model of that name is kept unless ``overwrite``.
    """
    if not MODEL_NAME.fullmatch(str(name)) or ".." in str(name):
        raise MasError(f"model name {name!r} must be letters, digits, '_' or '-' (no folders, at most 64); "
                       f"use --dest to choose the folder")
    target = Path(dest) / name
    if not overwrite:
        existing = [p for p in (target.with_suffix(".json"), target.with_suffix(".safetensors")) if os.path.lexists(p)]
        if existing:
            raise MasError(f"{existing[0]} exists; pass --overwrite to replace model {name!r}, or choose another --name")
    loaded = load_checkpoint(src)
    card = {k: v for k, v in loaded.card.items() if k not in ("format", "version", "model", "weights_dtype")}
    if note:
        card["note"] = note
    save_checkpoint(Path(dest) / name, loaded.model, card, dtype=torch.float16)
    return (Path(dest) / name).with_suffix(".json")
