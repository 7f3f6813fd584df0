"""``pinnace exec``: a process in a running container, a child of this one.

Without ``-t`` it uses our stdout and stderr directly (and stdin with
``-i``); with ``-t`` it gets a pty from the container's devpts, pumped to
our terminal in raw mode. Signals are forwarded; ``-d`` leaves it running.
"""

from __future__ import annotations

import contextlib
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pinnace.engine import Engine
    from pinnace.monitor.detached import Streams
    from pinnace.runtime.spec import Process


def start_exec(engine: Engine, cid: str, process: Process, interactive: bool
               ) -> tuple[int, Streams]:
    """Start ``process`` in container ``cid`` with its streams on pipes (a pty with
    ``process.terminal``) whose other ends we keep: its PID and those ends. Their
    directory under the bundle is removed by :func:`end_exec`."""
    from pinnace.monitor.detached import open_streams

    bundle = str(engine.paths.bundle(cid))
    streams = open_streams(os.path.join(bundle, f"exec-{os.getpid()}-{id(process)}"),
                           process.terminal, interactive)
    process.console_socket = streams.console_path
    try:
        pid = engine.exec(cid, process, streams.stdio)
        streams.started()
    except BaseException:
        streams.close()
        end_exec(streams)
        raise
    return pid, streams


def end_exec(streams: Streams) -> None:
    """Remove what :func:`start_exec` made for a pty."""
    with contextlib.suppress(OSError):
        os.rmdir(streams.directory)


def run_exec(engine: Engine, cid: str, process: Process, interactive: bool,
             detach: bool) -> int:
    """Run ``process`` in container ``cid``; its exit code (0 at once with ``detach``)."""
    from pinnace.monitor.foreground import forwarding, pump
    from pinnace.runtime.watch import exit_code

    if detach:
        null = os.open("/dev/null", os.O_RDWR | os.O_CLOEXEC)
        try:
            engine.exec(cid, process, (null, null, null))
        finally:
            os.close(null)
        return 0
    pid = 0

    def send(signum: int) -> None:
        if pid:
            os.kill(pid, signum)

    if process.terminal:
        with forwarding(send, None):
            pid, streams = start_exec(engine, cid, process, interactive)
        try:
            with forwarding(send, streams):
                pump(streams, True, interactive, None)
                _, status = os.waitpid(pid, 0)
        finally:
            end_exec(streams)
        return exit_code(status)
    stdio = (0 if interactive else os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC), 1, 2)
    with forwarding(send, None):
        try:
            pid = engine.exec(cid, process, stdio)
        finally:
            if stdio[0] != 0:
                os.close(stdio[0])
        _, status = os.waitpid(pid, 0)
    return exit_code(status)
