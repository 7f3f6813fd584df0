"""Mount descriptions: what storage plugins return and isolation plugins perform."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Mount:
    """One mount(2) call, described (containerd's mount.Mount).

    ``type`` is a filesystem type or ``"bind"``; ``options`` are fstab-style
    (``ro``, ``rbind``, ``lowerdir=...``).
    """

    type: str
    source: str
    options: tuple[str, ...] = field(default_factory=tuple)

    @property
    def readonly(self) -> bool:
        """True when the mount is requested read-only."""
        return "ro" in self.options


def mount_all(mounts: Sequence[Mount], target: str | Path) -> None:
    """Perform ``mounts`` on ``target`` in order (the first is the rootfs, the rest stack on it)."""
    from pinnace import linux

    for m in mounts:
        linux.mount_described(m.type, m.source, str(target), m.options)


def unmount_all(target: str | Path) -> None:
    """Undo :func:`mount_all`: detach every mount at or below ``target``, deepest first
    (nothing mounted there is fine)."""
    from pinnace import linux

    for point in linux.mounts_under(str(target)):
        linux.umount(point, detach=True)


SCRATCH_PREFIX = "pinnace-mnt-"
"""Names of the directories :func:`mounted` mounts on: ``pinnace-mnt-<pid>-<random>``."""


@contextlib.contextmanager
def mounted(mounts: Sequence[Mount], scratch: str | Path | None = None) -> Iterator[Path]:
    """Yield a directory where ``mounts`` are visible, for the duration of the block.

    A single plain bind mount is yielded as its source directory, with no
    mount at all; anything else is mounted on a temporary directory and
    unmounted (lazily) afterwards.
    """
    if len(mounts) == 1 and mounts[0].type == "bind":
        yield Path(mounts[0].source)
        return
    from pinnace import linux

    if scratch is not None:
        os.makedirs(scratch, exist_ok=True)
    target = os.path.join(scratch or "/tmp", f"{SCRATCH_PREFIX}{os.getpid()}-{os.urandom(4).hex()}")
    os.mkdir(target, 0o700)
    try:
        mount_all(mounts, target)
        try:
            yield Path(target)
        finally:
            linux.umount(target, detach=True)
    finally:
        os.rmdir(target)
