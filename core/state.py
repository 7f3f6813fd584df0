"""SQLite state under the root: images, tags, layers, snapshots, containers, events.

One file, WAL journal, a busy timeout so concurrent ``pinnace`` processes
queue instead of failing, and a schema version with ordered migrations.
Every write happens inside :meth:`State.tx`, a ``BEGIN IMMEDIATE``
transaction, so check-then-insert sequences (a name, an IP lease) are atomic
across processes.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

WAL_PAGES = 64
"""Checkpoint once the WAL holds this many pages (SQLite's default is 1000).

A command exits without closing its connection, and the first connection of
the next one rebuilds the WAL index by reading the whole WAL: a short WAL keeps
that to a few hundred kB (a ``run`` writes about 24 pages) instead of up to 4 MB.
"""

MIGRATIONS: tuple[str, ...] = (
    # 1: the first schema
    """
    CREATE TABLE images (
        id TEXT PRIMARY KEY,             -- sha256:<config digest>
        manifest_digest TEXT NOT NULL,
        created REAL NOT NULL,
        size INTEGER NOT NULL,
        source TEXT NOT NULL DEFAULT ''  -- how it entered the store (import, pull ...)
    );
    CREATE TABLE tags (
        name TEXT PRIMARY KEY,           -- normalised reference, e.g. busybox:latest
        image_id TEXT NOT NULL REFERENCES images(id)
    );
    CREATE TABLE image_layers (
        image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
        position INTEGER NOT NULL,
        diff_id TEXT NOT NULL,
        chain_id TEXT NOT NULL,
        blob_digest TEXT NOT NULL,
        PRIMARY KEY (image_id, position)
    );
    CREATE TABLE snapshots (
        chain_id TEXT NOT NULL,          -- a committed layer snapshot ...
        storage TEXT NOT NULL,           -- ... owned by this storage plugin
        parent TEXT,
        created REAL NOT NULL,
        PRIMARY KEY (chain_id, storage)
    );
    CREATE TABLE containers (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        image_id TEXT NOT NULL,
        image_ref TEXT NOT NULL,
        storage TEXT NOT NULL,
        network TEXT NOT NULL,
        isolation TEXT NOT NULL,
        status TEXT NOT NULL,            -- created, running, exited
        pid INTEGER NOT NULL DEFAULT 0,
        pid_start INTEGER NOT NULL DEFAULT 0,
        exit_code INTEGER,
        created REAL NOT NULL,
        started REAL,
        finished REAL,
        spec TEXT NOT NULL,              -- JSON: the run options and runtime spec
        network_result TEXT              -- JSON: what network_add returned
    );
    CREATE TABLE events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        time REAL NOT NULL,
        type TEXT NOT NULL,
        action TEXT NOT NULL,
        actor TEXT NOT NULL,
        attributes TEXT NOT NULL DEFAULT '{}'
    );
    """,
    # 2: containers that outlive the CLI: the monitor that owns one, restarts, stops
    """
    ALTER TABLE containers ADD COLUMN monitor_pid INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE containers ADD COLUMN monitor_start INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE containers ADD COLUMN restart_count INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE containers ADD COLUMN stop_requested INTEGER NOT NULL DEFAULT 0
    """,
    # 3: named networks, their endpoints (IP leases) and published ports
    """
    CREATE TABLE networks (
        name TEXT PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        driver TEXT NOT NULL,            -- the network plugin that owns it
        subnet TEXT NOT NULL,
        gateway TEXT NOT NULL,
        internal INTEGER NOT NULL DEFAULT 0,
        options TEXT NOT NULL DEFAULT '{}',  -- JSON: the driver's own (bridge device ...)
        created REAL NOT NULL
    );
    CREATE TABLE endpoints (             -- one container on one network: its IP lease
        container_id TEXT NOT NULL,
        network TEXT NOT NULL REFERENCES networks(name),
        ifname TEXT NOT NULL,
        address TEXT NOT NULL,           -- CIDR, e.g. 10.90.0.2/16
        created REAL NOT NULL,
        PRIMARY KEY (container_id, network),
        UNIQUE (network, address)
    );
    CREATE TABLE ports (                 -- published ports, one row per host port
        host_ip TEXT NOT NULL,           -- '' for every address
        host_port INTEGER NOT NULL,
        protocol TEXT NOT NULL,
        container_id TEXT NOT NULL,
        container_port INTEGER NOT NULL,
        PRIMARY KEY (host_ip, host_port, protocol)
    );
    """,
    # 4: whether the kernel's OOM killer struck the container's cgroup on its last run
    """
    ALTER TABLE containers ADD COLUMN oom_killed INTEGER NOT NULL DEFAULT 0
    """,
    # 5: the registry digests an image was pulled by or pushed as (RepoDigests)
    """
    CREATE TABLE repo_digests (
        name TEXT NOT NULL,              -- registry/repository, e.g. 127.0.0.1:5000/lib/bb
        digest TEXT NOT NULL,            -- the registry's manifest (or index) digest
        image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
        PRIMARY KEY (name, digest)
    );
    """,
    # 6: volumes, the driver that owns each, and the containers that mount them where
    """
    CREATE TABLE volumes (
        name TEXT PRIMARY KEY,
        driver TEXT NOT NULL,            -- the volume plugin that made it (and removes it)
        mountpoint TEXT NOT NULL DEFAULT '',
        options TEXT NOT NULL DEFAULT '{}',  -- JSON: the driver options it was made with
        labels TEXT NOT NULL DEFAULT '{}',   -- JSON
        anonymous INTEGER NOT NULL DEFAULT 0,
        created REAL NOT NULL
    );
    CREATE TABLE volume_users (          -- a container that mounts a volume, and where
        volume TEXT NOT NULL REFERENCES volumes(name),
        container_id TEXT NOT NULL,
        destination TEXT NOT NULL,
        PRIMARY KEY (container_id, destination)
    );
    CREATE INDEX volume_users_volume ON volume_users (volume);
    """,
    # 7: labels of named networks (JSON)
    """
    ALTER TABLE networks ADD COLUMN labels TEXT NOT NULL DEFAULT '{}'
    """,
    # 8: build's layer cache: a step (its parent image, text and sources) -> the image it made
    """
    CREATE TABLE build_cache (
        key TEXT PRIMARY KEY,            -- sha256 of the parent image ID, step and checksums
        image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE
    );
    CREATE INDEX build_cache_image ON build_cache (image_id);
    """,
    # 9: the host ids each container's user namespace maps (uid and gid maps), so that
    # --userns=auto chooses and records a free block in one transaction
    """
    CREATE TABLE id_maps (
        container_id TEXT NOT NULL REFERENCES containers(id) ON DELETE CASCADE,
        host INTEGER NOT NULL,           -- first host id of one uid_map or gid_map line
        size INTEGER NOT NULL
    );
    CREATE INDEX id_maps_container ON id_maps (container_id);
    INSERT INTO id_maps (container_id, host, size)
        SELECT c.id, json_extract(m.value, '$.host'), json_extract(m.value, '$.size')
        FROM containers c, json_each(c.spec, '$.runtime.uid_map') m WHERE json_valid(c.spec)
        UNION ALL
        SELECT c.id, json_extract(m.value, '$.host'), json_extract(m.value, '$.size')
        FROM containers c, json_each(c.spec, '$.runtime.gid_map') m WHERE json_valid(c.spec);
    """,
)


class State:
    """A connection to the state database, migrated to the newest schema on open.

    A full filesystem is an error, not an outage (see docs/decisions.md). SQLite
    writes to the WAL index, a shared memory map of ``state.db-shm``, on reads as
    well as writes, and on a full btrfs such a write kills the process (SIGBUS).
    So every use of the connection on a full filesystem first releases a chunk of
    the root's :class:`~pinnace.reserve.SpaceReserve`, and a transaction that
    still finds no room raises :class:`~pinnace.errors.NoSpace`. Opened without
    room, the connection is ``read-only``: the WAL index is read into memory,
    nothing on the filesystem is written, and every transaction raises NoSpace."""

    def __init__(self, path: Path) -> None:
        from pinnace.reserve import SpaceReserve

        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.reserve = SpaceReserve(path.parent)
        self.reserve.room()
        self.mode, self.db = self._connect()
        self.reserve.keep()

    def with_room(self, action: Callable[[], T]) -> T:
        """Run ``action`` (a removal: a copy-on-write filesystem needs room to delete);
        if a full filesystem refuses it, release a chunk of the reserve and run it once
        more."""
        from pinnace.errors import NoSpace, is_no_space

        try:
            return action()
        except (NoSpace, OSError) as err:
            if not (isinstance(err, NoSpace) or is_no_space(err)) or not self.reserve.release():
                raise
        return action()

    def _has_room(self) -> bool:
        from pinnace.reserve import LOW_BYTES, free_bytes

        return free_bytes(self.path.parent) >= LOW_BYTES

    def _connect(self) -> tuple[str, sqlite3.Connection]:
        """A shared connection when the filesystem has room for one, else read-only."""
        if self._has_room():
            try:
                return "shared", self._open()
            except sqlite3.OperationalError as err:
                if not _disk_full(err, self.path):
                    raise
        from urllib.parse import quote

        db = sqlite3.connect(f"file:{quote(str(self.path))}?mode=ro&readonly_shm=1", uri=True,
                             timeout=30, isolation_level=None)
        db.row_factory = sqlite3.Row
        return "read-only", db

    def _open(self) -> sqlite3.Connection:
        from pinnace.reserve import create_in_place

        for suffix in ("", "-wal", "-shm"):  # before SQLite makes them copy-on-write
            if not os.path.exists(f"{self.path}{suffix}"):
                create_in_place(Path(f"{self.path}{suffix}"))
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)  # busy timeout 30 s
        try:
            db.row_factory = sqlite3.Row
            if db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA foreign_keys = ON")
            db.execute("PRAGMA synchronous = NORMAL")
            db.execute(f"PRAGMA wal_autocheckpoint = {WAL_PAGES}")
            self.mode, self.db = "shared", db
            self._migrate()
        except BaseException:
            db.close()
            raise
        return db

    def _reading(self) -> sqlite3.Connection:
        """The connection, with room for a read if it is shared (it may write to the
        WAL index)."""
        if self.mode == "shared" and not self.db.in_transaction:
            self.reserve.room()
        return self.db

    def _migrate(self) -> None:
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        if version == len(MIGRATIONS):
            return
        with self.tx():
            version = self.db.execute("PRAGMA user_version").fetchone()[0]
            if version > len(MIGRATIONS):
                from pinnace.errors import FailedPrecondition

                raise FailedPrecondition(
                    f"state {self.path} has schema {version}, newer than this pinnace "
                    f"knows ({len(MIGRATIONS)}); upgrade pinnace"
                )
            for script in MIGRATIONS[version:]:
                for statement in script.split(";"):
                    if statement.strip():
                        self.db.execute(statement)
            self.db.execute(f"PRAGMA user_version = {len(MIGRATIONS)}")

    @contextlib.contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        """A write transaction (BEGIN IMMEDIATE): committed on success, rolled back on error.

        A full filesystem raises :class:`~pinnace.errors.NoSpace` and writes nothing."""
        if self.db.in_transaction:
            yield self.db
            return
        self.reserve.room()
        if self.mode != "shared" or not self._has_room():
            raise self._no_space()
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException as err:
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
            if isinstance(err, sqlite3.OperationalError) and _disk_full(err, self.path):
                raise self._no_space() from None
            raise
        self._commit()

    def _commit(self) -> None:
        """COMMIT; when a full filesystem refuses it, release a chunk of the reserve and
        try once more, else roll back and raise NoSpace."""
        for attempt in (1, 2):
            try:
                self.db.execute("COMMIT")
                return
            except sqlite3.OperationalError as err:
                if not _disk_full(err, self.path):
                    raise
                if attempt == 2 or not self.db.in_transaction or not self.reserve.release():
                    break
        if self.db.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                self.db.execute("ROLLBACK")
        raise self._no_space()

    def _no_space(self) -> Exception:
        from pinnace.errors import NoSpace

        return NoSpace(f"no space left on device writing the state database {self.path}")

    def query(self, sql: str, *args: Any) -> list[sqlite3.Row]:
        """Rows of a read query."""
        return self._reading().execute(sql, args).fetchall()

    def one(self, sql: str, *args: Any) -> sqlite3.Row | None:
        """The first row of a read query, or None."""
        return self._reading().execute(sql, args).fetchone()

    def event(self, type_: str, action: str, actor: str, **attributes: Any) -> None:
        """Record an event (container create/start/die/remove, image import ...)."""
        with self.tx() as db:
            db.execute(
                "INSERT INTO events (time, type, action, actor, attributes) VALUES (?,?,?,?,?)",
                (time.time(), type_, action, actor, json.dumps(attributes)),
            )

    def close(self) -> None:
        """Close the connection."""
        self.db.close()


_LOW_SPACE = 16 << 20
"""Free bytes under which an I/O error of SQLite counts as a full filesystem: btrfs
refuses writes with a few megabytes still shown free."""


def _disk_full(err: sqlite3.Error, path: Path) -> bool:
    """Whether SQLite's ``err`` comes from a full filesystem: SQLITE_FULL, or an I/O
    error (SQLite's name for a refused write or resize) while ``path``'s filesystem is
    nearly full."""
    from pinnace.reserve import free_bytes

    code = getattr(err, "sqlite_errorcode", 0) & 0xFF
    if code == 13:  # SQLITE_FULL
        return True
    return code == 10 and free_bytes(path.parent) < _LOW_SPACE  # SQLITE_IOERR
