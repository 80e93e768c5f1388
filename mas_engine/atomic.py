"""Atomic file writes: a failure never leaves a half-written result."""
from __future__ import annotations

import os
from pathlib import Path


def atomic_write(path, write) -> Path:
    """Call ``write(tmp)`` with a temporary path beside ``path`` (same extension, so writers that go
    by it, like numpy's savez or matplotlib's savefig, keep working), then rename it into place.
    The temporary file is removed if anything fails."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp" + path.suffix)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path
