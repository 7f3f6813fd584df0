"""The ``local`` volume driver: a directory per volume under the plugin's data dir.

As docker's local driver, it takes ``-o type=TYPE,o=OPTIONS,device=DEVICE``: with
them, the volume's directory is a mount point, mounted on the first container's
start (``type=tmpfs``, a bind of a host directory with ``type=none,o=bind``, or a
block device's filesystem) and unmounted when the last container using it stops.
Without them, the volume is the directory itself.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from pinnace.plugin import FailedPrecondition, InvalidConfig, VolumeDirectories

DATA = "_data"


class LocalVolumes(VolumeDirectories):
    """Volumes as directories, optionally mounted from a device or a tmpfs."""

    keys = ("type", "o", "device")

    def make(self, path: Path, options: dict[str, str]) -> dict[str, Any]:
        """``_data``; the mount options are checked now, used at the first mount."""
        if options.get("type") and not options.get("device"):
            raise InvalidConfig("missing required option: device")
        if options.get("device") and not options.get("type"):
            raise InvalidConfig("missing required option: type")
        if options.get("type") == "none" and "bind" not in options.get("o", "").split(","):
            raise InvalidConfig("type=none needs o=bind")
        if options.get("o") and not options.get("type"):
            raise InvalidConfig("missing required option: type")
        (path / DATA).mkdir(0o755)
        return {}

    def mountpoint(self, path: Path) -> Path:
        """``<data dir>/<name>/_data``."""
        return path / DATA

    def first_user(self, path: Path, meta: dict[str, Any]) -> None:
        """Mount the device, if the volume has one."""
        from pinnace.plugin import linux

        options = meta["options"]
        if not options.get("type"):
            return
        try:
            linux.mount_described(options["type"], options["device"], str(path / DATA),
                                  [o for o in options.get("o", "").split(",") if o])
        except OSError as err:
            raise FailedPrecondition(f"volume {path.name}: cannot mount "
                                     f"{options['device']}: {err.strerror}") from None

    def last_user(self, path: Path, meta: dict[str, Any]) -> None:
        """Unmount the device (never remove a mounted device's files)."""
        from pinnace.plugin import linux

        if meta["options"].get("type") and linux.is_mountpoint(str(path / DATA)):
            with contextlib.suppress(OSError):  # already gone is what we want
                linux.umount(str(path / DATA), detach=True)

    def status(self, meta: dict[str, Any]) -> dict[str, str]:
        """Its mount options (but ``o``)."""
        return {k: v for k, v in meta["options"].items() if k != "o"}
