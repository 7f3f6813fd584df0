"""SQLite state: schema migrations, WAL, and concurrent writers that never corrupt it."""

from __future__ import annotations

import multiprocessing
import sqlite3
import time
from pathlib import Path

import pytest

from pinnace import state as state_mod
from pinnace.errors import FailedPrecondition
from pinnace.state import State


def test_new_state_is_migrated_and_in_wal_mode(tmp_path: Path) -> None:
    s = State(tmp_path / "state.db")
    assert s.one("PRAGMA user_version")[0] == len(state_mod.MIGRATIONS)
    assert s.one("PRAGMA journal_mode")[0] == "wal"
    tables = {r["name"] for r in s.query("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"images", "tags", "image_layers", "snapshots", "containers", "events"} <= tables


def test_migrations_run_in_order_from_an_older_schema(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    State(tmp_path / "state.db").close()
    monkeypatch.setattr(state_mod, "MIGRATIONS", state_mod.MIGRATIONS + (
        "ALTER TABLE containers ADD COLUMN probe INTEGER NOT NULL DEFAULT 0",))
    s = State(tmp_path / "state.db")
    assert s.one("PRAGMA user_version")[0] == len(state_mod.MIGRATIONS)
    cols = {r["name"] for r in s.query("PRAGMA table_info(containers)")}
    assert "probe" in cols


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "state.db")
    db.execute("PRAGMA user_version = 99")
    db.close()
    with pytest.raises(FailedPrecondition, match="newer than this pinnace knows"):
        State(tmp_path / "state.db")


def test_failed_transaction_leaves_no_half_row(tmp_path: Path) -> None:
    s = State(tmp_path / "state.db")
    with pytest.raises(RuntimeError):
        with s.tx() as db:
            db.execute("INSERT INTO events (time, type, action, actor) VALUES (1, 't', 'a', 'x')")
            raise RuntimeError("boom")
    assert s.query("SELECT * FROM events") == []


def _writer(path: str, worker: int, count: int) -> None:
    s = State(Path(path))
    for i in range(count):
        try:
            with s.tx() as db:
                db.execute(
                    "INSERT INTO containers (id, name, image_id, image_ref, storage, network,"
                    " isolation, status, created, spec) VALUES (?,?,?,?,?,?,?,?,?,?)",
                    (f"{worker}-{i}", f"name-{i}", "img", "img", "dir", "none", "unshare",
                     "created", time.time(), "{}"))
        except sqlite3.IntegrityError:
            pass  # another process holds that name: exactly one may


def test_concurrent_processes_never_duplicate_a_name_or_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    State(path).close()
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_writer, args=(str(path), w, 100)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    s = State(path)
    names = [r["name"] for r in s.query("SELECT name FROM containers")]
    assert sorted(names) == sorted(f"name-{i}" for i in range(100))
    assert s.one("PRAGMA integrity_check")[0] == "ok"
