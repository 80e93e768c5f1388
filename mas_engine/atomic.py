"""Atomic file writes: a failure never leaves a half-written result, and nothing is replaced unasked.

The temporary file is created exclusively (``O_EXCL``, a random name) in the target folder, so a
symlink planted beside the target cannot redirect the write and two processes writing the same
file never share a temporary. The finished file is renamed into place; a rename replaces a link
at the target path itself, never the file it points to.
"""
from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from .errors import MasError


class FileExists(MasError):
    """The target file exists and replacing it was not asked for."""


def _umask() -> int:
    mask = os.umask(0o022)      # read it by setting it (once, at import, before any thread starts)
    os.umask(mask)
    return mask


# mkstemp makes its file readable by its owner only; a result gets the mode a plain open() would give
FILE_MODE = 0o666 & ~_umask()


def atomic_write(path, write, overwrite: bool = True) -> Path:
    """Call ``write(tmp)`` with a fresh temporary path beside ``path`` (same extension, so writers that
    go by it, like numpy's savez or matplotlib's savefig, keep working), then move it into place.

    overwrite=False: an existing ``path`` is never replaced (``FileExists``), even when another
    process creates it while we write (the move is a hard link, which fails if the name exists).
    The temporary file is removed if anything fails."""
    path = Path(path)
    if not overwrite and os.path.lexists(path):
        raise FileExists(f"{path} exists; pass --overwrite to replace it, or choose another name or folder")
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + path.suffix, dir=path.parent)
    tmp = Path(name)
    try:
        os.close(fd)
        write(tmp)
        if not stat.S_ISREG(os.lstat(tmp).st_mode):      # some writers replace the file: a plain file is fine, a link is not
            raise MasError(f"the temporary file {tmp} was replaced by a link while writing {path}; is another "
                           f"program writing into {path.parent}?")
        # the mode of the file it replaces, else what a plain open() would give (mkstemp's is 0600)
        os.chmod(tmp, stat.S_IMODE(os.stat(path).st_mode) if os.path.isfile(path) else FILE_MODE)
        if overwrite:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise FileExists(f"{path} exists; pass --overwrite to replace it, or choose another name or folder") from None
            except OSError:                     # a file system without hard links: the check above has to do
                if os.path.lexists(path):
                    raise FileExists(f"{path} exists; pass --overwrite to replace it") from None
                os.replace(tmp, path)
    finally:
        if os.path.lexists(tmp):
            tmp.unlink()
    return path
