"""An overlayfs storage plugin for pinnace.

Layout under the plugin's data dir: ``<key>/fs`` (the upper dir, which is the
snapshot's content), ``<key>/work`` (overlayfs scratch) and ``<key>/meta.json``
(kind, parent, labels, created). A committed snapshot is just renamed.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

from pinnace.errors import AlreadyExists, FailedPrecondition, InvalidConfig, NotFound
from pinnace.mounts import Mount
from pinnace.plugin import Plugin, hookimpl
from pinnace.snapshots import Kind, SnapshotInfo, Usage


class OverlayStorage(Plugin):
    """Snapshots as overlayfs upper dirs stacked on their parents'."""

    def _dir(self, key: str) -> Path:
        if not key or "/" in key or key in (".", ".."):
            raise InvalidConfig(f"overlay: invalid snapshot key {key!r}")
        return self.ctx.data_dir / key.replace(":", "-")

    def _meta(self, key: str) -> dict:
        try:
            return json.loads((self._dir(key) / "meta.json").read_text())
        except FileNotFoundError:
            raise NotFound(f"overlay: no snapshot {key!r}") from None

    def _write_meta(self, key: str, meta: dict) -> None:
        tmp = self._dir(key) / "meta.json.tmp"
        tmp.write_text(json.dumps(meta))
        os.replace(tmp, self._dir(key) / "meta.json")

    def _lowers(self, parent: str | None) -> list[str]:
        """The fs dirs of ``parent`` and its ancestors, nearest first."""
        lowers = []
        while parent:
            meta = self._meta(parent)
            if meta["kind"] != Kind.COMMITTED:
                raise FailedPrecondition(f"overlay: parent {parent!r} is not committed")
            lowers.append(str(self._dir(parent) / "fs"))
            parent = meta["parent"]
        return lowers

    def _new(self, key: str, parent: str | None, kind: Kind, labels: dict[str, str]) -> None:
        self._lowers(parent)  # checks the parent exists and is committed
        path = self._dir(key)
        self.ctx.data_dir.mkdir(parents=True, exist_ok=True)
        try:
            path.mkdir()
        except FileExistsError:
            raise AlreadyExists(f"overlay: snapshot {key!r} exists") from None
        (path / "fs").mkdir(mode=0o755)
        (path / "work").mkdir()
        self._write_meta(key, {"key": key, "kind": kind, "parent": parent, "labels": labels,
                               "created": time.time()})

    @hookimpl
    def pinnace_storage_prepare(self, key: str, parent: str | None,
                                labels: dict[str, str]) -> list[Mount]:
        """A writable snapshot: an overlay over the parents, or a plain dir without one."""
        self._new(key, parent, Kind.ACTIVE, labels)
        return self.pinnace_storage_mounts(key=key)

    @hookimpl
    def pinnace_storage_view(self, key: str, parent: str, labels: dict[str, str]) -> list[Mount]:
        """A read-only snapshot of ``parent``."""
        self._new(key, parent, Kind.VIEW, labels)
        return self.pinnace_storage_mounts(key=key)

    @hookimpl
    def pinnace_storage_mounts(self, key: str) -> list[Mount]:
        """Describe the overlay (or bind) mount that shows snapshot ``key``."""
        meta, path = self._meta(key), self._dir(key)
        lowers = self._lowers(meta["parent"])
        if meta["kind"] == Kind.COMMITTED:
            raise FailedPrecondition(f"overlay: {key!r} is committed; make a view of it")
        if meta["kind"] == Kind.VIEW:
            if len(lowers) == 1:
                return [Mount("bind", lowers[0], ("rbind", "ro"))]
            return [Mount("overlay", "overlay", ("ro", "lowerdir=" + ":".join(lowers)))]
        if not lowers:
            return [Mount("bind", str(path / "fs"), ("rbind", "rw"))]
        return [Mount("overlay", "overlay", (
            "lowerdir=" + ":".join(lowers), f"upperdir={path / 'fs'}", f"workdir={path / 'work'}"))]

    @hookimpl
    def pinnace_storage_commit(self, name: str, key: str, labels: dict[str, str]) -> None:
        """Rename active snapshot ``key`` to committed ``name``."""
        meta = self._meta(key)
        if meta["kind"] != Kind.ACTIVE:
            raise FailedPrecondition(
                f"overlay: only active snapshots commit, {key!r} is {meta['kind']}")
        if self._dir(name).exists():
            raise AlreadyExists(f"overlay: snapshot {name!r} exists")
        os.rename(self._dir(key), self._dir(name))
        self._write_meta(name, dict(meta, key=name, kind=Kind.COMMITTED, labels=labels))

    @hookimpl
    def pinnace_storage_remove(self, key: str) -> None:
        """Delete a snapshot no other snapshot is built on."""
        self._meta(key)
        children = [s.key for s in self.pinnace_storage_walk() if s.parent == key]
        if children:
            raise FailedPrecondition(f"overlay: {key!r} is the parent of {children[0]!r}")
        shutil.rmtree(self._dir(key))

    @hookimpl
    def pinnace_storage_stat(self, key: str) -> SnapshotInfo:
        """Kind, parent and labels of ``key``."""
        meta = self._meta(key)
        return SnapshotInfo(meta["key"], Kind(meta["kind"]), meta["parent"], meta["labels"],
                            meta["created"])

    @hookimpl
    def pinnace_storage_usage(self, key: str) -> Usage:
        """Bytes and inodes in the snapshot's own upper dir."""
        self._meta(key)
        size = inodes = 0
        for dirpath, dirnames, filenames in os.walk(self._dir(key) / "fs"):
            for name in dirnames + filenames:
                inodes += 1
                size += os.lstat(os.path.join(dirpath, name)).st_size
        return Usage(size, inodes)

    @hookimpl
    def pinnace_storage_walk(self) -> list[SnapshotInfo]:
        """Every snapshot."""
        if not self.ctx.data_dir.is_dir():
            return []
        found = []
        for meta_file in sorted(self.ctx.data_dir.glob("*/meta.json")):
            found.append(self.pinnace_storage_stat(key=json.loads(meta_file.read_text())["key"]))
        return found
