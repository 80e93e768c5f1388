"""The models the panel offers, cached: shipped ones by name, then the checkpoints in the
preferences' models folder, each with why it cannot be used (``mas_engine.catalogue``, no torch).
The cache is filled at register time and when the folder changes or Refresh is pressed, so a
panel's ``draw`` and an enum's items only read it. No ``bpy`` here.
"""
from __future__ import annotations

from mas_engine import catalogue
from mas_engine.errors import MasError

_CACHE: dict = {"folder": None, "models": {}}


def refresh(folder: str = "") -> dict:
    """Read the cards again (a few small JSON files); returns {key: catalogue.ModelInfo}."""
    _CACHE.update(folder=folder, models=catalogue.list_models(folder or None))
    return _CACHE["models"]


def models(folder: str = "") -> dict:
    """The cached list (read once if the folder changed since)."""
    if _CACHE["folder"] != folder:
        refresh(folder)
    return _CACHE["models"]


def model_info(model: str, folder: str = "") -> catalogue.ModelInfo:
    """A usable model's facts (a shipped name, a listed key, or a checkpoint path); MasError otherwise."""
    info = models(folder).get(model)
    if info is None:
        return catalogue.model_info(model, folder or None)
    if info.problem:
        raise MasError(f"model {info.name} cannot be used: {info.problem}")
    return info
