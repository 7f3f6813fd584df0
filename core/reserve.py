"""Room for the state and for removals on a full filesystem.

A copy-on-write filesystem (btrfs) needs new room for every overwrite and for
the metadata of a deletion: on a full one an overwrite fails, a write to a page
of a shared memory map (SQLite's ``-shm``) kills the writer with SIGBUS, and
even deleting a snapshot can fail. So:

- :func:`create_in_place` makes the state's files without copy-on-write
  (``chattr +C``, which takes only on an empty file): their pages are
  rewritten where they are;
- the root keeps ``reserve/``, a few files with their blocks allocated
  (``fallocate``). :meth:`SpaceReserve.room` gives one of them to a block that
  must write (a state transaction, a removal) when the filesystem is full: the
  file is deleted and the filesystem synced (btrfs frees extents when its
  transaction commits). They are made again by a later command that finds
  room (freed room cannot be taken back at once: btrfs needs more than it
  freed to allocate as much). See docs/decisions.md.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

CHUNK_BYTES = 1 << 20
CHUNKS = 4
"""The reserve is this many files of CHUNK_BYTES each, released one at a time: what a
block leaves of a released chunk, another writer can take, but not the other chunks."""
LOW_BYTES = 2 << 20
"""A filesystem with less free than this counts as full (btrfs shows about 1.5 MiB free
on a small one that refuses every write)."""
NAME = "reserve"


class SpaceReserve:
    """The reserve of the root directory ``root``: ``root/reserve/0`` ... ``3``."""

    def __init__(self, root: Path) -> None:
        self.path = root / NAME

    def chunks(self) -> list[Path]:
        """The chunks in place (not released)."""
        return [self.path / str(n) for n in range(CHUNKS) if (self.path / str(n)).exists()]

    def keep(self) -> None:
        """Make the missing chunks when the filesystem has room for all of them and three
        times as much again (so that they are not made and released in turn); on a
        failure (a filesystem filling meanwhile) leave no partial chunk."""
        if len(self.chunks()) == CHUNKS or \
                free_bytes(self.path.parent) < 4 * CHUNKS * CHUNK_BYTES:
            return
        try:
            self.path.mkdir(exist_ok=True)
            for n in range(CHUNKS):
                if not (self.path / str(n)).exists():
                    self._make(self.path / str(n))
        except OSError:
            return

    @staticmethod
    def _make(path: Path) -> None:
        tmp = path.with_name(f".{path.name}-{os.getpid()}")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            try:
                os.posix_fallocate(fd, 0, CHUNK_BYTES)
            finally:
                os.close(fd)
            os.rename(tmp, path)
        except OSError:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise

    def release(self) -> bool:
        """Release one chunk and sync its filesystem so that its room is free now; False
        when none is left."""
        for chunk in self.chunks():
            with contextlib.suppress(FileNotFoundError):  # a concurrent pinnace took it
                os.unlink(chunk)
                sync_filesystem(self.path.parent)
                return True
        return False

    def room(self) -> None:
        """Before a write that a full filesystem must not turn into a crash (SQLite's
        shared memory): :meth:`release` a chunk when the filesystem counts as full."""
        if free_bytes(self.path.parent) < LOW_BYTES:
            self.release()


def free_bytes(path: Path) -> int:
    """Bytes free for unprivileged writes on the filesystem holding ``path`` (0 when it
    cannot be asked)."""
    try:
        st = os.statvfs(path)
    except OSError:
        return 0
    return st.f_bavail * st.f_frsize


def sync_filesystem(path: Path) -> None:
    """``syncfs`` the filesystem holding ``path``: commits a btrfs transaction, which
    makes the extents of deleted files free for new writes."""
    import ctypes

    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        ctypes.CDLL(None, use_errno=True).syncfs(fd)
    finally:
        os.close(fd)


_FS_IOC_GETFLAGS = 0x80086601
_FS_IOC_SETFLAGS = 0x40086602
_FS_NOCOW_FL = 0x00800000


def create_in_place(path: Path) -> None:
    """Create ``path`` empty, marked to be overwritten in place (no copy-on-write) where
    its filesystem knows the flag; nothing when it exists (the flag only takes on an
    empty file)."""
    import fcntl
    import struct

    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    except FileExistsError:
        return
    try:
        flags = struct.unpack("i", fcntl.ioctl(fd, _FS_IOC_GETFLAGS, bytes(4)))[0]
        fcntl.ioctl(fd, _FS_IOC_SETFLAGS, struct.pack("i", flags | _FS_NOCOW_FL))
    except OSError:
        pass  # a filesystem without the flag (ext4, tmpfs) overwrites in place anyway
    finally:
        os.close(fd)
