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
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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
)


class State:
    """A connection to the state database, migrated to the newest schema on open."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.db = sqlite3.connect(path, timeout=30, isolation_level=None)  # busy timeout 30 s
        self.db.row_factory = sqlite3.Row
        if self.db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            self.db.execute("PRAGMA journal_mode = WAL")
        self.db.execute("PRAGMA foreign_keys = ON")
        self.db.execute("PRAGMA synchronous = NORMAL")
        self.db.execute(f"PRAGMA wal_autocheckpoint = {WAL_PAGES}")
        self._migrate()

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
        """A write transaction (BEGIN IMMEDIATE): committed on success, rolled back on error."""
        if self.db.in_transaction:
            yield self.db
            return
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def query(self, sql: str, *args: Any) -> list[sqlite3.Row]:
        """Rows of a read query."""
        return self.db.execute(sql, args).fetchall()

    def one(self, sql: str, *args: Any) -> sqlite3.Row | None:
        """The first row of a read query, or None."""
        return self.db.execute(sql, args).fetchone()

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
