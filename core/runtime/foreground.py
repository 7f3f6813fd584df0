"""``pinnace run`` in the foreground: create, start, forward signals, wait, clean up."""

from __future__ import annotations

import contextlib
import signal
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pinnace.engine import Engine, RunOptions

FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT,
             signal.SIGUSR1, signal.SIGUSR2, signal.SIGWINCH)
KILL_AFTER = 3
"""Like the docker CLI, the third SIGINT/SIGTERM kills the container outright."""


def run_foreground(engine: Engine, opts: RunOptions, remove: bool) -> int:
    """Run a container attached to this process's stdio; return its exit code."""
    cid = engine.create(opts)
    try:
        with _forwarding(engine, cid):
            engine.start(cid)
            return engine.wait(cid)
    finally:
        if remove:
            engine.remove(cid, force=True)


@contextlib.contextmanager
def _forwarding(engine: Engine, cid: str):  # type: ignore[no-untyped-def]
    count = {"n": 0}

    def forward(signum: int, _frame: object) -> None:
        if signum in (signal.SIGINT, signal.SIGTERM):
            count["n"] += 1
            if count["n"] >= KILL_AFTER:
                print("pinnace: got 3 interrupts, killing the container", file=sys.stderr)
                signum = signal.SIGKILL
        with contextlib.suppress(Exception):
            engine.kill(cid, signum)

    previous = {s: signal.signal(s, forward) for s in FORWARDED}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
