"""Checkpoints: loading and saving the weights (safetensors, never pickles) of a card
(``catalogue``: the card's rules and the model list, no torch).
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

from . import validate
from .atomic import atomic_write
from .catalogue import (DEFAULT_CAMERAS, FORMAT, MODELS_DIR, VERSION, ModelConfig, check_card, check_travel,
                        checkpoint_paths, read_card, resolve)
from .errors import MasError
from .model import MotionDenoiser


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
    def floor_prior(self) -> bool:
        """Whether MAS puts the lowest foot on one floor at every step by default (the card's
        ``mas_sampling.floor``; models whose views would lift the body ask for it)."""
        return bool(self.card.get("mas_sampling", {}).get("floor", False))

    @property
    def travel(self) -> str:
        """Where the body's horizontal travel comes from by default (``MasSettings.travel``): the card's
        ``mas_sampling.travel``, else "model" (its own); "blend": from the feet where it moves slowly."""
        return check_travel(self.card.get("mas_sampling", {}).get("travel", "model"),
                            f"model {self.name!r}: its card's mas_sampling.travel", "; fix the card or export the model again")

    @property
    def view_noise_share(self) -> float:
        """The share of the noise levels, the lowest, whose noise MAS draws for each view on its own by
        default (the card's ``mas_sampling.view_noise_share``; ``MasSettings.view_noise_share``)."""
        return self._share("view_noise_share")

    @property
    def noiseless_share(self) -> float:
        """The share of the noise levels, the lowest, whose steps add no fresh noise by default (the card's
        ``mas_sampling.noiseless_share``; ``MasSettings.noiseless_share``)."""
        return self._share("noiseless_share")

    @property
    def pace_guidance(self) -> float:
        """The pace guidance MAS samples with by default (``MasSettings.pace_guidance``): the card's
        ``mas_sampling.pace_guidance``, else 2; 1 for a model whose guidance was distilled into its weights."""
        return self._share("pace_guidance", default=2.0, most=10.0)

    @property
    def pace_shares(self) -> list[float] | None:
        """How often MAS draws each pace class for ``pace="data"`` (``sampler.pace_classes``), stillest first:
        the card's ``mas_sampling.pace_shares`` (one share a class, summing to 1), else None: each class as often
        as the training windows have it (a quarter each for 4 classes: they are its quantile bins)."""
        v = self.card.get("mas_sampling", {}).get("pace_shares")
        if v is None:
            return None
        return check_pace_shares(v, self.config.pace_classes, f"model {self.name!r}: its card's mas_sampling.pace_shares",
                                 "fix the card or export the model again")

    def _share(self, key: str, default: float = 0.0, most: float = 1.0) -> float:
        """The card's ``mas_sampling[key]``, checked to lie in 0 .. ``most``."""
        v = self.card.get("mas_sampling", {}).get(key, default)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= most:
            raise MasError(f"model {self.name!r}: its card's mas_sampling.{key} {v!r} is not a number from 0 "
                           f"to {most:g}; fix the card or export the model again")
        return float(v)

    @property
    def cameras(self) -> dict:
        """Default MAS views: elevation (degrees) and distance (metres)."""
        return self.card.get("mas_cameras", DEFAULT_CAMERAS)


def check_pace_shares(shares, classes: int, what: str = "--pace-shares", fix: str = "") -> list[float]:
    """``shares`` checked to be one share (0 .. 1) for each of ``classes`` pace classes, summing to 1 (within
    0.01); returned as floats scaled to sum to exactly 1."""
    if not classes:
        raise MasError(f"{what}: the model has no pace classes; pace shares need a model trained with --pace-classes")
    fix = fix or f"give {classes} shares from 0 to 1, stillest class first, that sum to 1"
    ok = (isinstance(shares, (list, tuple)) and len(shares) == classes
          and all(isinstance(x, (int, float)) and not isinstance(x, bool) and 0 <= x <= 1 for x in shares)
          and abs(sum(shares) - 1) <= 0.01)
    if not ok:
        raise MasError(f"{what} {shares!r} is not {classes} shares from 0 to 1 that sum to 1 (one a pace class); {fix}")
    return [float(x) / sum(shares) for x in shares]


def save_checkpoint(path, model: MotionDenoiser, card: dict, state_dict: dict | None = None,
                    dtype: torch.dtype = torch.float32) -> None:
    """Write NAME.safetensors and NAME.json atomically (each written then renamed).

    ``card`` is completed with the format, version and model config; ``state_dict``
    defaults to the model's (pass the EMA weights to ship those). ``dtype`` float16 halves
    the file for shipping; weights are cast back to float32 on load.
    """
    weights_path, card_path = checkpoint_paths(path)
    weights_path.parent.mkdir(parents=True, exist_ok=True)
    sd = state_dict if state_dict is not None else model.state_dict()
    tensors = {k: v.detach().to("cpu", dtype if v.is_floating_point() else v.dtype).contiguous() for k, v in sd.items()}
    card = dict(card, format=FORMAT, version=VERSION, model=model.cfg.to_dict(), weights_dtype=str(dtype).split(".")[-1])
    atomic_write(weights_path, lambda tmp: save_file(tensors, str(tmp)))
    atomic_write(card_path, lambda tmp: tmp.write_text(json.dumps(card, indent=2)))


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
    if not all(torch.isfinite(v).all() for v in state.values()) or \
            ("feature_std" in state and not (state["feature_std"] > 0).all()):
        raise MasError(f"weights {weights_path} hold values that are not finite (or a standard deviation that is "
                       f"not positive); the file is damaged: export or download the model again")
    model.load_state_dict({k: v.float() for k, v in state.items()})
    model.to(device).eval().requires_grad_(False)
    loaded = LoadedModel(name, model, card)
    loaded.pace_shares          # a card's broken pace shares or travel are refused here, before any sampling
    loaded.travel
    return loaded


MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


def export_model(src, name: str, dest=MODELS_DIR, note: str | None = None, overwrite: bool = False,
                 floor_prior: bool | None = None, view_noise_share: float | None = None,
                 noiseless_share: float | None = None, pace_shares: list[float] | None = None,
                 travel: str | None = None) -> Path:
    """Copy a checkpoint (EMA weights from 'mas train') into ``dest`` as NAME, in float16 (half the size).

    Returns the card's path. ``note`` is added to the card (how it was trained, where the data came from);
    ``floor_prior``: whether MAS uses the floor prior with this model by default (``LoadedModel.floor_prior``;
    None: as the checkpoint's card says); ``view_noise_share``, ``noiseless_share``: the same for
    ``LoadedModel.view_noise_share`` and ``LoadedModel.noiseless_share``; ``pace_shares``: how often MAS
    draws each pace class (``LoadedModel.pace_shares``); ``travel``: where the body's travel comes from
    by default (``LoadedModel.travel``).
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
    if floor_prior is not None:
        card["mas_sampling"] = {**card.get("mas_sampling", {}), "floor": bool(floor_prior)}
    for key, share in (("view_noise_share", view_noise_share), ("noiseless_share", noiseless_share)):
        if share is not None:
            validate.number(key.replace("_", " "), share, 0.0, 1.0)
            card["mas_sampling"] = {**card.get("mas_sampling", {}), key: float(share)}
    if pace_shares is not None:
        shares = check_pace_shares(pace_shares, loaded.config.pace_classes)
        card["mas_sampling"] = {**card.get("mas_sampling", {}), "pace_shares": shares}
    if travel is not None:
        card["mas_sampling"] = {**card.get("mas_sampling", {}), "travel": check_travel(travel)}
    save_checkpoint(Path(dest) / name, loaded.model, card, dtype=torch.float16)
    return (Path(dest) / name).with_suffix(".json")
