"""Writing layer tars from trees on disk: a whole tree (``import DIR``, ``export``) or
the difference between two trees (``commit``).

Entries carry numeric owners (no user names), modes with setuid/setgid/sticky
bits, mtimes in whole seconds, symlinks, hardlinks (a second path to an inode
already in the tar is written as a link to the first), FIFOs, device nodes and
xattrs as ``SCHILY.xattr.*`` pax headers; sockets have no tar form and are left
out. Directories come before their contents, names in sorted order, so the
same tree always gives the same bytes.

A diff is written as the OCI image spec describes a changeset: entries that
are new or whose type, mode, owner, size, mtime, device number, link target or
xattrs differ from the lower tree, and a ``.wh.NAME`` whiteout for each NAME of
the lower tree that is gone (only the topmost: a removed directory's contents
need no whiteouts of their own). A directory whose only change is its mtime
(something inside it changed) is not written itself. Paths given as mount
points (where the engine mounted ``/etc/hosts`` or a volume) are left out when
the lower tree does not have them: they are the engine's, not the container's.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Set
from pathlib import Path
from typing import Any

WHITEOUT = ".wh."


class TreeTar:
    """A tar stream being written to ``out`` (any object with ``write``) from files on disk."""

    def __init__(self, out: Any) -> None:
        import tarfile

        self.tar = tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT)

    def add(self, path: str, arcname: str) -> bool:
        """Add the entry at ``path`` (not its contents); return whether it is a directory."""
        info = self.tar.gettarinfo(path, arcname)
        if info is None:  # a socket: tar has no way to store it
            return False
        info.uname = info.gname = ""
        info.mtime = int(info.mtime)
        info.pax_headers.update(_xattr_headers(path))
        if info.isreg():
            with open(path, "rb") as f:
                self.tar.addfile(info, f)
        else:
            self.tar.addfile(info)
        return info.isdir()

    def add_tree(self, path: str, arcname: str) -> None:
        """Add the entry at ``path`` and, for a directory, everything below it."""
        stack = [(path, arcname)]
        while stack:
            path, arcname = stack.pop()
            if self.add(path, arcname):
                stack.extend((os.path.join(path, name), _join(arcname, name))
                             for name in sorted(os.listdir(path), reverse=True))

    def whiteout(self, arcname: str) -> None:
        """Add an (empty) whiteout entry ``arcname``."""
        import tarfile

        self.tar.addfile(tarfile.TarInfo(arcname))

    def close(self) -> None:
        """Write the end-of-archive marker."""
        self.tar.close()


def _join(prefix: str, name: str) -> str:
    return f"{prefix}/{name}" if prefix else name


def _xattrs(path: str) -> dict[str, bytes]:
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return {}
    return {name: os.getxattr(path, name, follow_symlinks=False) for name in sorted(names)}


def _xattr_headers(path: str) -> dict[str, str]:
    return {f"SCHILY.xattr.{name}": value.decode("utf-8", "surrogateescape")
            for name, value in _xattrs(path).items()}


def write_tree(src: Path, out: Any) -> None:
    """Write the tree under ``src`` as a tar to ``out``; ``src``'s own entry is left out."""
    tar = TreeTar(out)
    for name in sorted(os.listdir(src)):
        tar.add_tree(os.path.join(src, name), name)
    tar.close()


def write_diff(lower: Path | None, upper: Path, out: Any,
               mount_points: Set[str] = frozenset()) -> None:
    """Write what changed from tree ``lower`` (None: empty) to tree ``upper`` as a layer
    tar; ``mount_points`` are relative paths (``etc/hosts``) to leave out when new."""
    tar = TreeTar(out)
    if lower is None:
        for name in sorted(os.listdir(upper)):
            if name not in mount_points:
                tar.add_tree(os.path.join(upper, name), name)
    else:
        _diff_dir(tar, str(lower), str(upper), "", mount_points)
    tar.close()


def _diff_dir(tar: TreeTar, lower: str, upper: str, arcname: str,
              mount_points: Set[str]) -> None:
    """Diff two directories that both exist, recursively."""
    before = set(os.listdir(lower))
    after = sorted(os.listdir(upper))
    for name in sorted(before.difference(after)):
        tar.whiteout(_join(arcname, WHITEOUT + name))
    for name in after:
        up, arc = os.path.join(upper, name), _join(arcname, name)
        if name not in before:
            if arc not in mount_points:
                tar.add_tree(up, arc)
            continue
        low = os.path.join(lower, name)
        old, new = os.lstat(low), os.lstat(up)
        if stat.S_ISDIR(old.st_mode) and stat.S_ISDIR(new.st_mode):
            if not _same(low, old, up, new):
                tar.add(up, arc)
            _diff_dir(tar, low, up, arc, mount_points)
        elif not _same(low, old, up, new):
            tar.add_tree(up, arc)


def _same(low: str, old: os.stat_result, up: str, new: os.stat_result) -> bool:
    """Whether an entry is unchanged: same metadata, link target and xattrs (content is
    taken as unchanged when size and mtime are, as docker does; a directory's mtime
    only says that its contents changed, which the diff shows entry by entry)."""
    if (old.st_mode, old.st_uid, old.st_gid, old.st_rdev) != \
            (new.st_mode, new.st_uid, new.st_gid, new.st_rdev):
        return False
    if not stat.S_ISDIR(new.st_mode) and \
            (old.st_size, old.st_mtime_ns) != (new.st_size, new.st_mtime_ns):
        return False
    if stat.S_ISLNK(new.st_mode) and os.readlink(low) != os.readlink(up):
        return False
    return _xattrs(low) == _xattrs(up)
