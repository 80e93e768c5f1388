"""Where the engine and its dependencies come from, and whether they import. No ``bpy`` here.

Search order: the engine copy inside the extension (``vendor/``, which matches this add-on's
version; in a development checkout, the repository itself), then the user's "engine path" (an
environment with torch), then the add-on's own dependency folder (filled by "Install
dependencies"). ``status()`` is cached: importing torch takes a second, so panels read the
cached line and ``refresh()`` runs when the paths change or an install ends.
"""
from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
VENDOR = HERE / "vendor"
CHECKOUT = HERE.parent if (HERE.parent / "mas_engine").is_dir() else None     # a development checkout
# pinned like requirements.txt; numpy comes with Blender
DEPENDENCIES = ("torch==2.13.0", "scipy==1.17.1", "safetensors==0.8.0", "tqdm==4.70.1")
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"

_STATUS: dict = {"ok": None, "line": "checking the engine..."}


def add_paths(*paths) -> None:
    """Put folders on sys.path (first given = first searched), once each; skip missing ones."""
    for p in reversed([str(p) for p in paths if p and os.path.isdir(str(p))]):
        if p not in sys.path:
            sys.path.insert(0, p)
    importlib.invalidate_caches()


def setup_paths(engine_path: str = "", deps_path: str = "") -> None:
    """The engine copy shipped inside the extension (or the checkout) first, then the user's
    engine path and the add-on's dependency folder (torch and the other packages)."""
    add_paths(VENDOR if VENDOR.is_dir() else CHECKOUT, engine_path, deps_path)


def refresh() -> tuple[bool, str]:
    """Import torch and the engine now and cache (usable, one line for the panel)."""
    try:
        import torch

        importlib.import_module("mas_engine.sampler")
        importlib.import_module("retarget.retarget")
        importlib.import_module("mas_app.pipeline")
    except ImportError as e:
        what = e.name or str(e)
        _STATUS.update(ok=False, line=f"engine not available: {what} is missing. Install the dependencies (add-on "
                                      f"preferences) or set an engine path to a Python environment that has them")
    else:
        gpu = "CUDA GPU" if torch.cuda.is_available() else "no GPU"
        _STATUS.update(ok=True, line=f"torch {torch.__version__.split('+')[0]}, {gpu}")
    return _STATUS["ok"], _STATUS["line"]


def status() -> tuple[bool | None, str]:
    """The cached (usable, line); usable is None until ``refresh`` has run."""
    return _STATUS["ok"], _STATUS["line"]


def install_command(target: str, cpu_only: bool = True) -> list[str]:
    """The pip command that installs the pinned dependencies into ``target`` (Blender's own Python)."""
    cmd = [sys.executable, "-m", "pip", "install", "--disable-pip-version-check", "--target", str(target)]
    if cpu_only:
        cmd += ["--extra-index-url", TORCH_CPU_INDEX]
    return cmd + list(DEPENDENCIES)
