"""A throwaway btrfs on a loop device, for tests and benchmarks (needs root and btrfs-progs)."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path


def _run(*argv: str) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout.strip()


@contextlib.contextmanager
def loop_btrfs(path: str | Path, size: str = "1G",
               mkfs_options: Sequence[str] = ()) -> Iterator[Path]:
    """Make a sparse ``<path>.img`` of ``size`` (``truncate -s`` syntax), put a fresh
    btrfs on it (``mkfs.btrfs`` with ``mkfs_options``, e.g. ``--mixed`` for a small one)
    through a loop device, mount it at ``path`` (created) and yield ``path``.

    Afterwards: unmount (lazily if something still holds it), detach the loop
    device, delete the image and the mount point.
    """
    mnt = Path(path)
    image = mnt.with_name(mnt.name + ".img")
    mnt.mkdir(parents=True)
    try:
        _run("truncate", "-s", size, str(image))
        device = _run("losetup", "--find", "--show", str(image))
        try:
            _run("mkfs.btrfs", "-q", *mkfs_options, device)
            _run("mount", "-t", "btrfs", device, str(mnt))
            try:
                yield mnt
            finally:
                if subprocess.run(["umount", str(mnt)], capture_output=True).returncode != 0:
                    _run("umount", "--lazy", str(mnt))
        finally:
            _run("losetup", "--detach", device)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(image)
        mnt.rmdir()
