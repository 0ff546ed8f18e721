"""Writing files so that a reader or a crash never sees half of one."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable


def write_atomically(path: str | os.PathLike[str], write: Callable[[Path], object]) -> Path:
    """Writes through ``write(tmp)`` beside ``path`` (same filesystem), then renames it into place.

    A crash or a full disk leaves the old file or none under ``path``, never a truncated one; the temporary
    file is removed either way.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.is_symlink() or tmp.exists():
            tmp.unlink()
    return path
