"""Operations in flight, so that what a killed pinnace left can be told from work under way.

Every multi-step change to the store (pull, import, commit, create, start, rm,
rmi, network rm ...) runs under a *lease*: a shared lock on the root's store
lock and a file ``ops/<pid>-<start time>-<what>`` naming its process. The
collector takes the lock exclusively, so it only ever runs while no operation
is under way, and everything nothing names is garbage. A lease file whose
process is gone marks a crash: the next operation collects first (when it can
get the lock at once; otherwise a later one will). A lease may note what it is
in the middle of (:meth:`Lease.note`), for the collector to finish after a crash.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

_held: set[int] = set()
"""Descriptors of store locks this process holds (closed in a forked child)."""


def _close_held() -> None:
    """In a forked child: the locks are the parent's (a child holding one would block
    the collector for as long as it lives)."""
    for fd in _held:
        with contextlib.suppress(OSError):
            os.close(fd)
    _held.clear()


os.register_at_fork(after_in_child=_close_held)


class Intent(NamedTuple):
    """A step a crashed operation had begun: ``kind`` and its data, as noted."""

    kind: str
    data: dict[str, Any]


class Lease:
    """The file of one operation in flight."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def note(self, kind: str, **data: Any) -> None:
        """Record that a step which the collector must finish after a crash begins."""
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps({"kind": kind, "data": data}) + "\n")


class Operations:
    """The leases of one root."""

    def __init__(self, root: Path) -> None:
        self.dir = root / "ops"
        self.lock_path = root / "locks" / "store.lock"
        self._fd = -1
        self._owner = 0
        self._lease: Lease | None = None

    @contextlib.contextmanager
    def lease(self, what: str, collect: Callable[[list[Intent]], None]) -> Iterator[Lease]:
        """Hold a lease for the block (the outer one when nested). When a crashed
        operation left a lease and no other operation runs, ``collect`` runs first,
        given what the crashed ones noted."""
        from pinnace.runtime.proc import start_time

        if self._lease is not None and self._owner == os.getpid():
            yield self._lease
            return
        pid = os.getpid()
        self._fd = self._open_lock()
        self._lease = lease = Lease(self.dir / f"{pid}-{start_time(pid)}-{what}")
        try:  # from here on, operations that ``collect`` starts are part of this one
            if self.crashed():
                with contextlib.suppress(BlockingIOError):
                    fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    self._collect(collect)
            fcntl.flock(self._fd, fcntl.LOCK_SH)
            lease.path.touch()
            yield lease
        finally:
            if self._owner == pid:  # not in a forked child unwinding
                lease.path.unlink(missing_ok=True)
            self._lease = None
            self._release()

    @contextlib.contextmanager
    def exclusive(self, forget_crashed: bool) -> Iterator[list[Intent]]:
        """Wait until no operation runs and hold them off for the block; yield what
        crashed operations noted. With ``forget_crashed`` their leases go afterwards
        (the block has finished what they began)."""
        self._fd = self._open_lock()
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            dead = self.crashed()
            yield self._intents(dead)
            if forget_crashed:
                for path in dead:
                    path.unlink(missing_ok=True)
        finally:
            self._release()

    def crashed(self) -> list[Path]:
        """Lease files whose process is gone."""
        from pinnace.runtime.proc import is_alive

        try:
            names = os.listdir(self.dir)
        except FileNotFoundError:
            return []
        dead = []
        for name in names:
            pid, _, rest = name.partition("-")
            started = rest.partition("-")[0]
            if not (pid.isdigit() and started.isdigit() and is_alive(int(pid), int(started))):
                dead.append(self.dir / name)
        return dead

    def _collect(self, collect: Callable[[list[Intent]], None]) -> None:
        dead = self.crashed()
        collect(self._intents(dead))
        for path in dead:
            path.unlink(missing_ok=True)

    @staticmethod
    def _intents(leases: list[Path]) -> list[Intent]:
        """What the operations of ``leases`` noted."""
        intents = []
        for path in leases:
            with contextlib.suppress(FileNotFoundError), open(path, encoding="utf-8") as f:
                for line in f:
                    with contextlib.suppress(ValueError, KeyError, TypeError):
                        entry = json.loads(line)
                        intents.append(Intent(str(entry["kind"]), dict(entry["data"])))
        return intents

    def _open_lock(self) -> int:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.lock_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        _held.add(fd)
        self._owner = os.getpid()
        return fd

    def _release(self) -> None:
        if self._fd >= 0 and self._owner == os.getpid():  # a forked child's is closed
            _held.discard(self._fd)
            os.close(self._fd)
        self._fd = -1
