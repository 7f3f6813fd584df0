"""Small file-tree helpers that keep heavy standard modules off the hot path."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def remove_tree(path: Path | str) -> None:
    """Remove a small tree (a bundle, a log dir, a snapshot's metadata), ignoring
    what is already gone; symlinks are removed, never followed. (shutil, with its
    archive modules, costs more to import than this takes.)"""
    for top, dirs, files in os.walk(path, topdown=False):
        for name in files:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(top, name))
        for name in dirs:
            sub = os.path.join(top, name)
            with contextlib.suppress(OSError):
                os.unlink(sub) if os.path.islink(sub) else os.rmdir(sub)
    with contextlib.suppress(OSError):
        os.rmdir(path)
