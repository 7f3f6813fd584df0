"""Every SQL statement about containers: the ``containers`` table (and its joins with the
network endpoints), read as :class:`ContainerRecord` records.

Status changes are conditional updates inside one transaction, so two
``pinnace`` processes cannot both start, or both reap, one container.
"""

from __future__ import annotations

import json
import sqlite3
import time
from typing import TYPE_CHECKING, Any, NamedTuple

from pinnace.containers.record import ACTIVE, ContainerRecord
from pinnace.errors import AlreadyExists, InvalidConfig, NotFound

if TYPE_CHECKING:
    from collections.abc import Sequence

    from pinnace.containers.record import ContainerConfig
    from pinnace.runtime.userns import IdMap
    from pinnace.state import State

_ACTIVE_SQL = ",".join(f"'{s}'" for s in ACTIVE)
_SETTABLE = frozenset({"name", "stop_requested", "status"})
"""Columns :meth:`ContainerTable.set` may write; the rest change through named methods."""


class Peer(NamedTuple):
    """Another container on a shared network: its address there (CIDR), its name, its
    aliases on that network."""

    address: str
    name: str
    aliases: list[str]


def _aliases(config_json: str, network: str) -> list[str]:
    """A container's aliases on ``network``, read from its stored config."""
    aliases = (json.loads(config_json).get("net") or {}).get("aliases") or {}
    return list(aliases.get(network) or [])


