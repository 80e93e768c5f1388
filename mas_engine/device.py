"""Choosing the torch device, with a clear message when a GPU is asked for but absent."""
from __future__ import annotations

import torch

from .errors import MasError


def pick_device(name: str = "auto") -> torch.device:
    """'auto' (CUDA when available, else CPU), 'cpu', 'cuda' or 'cuda:N'."""
    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise MasError(f"device {name!r} asked for, but this torch build sees no CUDA GPU "
                           f"(torch {torch.__version__}); use --device cpu, or install a CUDA build of torch "
                           f"(see the README, 'GPU')")
        return torch.device(name)
    raise MasError(f"unknown device {name!r}; use auto, cpu or cuda")
