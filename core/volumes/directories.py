"""A base for volume drivers that keep each volume in a directory of their data dir.

``<data dir>/<name>/`` holds ``meta.json`` (written last: a volume without it does
not exist) and whatever the driver keeps; the containers mounting it are counted
with :func:`pinnace.volumes.users.volume_users`, so that the driver can set the
volume up for the first one and tear it down after the last. A driver says what a
volume is by implementing :meth:`make`, :meth:`mountpoint`, :meth:`first_user`,
:meth:`last_user` and :meth:`status`; the hooks are here.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path
from typing import Any

from pinnace.errors import AlreadyExists, FailedPrecondition, InvalidConfig, NotFound
from pinnace.plugin import Plugin, hookimpl
from pinnace.volumes import VolumeCapabilities, VolumeInfo
from pinnace.volumes.users import volume_users

META = "meta.json"


class VolumeDirectories(Plugin):
    """Volume hooks over one directory per volume; subclasses say what is in it."""

    keys: tuple[str, ...] = ()
    """The ``-o`` option keys the driver takes."""

    def make(self, path: Path, options: dict[str, str]) -> dict[str, Any]:
        """Fill the new volume's directory ``path``; return what to keep in its metadata
        (besides ``created`` and ``options``). Raise to refuse the options."""
        raise NotImplementedError

    def mountpoint(self, path: Path) -> Path:
        """Where the volume's files are (under ``path``, its directory)."""
        raise NotImplementedError

    def first_user(self, path: Path, meta: dict[str, Any]) -> None:
        """Set the volume up for the first container that mounts it (default: nothing)."""

    def last_user(self, path: Path, meta: dict[str, Any]) -> None:
        """Undo :meth:`first_user` once no container mounts it; also before removal."""

    def status(self, meta: dict[str, Any]) -> dict[str, str]:
        """What ``volume inspect`` shows as the volume's status."""
        return {}

    # ---------------------------------------------------------------- helpers
    def directory(self, name: str) -> Path:
        """The volume's directory (whether or not it exists); a bad name is refused."""
        if not name or "/" in name or name.startswith("."):
            raise InvalidConfig(f"invalid volume name {name!r}")
        return self.ctx.data_dir / name

    def meta(self, name: str) -> dict[str, Any]:
        """The volume's metadata; ``NotFound`` when it does not exist."""
        try:
            return dict(json.loads((self.directory(name) / META).read_text()))
        except FileNotFoundError:
            raise NotFound(f"no such volume: {name}") from None

    # ---------------------------------------------------------------- hooks
    @hookimpl
    def pinnace_volume_create(self, name: str, options: dict[str, str],
                              labels: dict[str, str]) -> VolumeInfo:
        """The volume's directory, filled by :meth:`make` (labels are the core's)."""
        from pinnace.files import remove_tree

        unknown = sorted(set(options) - set(self.keys))
        if unknown:
            raise InvalidConfig(f"invalid option key: {unknown[0]!r} (the {self.ctx.name} "
                                f"driver takes {', '.join(self.keys) or 'none'})")
        path = self.directory(name)
        self.ctx.data_dir.mkdir(parents=True, exist_ok=True)
        try:
            path.mkdir(0o700)
        except FileExistsError:
            raise AlreadyExists(f"volume {name} already exists") from None
        try:
            meta = {**self.make(path, dict(options)), "created": time.time(),
                    "options": dict(options)}
            tmp = path / f".{META}"
            tmp.write_text(json.dumps(meta))
            os.replace(tmp, path / META)
        except BaseException:
            with contextlib.suppress(Exception):
                self.last_user(path, {"options": dict(options)})
            remove_tree(path)
            raise
        return self.pinnace_volume_get(name=name)

    @hookimpl
    def pinnace_volume_remove(self, name: str) -> None:
        """Refused while a container mounts it; torn down, then its directory goes."""
        from pinnace.files import remove_tree

        meta = self.meta(name)
        path = self.directory(name)
        with volume_users(path) as users:
            if users:
                raise FailedPrecondition(f"volume {name} is mounted by {len(users)} "
                                         f"container(s)")
            self.last_user(path, meta)
            os.unlink(path / META)  # no longer listed, even if removing the files fails
        remove_tree(path)

    @hookimpl
    def pinnace_volume_mount(self, name: str, container_id: str) -> str:
        """Counted as a user (the first sets the volume up); the mount point."""
        meta = self.meta(name)
        path = self.directory(name)
        with volume_users(path) as users:
            if not users:
                self.first_user(path, meta)
            users.add(container_id)
        return str(self.mountpoint(path))

    @hookimpl
    def pinnace_volume_unmount(self, name: str, container_id: str) -> None:
        """No longer counted; the last user out tears the volume down."""
        try:
            meta = self.meta(name)
        except NotFound:
            return
        path = self.directory(name)
        with volume_users(path) as users:
            if container_id not in users:
                return
            users.discard(container_id)
            if not users:
                self.last_user(path, meta)

    @hookimpl
    def pinnace_volume_path(self, name: str) -> str:
        """The mount point."""
        self.meta(name)
        return str(self.mountpoint(self.directory(name)))

    @hookimpl
    def pinnace_volume_get(self, name: str) -> VolumeInfo:
        """The volume, with :meth:`status`."""
        meta = self.meta(name)
        return VolumeInfo(name, str(self.mountpoint(self.directory(name))), meta["created"],
                          self.status(meta))

    @hookimpl
    def pinnace_volume_list(self) -> list[VolumeInfo]:
        """Every volume whose metadata is written."""
        if not self.ctx.data_dir.is_dir():
            return []
        found = []
        for entry in sorted(self.ctx.data_dir.iterdir()):
            with contextlib.suppress(NotFound, InvalidConfig):
                found.append(self.pinnace_volume_get(name=entry.name))
        return found

    @hookimpl
    def pinnace_volume_capabilities(self) -> VolumeCapabilities:
        """This host's files."""
        return VolumeCapabilities("local")
