"""The ``local`` volume driver: a directory per volume under the plugin's data dir.

As docker's local driver, it takes ``-o type=TYPE,o=OPTIONS,device=DEVICE``: with
them, the volume's directory is a mount point, mounted on the first container's
start (``type=tmpfs``, a bind of a host directory with ``type=none,o=bind``, or a
block device's filesystem) and unmounted when the last container using it stops.
Without them, the volume is the directory itself.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path

from pinnace.plugin import (
    AlreadyExists,
    FailedPrecondition,
    InvalidConfig,
    NotFound,
    Plugin,
    VolumeCapabilities,
    VolumeInfo,
    hookimpl,
)

KEYS = ("type", "o", "device")
META = "meta.json"
DATA = "_data"


class LocalVolumes(Plugin):
    """Volumes as directories, optionally mounted from a device or a tmpfs."""

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
        """A directory; its mount options checked now, used at the first mount."""
        unknown = sorted(set(options) - set(KEYS))
        if unknown:
            raise InvalidConfig(f"invalid option key: {unknown[0]!r} (the local driver "
                                f"takes {', '.join(KEYS)})")
        if options.get("type") and not options.get("device"):
            raise InvalidConfig("missing required option: device")
        if options.get("device") and not options.get("type"):
            raise InvalidConfig("missing required option: type")
        if options.get("type") == "none" and "bind" not in options.get("o", "").split(","):
            raise InvalidConfig("type=none needs o=bind")
        if options.get("o") and not options.get("type"):
            raise InvalidConfig("missing required option: type")
        path = self._dir(name)
        self.ctx.data_dir.mkdir(parents=True, exist_ok=True)
        try:
            path.mkdir(0o700)
        except FileExistsError:
            raise AlreadyExists(f"volume {name} already exists") from None
        try:
            (path / DATA).mkdir(0o755)
            created = time.time()
            tmp = path / f".{META}"
            tmp.write_text(json.dumps({"created": created, "options": dict(options)}))
            os.replace(tmp, path / META)
        except BaseException:
            from pinnace.plugin import remove_tree

            remove_tree(path)
            raise
        return VolumeInfo(name, str(path / DATA), created)

    @hookimpl
    def pinnace_volume_remove(self, name: str) -> None:
        """Refused while mounted; the directory otherwise (never a mounted device's files)."""
        from pinnace.plugin import linux, remove_tree, volume_users

        self._meta(name)
        path = self._dir(name)
        with volume_users(path) as users:
            if users:
                raise FailedPrecondition(f"volume {name} is mounted by {len(users)} "
                                         f"container(s)")
            if linux.is_mountpoint(str(path / DATA)):
                linux.umount(str(path / DATA))
            os.unlink(path / META)  # no longer listed, even if removing the files fails
        remove_tree(path)

    @hookimpl
    def pinnace_volume_mount(self, name: str, container_id: str) -> str:
        """The volume's directory; mounted from its device by the first container."""
        from pinnace.plugin import linux, volume_users

        options = self._meta(name)["options"]
        data = self._dir(name) / DATA
        with volume_users(self._dir(name)) as users:
            if options.get("type") and not users:
                try:
                    linux.mount_described(options["type"], options["device"], str(data),
                                          [o for o in options.get("o", "").split(",") if o])
                except OSError as err:
                    raise FailedPrecondition(f"volume {name}: cannot mount "
                                             f"{options['device']}: {err.strerror}") from None
            users.add(container_id)
        return str(data)

    @hookimpl
    def pinnace_volume_unmount(self, name: str, container_id: str) -> None:
        """Forget the container; the last one out unmounts the device."""
        from pinnace.plugin import linux, volume_users

        try:
            options = self._meta(name)["options"]
        except NotFound:
            return
        data = self._dir(name) / DATA
        with volume_users(self._dir(name)) as users:
            if container_id not in users:
                return
            users.discard(container_id)
            if options.get("type") and not users:
                with contextlib.suppress(OSError):  # already gone is what we want
                    linux.umount(str(data), detach=True)

    @hookimpl
    def pinnace_volume_path(self, name: str) -> str:
        """``<data dir>/<name>/_data``."""
        self._meta(name)
        return str(self._dir(name) / DATA)

    @hookimpl
    def pinnace_volume_get(self, name: str) -> VolumeInfo:
        """The volume, with its mount options as its status."""
        meta = self._meta(name)
        return VolumeInfo(name, str(self._dir(name) / DATA), meta["created"],
                          {k: v for k, v in meta["options"].items() if k != "o"})

    @hookimpl
    def pinnace_volume_list(self) -> list[VolumeInfo]:
        """Every directory with its metadata written."""
        if not self.ctx.data_dir.is_dir():
            return []
        found = []
        for entry in sorted(self.ctx.data_dir.iterdir()):
            if (entry / META).exists():
                with contextlib.suppress(NotFound):
                    found.append(self.pinnace_volume_get(name=entry.name))
        return found

    @hookimpl
    def pinnace_volume_capabilities(self) -> VolumeCapabilities:
        """This host only."""
        return VolumeCapabilities("local")
