"""The registry source's own files under its data directory: the credentials of
``login`` (docker's ``config.json`` ``auths`` layout, mode 0600 in a 0700
directory) and a cache of the compressed forms of layers (which registry blob
holds which uncompressed layer), so ``push`` can skip what a registry has."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

from pinnace.plugin import InvalidConfig


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as err:
        raise InvalidConfig(f"cannot read {path}: {err}") from None
    return data if isinstance(data, dict) else {}


def _write_private(path: Path, data: dict[str, Any]) -> None:
    """Replace ``path`` atomically with a file only its owner (root) can read."""
    from pinnace.images.store import atomic_write

    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path.parent, 0o700)
    atomic_write(path, json.dumps(data, indent=2).encode(), mode=0o600)


class Credentials:
    """``{"auths": {"HOST[:PORT]": {"auth": base64("user:password")}}}``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def get(self, server: str) -> tuple[str, str] | None:
        """The (username, password) stored for ``server``, if any."""
        entry = _read(self.path).get("auths", {}).get(server)
        if not isinstance(entry, dict) or "auth" not in entry:
            return None
        try:
            user, sep, password = base64.b64decode(entry["auth"]).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            raise InvalidConfig(f"{self.path}: the credentials of {server} are garbled; "
                                f"pinnace logout {server}") from None
        return (user, password) if sep else None

    def set(self, server: str, username: str, password: str) -> None:
        """Store the credentials of ``server``."""
        data = _read(self.path)
        auth = base64.b64encode(f"{username}:{password}".encode()).decode()
        data.setdefault("auths", {})[server] = {"auth": auth}
        _write_private(self.path, data)

    def remove(self, server: str) -> bool:
        """Forget ``server``; return whether it was there."""
        data = _read(self.path)
        if server not in data.get("auths", {}):
            return False
        del data["auths"][server]
        _write_private(self.path, data)
        return True


class BlobCache:
    """``{diff_id: {compression: {"digest", "size", "repos": [host/repo ...]}}}``:
    registry blobs known to decompress to a stored layer."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data = _read(path)
        self.changed = False

    def lookup(self, diff_id: str, compression: str) -> dict[str, Any] | None:
        """The known blob for ``diff_id`` in ``compression``, or None."""
        entry = self.data.get(diff_id, {}).get(compression)
        return entry if isinstance(entry, dict) and "digest" in entry else None

    def record(self, diff_id: str, compression: str, digest: str, size: int,
               repo: str) -> None:
        """Remember that ``repo`` holds ``digest``, ``diff_id`` compressed."""
        entry = self.data.setdefault(diff_id, {}).setdefault(compression, {})
        if entry.get("digest") != digest:
            entry.clear()
            entry.update(digest=digest, size=size, repos=[])
        if repo not in entry["repos"]:
            entry["repos"] = (entry["repos"] + [repo])[-8:]
        self.changed = True

    def save(self) -> None:
        """Write the cache back when it changed (a lost concurrent update costs an upload)."""
        if self.changed:
            _write_private(self.path, self.data)
