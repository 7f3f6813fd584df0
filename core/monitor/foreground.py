"""``pinnace run`` (and ``start -a``) in the foreground: this process is the monitor.

The container's output goes through pipes to the terminal and to its log,
as with docker, so ``pinnace logs`` works for it afterwards. With ``-i``
it reads this process's stdin directly; with ``-t`` it gets a pty of its
own, the terminal goes into raw mode and window size changes follow.
"""

from __future__ import annotations

import contextlib
import signal
import sys
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from pinnace.errors import NotFound

if TYPE_CHECKING:
    from pinnace.engine import Engine
    from pinnace.monitor.detached import Streams
    from pinnace.runtime.watch import JsonLog, Timer

FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT,
             signal.SIGUSR1, signal.SIGUSR2, signal.SIGWINCH)
KILL_AFTER = 3
"""Like the docker CLI, the third SIGINT/SIGTERM kills the container outright."""


def attach_start(engine: Engine, cid: str) -> int:
    """Start an existing container in the foreground, pump its streams, wait, finish."""
    from pinnace.monitor.detached import open_streams
    from pinnace.runtime.watch import JsonLog

    run = engine.containers.get(cid).config.run
    tty, interactive = run.tty, run.interactive
    streams = open_streams(str(engine.paths.bundle(cid)), tty, interactive,
                           stdin=0 if interactive and not tty else None)

    def send(signum: int) -> None:
        engine.kill(cid, signum)

    try:
        with forwarding(send, streams if tty else None):
            try:
                engine.start(cid, stdio=streams.stdio, console_socket=streams.console_path)
                streams.started()
            except BaseException:
                streams.close()
                raise
            path = engine.paths.log(cid)
            path.parent.mkdir(parents=True, exist_ok=True)
            checks = None
            if run.health:
                from pinnace.monitor.detached import health_timer
                from pinnace.runtime.watch import HealthChecks, Timer

                timer = health_timer(engine, cid, run.health)
                checks = HealthChecks(timer["command"], [])
            pump(streams, tty, interactive,
                 JsonLog(str(path), run.log.max_size, run.log.max_files),
                 Timer(run.health.interval, checks) if checks else None)
            code = engine.wait(cid)
            if checks:
                checks.wait()
            return code
    except BaseException:
        if run.auto_remove:
            with contextlib.suppress(NotFound):
                engine.remove(cid, force=True)
        raise


def pump(streams: Streams, tty: bool, interactive: bool, log: JsonLog | None,
         every: Timer | None = None) -> None:
    """Copy the process's output to our stdout/stderr (and ``log``) and, with a
    pty and ``interactive``, our stdin to it, until its output closes; ``every``
    runs the health checks meanwhile.
    With a pty our terminal is in raw mode meanwhile and its size is copied."""
    from pinnace.runtime.watch import Session

    session = Session(streams.outputs, stdin=streams.stdin, log=log,
                      echo={"stdout": 1, "stderr": 2},
                      local_input=0 if tty and interactive else None, tty=tty)
    if not tty:
        session.run(every=every)
        return
    from pinnace.runtime import console

    if streams.outputs:
        console.copy_size(0, next(iter(streams.outputs)))
    with console.raw_mode(0):
        session.run(every=every)


@contextlib.contextmanager
def forwarding(send: Callable[[int], None], tty: Streams | None) -> Iterator[None]:
    """Forward our signals with ``send``; with a pty, SIGWINCH resizes it instead."""
    count = {"n": 0}

    def forward(signum: int, _frame: object) -> None:
        if signum == signal.SIGWINCH and tty is not None:
            from pinnace.runtime import console

            if tty.outputs:
                console.copy_size(0, next(iter(tty.outputs)))
            return
        if signum in (signal.SIGINT, signal.SIGTERM):
            count["n"] += 1
            if count["n"] >= KILL_AFTER:
                print("pinnace: got 3 interrupts, killing the container", file=sys.stderr)
                signum = signal.SIGKILL
        with contextlib.suppress(Exception):
            send(signum)

    previous = {s: signal.signal(s, forward) for s in FORWARDED}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
