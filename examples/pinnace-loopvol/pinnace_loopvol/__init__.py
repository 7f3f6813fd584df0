"""Volumes of a fixed size: an ext4 image per volume, loop-mounted while in use.

``<data dir>/<name>/`` holds ``volume.img`` (sparse, ``-o size=``), ``meta.json``
and ``mnt/``, where the image is mounted (``mount -o loop``, whose loop device goes
when it is unmounted) by the first container that starts with the volume and
unmounted when the last one stops.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

from pinnace.plugin import FailedPrecondition, InvalidConfig, Option, VolumeDirectories


def parse_size(text: str) -> int:
    """Bytes from ``1048576``, ``512k``, ``64m``, ``1g`` (binary units)."""
    import re

    m = re.fullmatch(r"(\d+)([kmgt]?)b?", text.strip().lower())
    if not m:
        raise InvalidConfig(f"invalid size {text!r} (use e.g. 64m, 1g)")
    return int(m.group(1)) << {"": 0, "k": 10, "m": 20, "g": 30, "t": 40}[m.group(2)]


def _run(*argv: str) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True)
    if proc.returncode != 0:
        raise FailedPrecondition(f"{argv[0]} failed: {proc.stderr.strip() or proc.returncode}")


class LoopVolumes(VolumeDirectories):
    """A loop-mounted ext4 image per volume, of the size asked for."""

    options = (Option("default_size", "64m", "The size of a volume made without -o size="),)
    keys = ("size",)

    def make(self, path: Path, options: dict[str, str]) -> dict[str, Any]:
        """A sparse image of ``size`` bytes with an empty ext4 on it."""
        size = parse_size(options.get("size") or self.opt("default_size"))
        if size < 1 << 20:
            raise InvalidConfig(f"size {size} is too small for a volume (1m at least)")
        image, mnt = path / "volume.img", path / "mnt"
        with open(image, "wb") as f:
            f.truncate(size)
        mnt.mkdir()
        _run("mkfs.ext4", "-q", "-F", "-m", "0", str(image))
        _run("mount", "-o", "loop", str(image), str(mnt))  # an empty volume: no lost+found
        try:
            os.rmdir(mnt / "lost+found")
        finally:
            _run("umount", str(mnt))
        return {"size": size}

    def mountpoint(self, path: Path) -> Path:
        """``<data dir>/<name>/mnt`` (the volume's files only while it is mounted)."""
        return path / "mnt"

    def first_user(self, path: Path, meta: dict[str, Any]) -> None:
        """Loop-mount the image."""
        if not os.path.ismount(path / "mnt"):
            _run("mount", "-o", "loop", str(path / "volume.img"), str(path / "mnt"))

    def last_user(self, path: Path, meta: dict[str, Any]) -> None:
        """Unmount it (which frees the loop device)."""
        if os.path.ismount(path / "mnt"):
            _run("umount", str(path / "mnt"))

    def status(self, meta: dict[str, Any]) -> dict[str, str]:
        """Its size."""
        return {"size": str(meta["size"])}
