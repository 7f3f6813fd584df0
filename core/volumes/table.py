"""Every volume SQL statement: the volumes (each with its owning driver) and which
containers mount them where."""

from __future__ import annotations

import json
import sqlite3
import time
from typing import TYPE_CHECKING

from pinnace.volumes import Volume

if TYPE_CHECKING:
    from pinnace.state import State


class VolumeTable:
    """The ``volumes`` and ``volume_users`` rows."""

    def __init__(self, state: State) -> None:
        self.state = state

    def _record(self, row: sqlite3.Row) -> Volume:
        users = [r["container_id"] for r in self.state.query(  # of containers that exist
            "SELECT DISTINCT container_id FROM volume_users WHERE volume = ? AND "
            "container_id IN (SELECT id FROM containers) ORDER BY container_id", row["name"])]
        return Volume(row["name"], row["driver"], row["mountpoint"], json.loads(row["options"]),
                      json.loads(row["labels"]), bool(row["anonymous"]), row["created"], users)

    def get(self, name: str) -> Volume | None:
        """The volume called ``name``, or None."""
        row = self.state.one("SELECT * FROM volumes WHERE name = ?", name)
        return None if row is None else self._record(row)

    def all(self) -> list[Volume]:
        """Every volume, by name."""
        return [self._record(r) for r in self.state.query("SELECT * FROM volumes ORDER BY name")]

    def insert(self, volume: Volume) -> None:
        """Record a volume its driver has made."""
        with self.state.tx() as db:
            db.execute("INSERT INTO volumes (name, driver, mountpoint, options, labels, "
                       "anonymous, created) VALUES (?,?,?,?,?,?,?)",
                       (volume.name, volume.driver, volume.mountpoint,
                        json.dumps(volume.options), json.dumps(volume.labels),
                        int(volume.anonymous), volume.created or time.time()))

    def delete(self, name: str) -> None:
        """Forget a volume (its driver has removed it)."""
        with self.state.tx() as db:
            db.execute("DELETE FROM volumes WHERE name = ?", (name,))

    def add_user(self, name: str, container_id: str, destination: str) -> None:
        """Container ``container_id`` mounts volume ``name`` at ``destination``."""
        with self.state.tx() as db:
            db.execute("INSERT INTO volume_users (volume, container_id, destination) "
                       "VALUES (?,?,?)", (name, container_id, destination))

    def used_by(self, container_id: str) -> list[tuple[str, str]]:
        """``(volume, destination)`` of every volume the container mounts."""
        return [(r["volume"], r["destination"]) for r in self.state.query(
            "SELECT volume, destination FROM volume_users WHERE container_id = ? "
            "ORDER BY destination", container_id)]

    def drop_users(self, container_id: str) -> None:
        """The container no longer exists: it uses no volume."""
        with self.state.tx() as db:
            db.execute("DELETE FROM volume_users WHERE container_id = ?", (container_id,))
