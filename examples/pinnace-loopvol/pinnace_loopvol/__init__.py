"""Volumes of a fixed size: an ext4 image per volume, loop-mounted while in use.

``<data dir>/<name>/`` holds ``volume.img`` (sparse, ``-o size=``), ``meta.json``
and ``mnt/``, where the image is mounted (``mount -o loop``, whose loop device goes
when it is unmounted) by the first container that starts with the volume and
unmounted when the last one stops.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
from pathlib import Path

from pinnace.plugin import (
    AlreadyExists,
    FailedPrecondition,
    InvalidConfig,
    NotFound,
    Option,
    Plugin,
    VolumeCapabilities,
    VolumeInfo,
    hookimpl,
    volume_users,
)

KEYS = ("size",)
META = "meta.json"


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


class LoopVolumes(Plugin):
    """A loop-mounted ext4 image per volume, of the size asked for."""

    options = (Option("default_size", "64m", "The size of a volume made without -o size="),)

    def _dir(self, name: str) -> Path:
        if not name or "/" in name or name.startswith("."):
            raise InvalidConfig(f"invalid volume name {name!r}")
        return self.ctx.data_dir / name

    def _meta(self, name: str) -> dict:
        try:
            return json.loads((self._dir(name) / META).read_text())
        except FileNotFoundError:
            raise NotFound(f"no such volume: {name}") from None

    @hookimpl
    def pinnace_volume_create(self, name: str, options: dict[str, str],
                              labels: dict[str, str]) -> VolumeInfo:
        """A sparse image of ``size`` bytes with an empty ext4 on it (labels are the
        core's to keep)."""
        from pinnace.plugin import remove_tree

        unknown = sorted(set(options) - set(KEYS))
        if unknown:
            raise InvalidConfig(f"invalid option key: {unknown[0]!r} (the loop driver takes "
                                f"size)")
        size = parse_size(options.get("size") or self.opt("default_size"))
        if size < 1 << 20:
            raise InvalidConfig(f"size {size} is too small for a volume (1m at least)")
        path = self._dir(name)
        self.ctx.data_dir.mkdir(parents=True, exist_ok=True)
        try:
            path.mkdir(0o700)
        except FileExistsError:
            raise AlreadyExists(f"volume {name} already exists") from None
        try:
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
            created = time.time()
            (path / META).write_text(json.dumps({"created": created, "size": size}))
        except BaseException:
            with contextlib.suppress(subprocess.SubprocessError, FailedPrecondition):
                if os.path.ismount(path / "mnt"):
                    _run("umount", str(path / "mnt"))
            remove_tree(path)
            raise
        return VolumeInfo(name, str(mnt), created, {"size": str(size)})

    @hookimpl
    def pinnace_volume_remove(self, name: str) -> None:
        """The image and its directory; refused while mounted."""
        from pinnace.plugin import remove_tree

        self._meta(name)
        path = self._dir(name)
        with volume_users(path) as users:
            if users:
                raise FailedPrecondition(f"volume {name} is mounted by {len(users)} "
                                         f"container(s)")
            if os.path.ismount(path / "mnt"):
                _run("umount", str(path / "mnt"))
            os.unlink(path / META)
        remove_tree(path)

    @hookimpl
    def pinnace_volume_mount(self, name: str, container_id: str) -> str:
        """Loop-mount the image for the first container; the mount point."""
        self._meta(name)
        path = self._dir(name)
        with volume_users(path) as users:
            if not users and not os.path.ismount(path / "mnt"):
                _run("mount", "-o", "loop", str(path / "volume.img"), str(path / "mnt"))
            users.add(container_id)
        return str(path / "mnt")

    @hookimpl
    def pinnace_volume_unmount(self, name: str, container_id: str) -> None:
        """The last container out unmounts it (and so frees the loop device)."""
        path = self._dir(name)
        if not (path / META).exists():
            return
        with volume_users(path) as users:
            if container_id not in users:
                return
            users.discard(container_id)
            if not users and os.path.ismount(path / "mnt"):
                _run("umount", str(path / "mnt"))

    @hookimpl
    def pinnace_volume_path(self, name: str) -> str:
        """``<data dir>/<name>/mnt`` (the volume's files only while it is mounted)."""
        self._meta(name)
        return str(self._dir(name) / "mnt")

    @hookimpl
    def pinnace_volume_get(self, name: str) -> VolumeInfo:
        """The volume and its size."""
        meta = self._meta(name)
        return VolumeInfo(name, str(self._dir(name) / "mnt"), meta["created"],
                          {"size": str(meta["size"])})

    @hookimpl
    def pinnace_volume_list(self) -> list[VolumeInfo]:
        """Every volume whose metadata is written."""
        if not self.ctx.data_dir.is_dir():
            return []
        found = []
        for entry in sorted(self.ctx.data_dir.iterdir()):
            with contextlib.suppress(NotFound):
                found.append(self.pinnace_volume_get(name=entry.name))
        return found

    @hookimpl
    def pinnace_volume_capabilities(self) -> VolumeCapabilities:
        """One host's files."""
        return VolumeCapabilities("local")
