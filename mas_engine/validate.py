"""Checks at the boundary: every bad value a user can give becomes a MasError that names the
value, the rule and the fix, before any work starts (no function deep inside is the first to notice)."""
from __future__ import annotations

import math
import os
import shutil
import tempfile
from pathlib import Path

from .errors import MasError

MAX_SEED = 2 ** 63 - 1     # torch generators take 64-bit seeds; negative ones would alias positive ones
MAX_MOTIONS = 100_000      # one command; more is a loop in a script, and each motion is written as it is done


def number(name: str, value, lo: float | None = None, hi: float | None = None, fix: str = "") -> float:
    """A finite real number within [lo, hi], else MasError."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise MasError(f"{name} must be a number, got {value!r}") from None
    rule = f"between {lo:g} and {hi:g}" if lo is not None and hi is not None else \
        f"at least {lo:g}" if lo is not None else f"at most {hi:g}" if hi is not None else "finite"
    if not math.isfinite(v) or (lo is not None and v < lo) or (hi is not None and v > hi):
        raise MasError(f"{name} must be {rule}, got {value!r}" + (f"; {fix}" if fix else ""))
    return v


def integer(name: str, value, lo: int | None = None, hi: int | None = None, fix: str = "") -> int:
    """An integer within [lo, hi] (a float with an integer value is accepted), else MasError."""
    if isinstance(value, float) and not math.isfinite(value):
        raise MasError(f"{name} must be an integer, got {value!r}")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (isinstance(value, float) and not value.is_integer()):
        try:
            value = int(str(value))
        except ValueError:
            raise MasError(f"{name} must be an integer, got {value!r}") from None
    v = int(value)
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        rule = f"between {lo} and {hi}" if lo is not None and hi is not None else \
            f"at least {lo}" if lo is not None else f"at most {hi}"
        raise MasError(f"{name} must be {rule}, got {value!r}" + (f"; {fix}" if fix else ""))
    return v


def seeds(seed, num) -> list[int]:
    """Seeds seed .. seed + num - 1, each a valid 64-bit generator seed."""
    num = integer("the number of motions", num, 1, MAX_MOTIONS, "generate in several runs with other seeds")
    seed = integer("seed", seed, 0, MAX_SEED - num + 1, f"seeds are 0 .. {MAX_SEED}")
    return list(range(seed, seed + num))


def output_folder(out, bytes_needed: int = 0, option: str = "--out") -> Path:
    """Make sure ``out`` is (or can be made) a folder we can write ``bytes_needed`` into, before the work.

    Names the folder and the cause: a file in the way, no permission, a read-only or full disk."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise MasError(f"output folder {out} is a file; give a folder ({option})")
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".mas-probe.", dir=out)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise MasError(f"cannot write into output folder {out}: {e.strerror or e}; choose another {option}") from None
    free = shutil.disk_usage(out).free
    if bytes_needed > free:
        raise MasError(f"output folder {out} has {free / 1e6:.0f} MB free, and this needs about "
                       f"{bytes_needed / 1e6:.0f} MB; free some space or choose another {option}")
    return out
