"""Room for the state on a full filesystem: files that are overwritten in place, and a few
preallocated megabytes under the root, given back when the filesystem is full.

A copy-on-write filesystem (btrfs) needs new room for every overwrite: on a
full one an overwrite fails, and a write to a page of a shared memory map
(SQLite's ``-shm``) kills the writer with SIGBUS. :func:`create_in_place`
makes the state's files without copy-on-write (``chattr +C``, which must be set
while a file is empty), so their pages are rewritten where they are.

On a full filesystem SQLite cannot even open its database for writing (it
resizes the ``-shm`` file first), and copy-on-write filesystems need new room
for every overwrite and for the metadata of a deletion. So the root keeps
``reserve``, a file of :data:`RESERVE_BYTES` with its blocks allocated
(``fallocate``): when a write of the state meets a full disk, the file is
deleted and the filesystem synced (btrfs frees extents when its transaction
commits), which lets that write, and the removals that follow, proceed. It is
made again by a later command that finds room for it (see docs/decisions.md).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

RESERVE_BYTES = 4 << 20
"""Bytes set aside: room for the state's ``-shm`` and WAL and a removal's metadata."""

NAME = "reserve"


class SpaceReserve:
    """The reserve file of the root directory ``root``."""

    def __init__(self, root: Path) -> None:
        self.path = root / NAME

    def present(self) -> bool:
        """Whether the reserve is in place (not released)."""
        return self.path.exists()

    def keep(self) -> None:
        """Make the reserve when it is missing and the filesystem has room for it and as
        much again; on a failure (a filesystem filling meanwhile) leave none behind."""
        if self.path.exists() or free_bytes(self.path.parent) < 4 * RESERVE_BYTES:
            return
        tmp = self.path.with_name(f".{NAME}-{os.getpid()}")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            try:
                os.posix_fallocate(fd, 0, RESERVE_BYTES)
            finally:
                os.close(fd)
            os.rename(tmp, self.path)
        except OSError:
            with contextlib.suppress(OSError):
                tmp.unlink()

    def release_if_full(self) -> None:
        """:meth:`release` the reserve when its filesystem has less than its size free
        (before a write: a full btrfs kills a writer to shared memory with SIGBUS)."""
        if self.path.exists() and free_bytes(self.path.parent) < RESERVE_BYTES:
            self.release()

    def release(self) -> bool:
        """Delete the reserve and sync its filesystem so that the room is free now;
        False when there was none to release."""
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            return False
        sync_filesystem(self.path.parent)
        return True


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