class ContainerTable:
    """The containers of one state database."""

    def __init__(self, state: State) -> None:
        self.state = state

    # ------------------------------------------------------------ reading
    def get(self, cid: str) -> ContainerRecord:
        """The container with ID ``cid`` (``NotFound`` otherwise)."""
        row = self.state.one("SELECT * FROM containers WHERE id = ?", cid)
        if row is None:
            raise NotFound(f"No such container: {cid}")
        return ContainerRecord.from_row(row)

    def find(self, ref: str) -> str:
        """The ID of the container named ``ref``, or whose ID is ``ref`` or starts with it."""
        row = self.state.one("SELECT id FROM containers WHERE name = ? OR id = ?", ref, ref)
        if row:
            return str(row["id"])
        if ref and all(c in "0123456789abcdef" for c in ref):
            rows = self.state.query("SELECT id FROM containers WHERE id LIKE ?", ref + "%")
            if len(rows) == 1:
                return str(rows[0]["id"])
            if len(rows) > 1:
                raise InvalidConfig(f"container ID prefix {ref!r} is ambiguous ({len(rows)} match)")
        raise NotFound(f"No such container: {ref}")

    def all(self) -> list[ContainerRecord]:
        """Every container, newest first."""
        return [ContainerRecord.from_row(r)
                for r in self.state.query("SELECT * FROM containers ORDER BY created DESC")]

    def active(self) -> list[ContainerRecord]:
        """Containers with a monitor (starting, running, paused)."""
        return [ContainerRecord.from_row(r) for r in self.state.query(
            f"SELECT * FROM containers WHERE status IN ({_ACTIVE_SQL})")]

    def names_using_image(self, image_id: str) -> list[str]:
        """Names of the containers created from ``image_id``."""
        return [r["name"] for r in self.state.query(
            "SELECT name FROM containers WHERE image_id = ?", image_id)]

    def running_on(self, networks: list[str], excluding: str) -> list[ContainerRecord]:
        """Running containers other than ``excluding`` with an address on one of ``networks``."""
        return [ContainerRecord.from_row(r) for r in self.state.query(
            "SELECT DISTINCT c.* FROM containers c JOIN endpoints e ON e.container_id = c.id"
            " WHERE c.id != ? AND c.status = 'running' AND e.network IN"
            f" ({','.join('?' * len(networks))})", excluding, *networks)]

    def peers(self, cid: str) -> list[Peer]:
        """The other containers on the networks ``cid`` is on, once per shared network."""
        return [Peer(r["address"], r["name"], _aliases(r["spec"], r["network"]))
                for r in self.state.query(
                    "SELECT DISTINCT c.name, c.spec, e.address, e.network FROM endpoints e"
                    " JOIN containers c ON c.id = e.container_id WHERE e.container_id != ? AND"
                    " e.network IN (SELECT network FROM endpoints WHERE container_id = ?)"
                    " ORDER BY c.name, e.address", cid, cid)]

    # ------------------------------------------------------------ writing
    def insert(self, cid: str, name: str | None, image_id: str, image: str, storage: str,
               network: str, isolation: str) -> str:
        """Add a ``created`` container; return its name (a random free one when ``name`` is
        None). A taken name is ``AlreadyExists``."""
        from pinnace import names

        for attempt in range(20):
            chosen = name if name is not None else (
                names.random_name() if attempt < 10 else f"{names.random_name()}_{attempt}")
            try:
                with self.state.tx() as db:
                    db.execute(
                        "INSERT INTO containers (id, name, image_id, image_ref, storage, network,"
                        " isolation, status, created, spec) VALUES (?,?,?,?,?,?,?,?,?,?)",
                        (cid, chosen, image_id, image, storage, network, isolation, "created",
                         time.time(), "{}"))
                return chosen
            except sqlite3.IntegrityError:
                if name is not None:
                    raise self._name_taken(name) from None
        raise AlreadyExists("could not find a free random container name; pass --name")

    def _name_taken(self, name: str) -> AlreadyExists:
        other = self.state.one("SELECT id FROM containers WHERE name = ?", name)
        return AlreadyExists(
            f'the container name "{name}" is already in use by container '
            f'{other["id"][:12] if other else "?"}; remove it or pick another name')

    def record_id_maps(self, cid: str, maps: Sequence[IdMap]) -> None:
        """Note the host ids that container ``cid``'s uid and gid maps use."""
        with self.state.tx() as db:
            db.executemany("INSERT INTO id_maps (container_id, host, size) VALUES (?,?,?)",
                           [(cid, m.host, m.size) for m in maps])

    def mapped_host_ids(self) -> list[tuple[int, int]]:
        """(first host id, count) of every container's uid and gid map lines."""
        return [(r["host"], r["size"]) for r in self.state.query(
            "SELECT host, size FROM id_maps")]

    def save_config(self, cid: str, config: ContainerConfig) -> None:
        """Store what the container is created with."""
        with self.state.tx() as db:
            db.execute("UPDATE containers SET spec = ? WHERE id = ?", (config.to_json(), cid))

    def set(self, cid: str, **values: Any) -> None:
        """Write plain columns (``name``, ``stop_requested``, ``status``); a taken name is
        ``AlreadyExists``."""
        unknown = set(values) - _SETTABLE
        if unknown:
            raise ValueError(f"not a settable container column: {sorted(unknown)}")
        cols = ", ".join(f"{k} = ?" for k in values)
        try:
            with self.state.tx() as db:
                db.execute(f"UPDATE containers SET {cols} WHERE id = ?", (*values.values(), cid))
        except sqlite3.IntegrityError:
            raise self._name_taken(values.get("name", "")) from None

    def claim_start(self, cid: str, monitor_pid: int, monitor_start: int,
                    restart: bool = False) -> bool:
        """Mark it ``starting`` with this monitor unless it already has one (for a
        ``restart`` by its policy: or a stop was asked for meanwhile); whether it did."""
        unless_stopped = " AND stop_requested = 0" if restart else ""
        with self.state.tx() as db:
            return db.execute(
                "UPDATE containers SET status = 'starting', monitor_pid = ?, monitor_start = ?,"
                f" stop_requested = 0 WHERE id = ? AND status NOT IN ({_ACTIVE_SQL})"
                f"{unless_stopped}", (monitor_pid, monitor_start, cid)).rowcount > 0

    def mark_running(self, cid: str, pid: int, pid_start: int, network_result: str) -> None:
        """Its first process runs as host PID ``pid``; ``network_result`` is JSON."""
        with self.state.tx() as db:
            db.execute(
                "UPDATE containers SET status = 'running', pid = ?, pid_start = ?, started = ?,"
                " finished = NULL, exit_code = NULL, network_result = ? WHERE id = ?",
                (pid, pid_start, time.time(), network_result, cid))

    def record_exit(self, cid: str, code: int | None, oom_killed: bool = False) -> None:
        """It exited with ``code`` (None: unknown)."""
        with self.state.tx() as db:
            db.execute(
                "UPDATE containers SET status = 'exited', exit_code = ?, finished = ?, pid = 0,"
                " oom_killed = ? WHERE id = ?", (code, time.time(), int(oom_killed), cid))

    def claim_lost(self, cid: str) -> bool:
        """Mark an active container whose monitor is gone exited with an unknown code;
        whether this call did (only one process reaps it)."""
        with self.state.tx() as db:
            return db.execute(
                "UPDATE containers SET status = 'exited', exit_code = NULL, finished = ?,"
                f" pid = 0 WHERE id = ? AND status IN ({_ACTIVE_SQL})",
                (time.time(), cid)).rowcount > 0

    def count_restart(self, cid: str) -> None:
        """One more restart by its policy."""
        with self.state.tx() as db:
            db.execute("UPDATE containers SET restart_count = restart_count + 1 WHERE id = ?",
                       (cid,))

    def delete(self, cid: str) -> None:
        """Forget the container."""
        with self.state.tx() as db:
            db.execute("DELETE FROM containers WHERE id = ?", (cid,))
