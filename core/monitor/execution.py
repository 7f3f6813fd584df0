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
    from pinnace.runtime.spec import Process


def run_exec(engine: Engine, cid: str, process: Process, interactive: bool,
             detach: bool) -> int:
    """Run ``process`` in container ``cid``; its exit code (0 at once with ``detach``)."""
    from pinnace.monitor.foreground import forwarding, pump
    from pinnace.runtime.watch import exit_code

    bundle = str(engine.paths.bundle(cid))
    if detach:
        null = os.open("/dev/null", os.O_RDWR | os.O_CLOEXEC)
        try:
            engine.exec(cid, process, (null, null, null))
        finally:
            os.close(null)
        return 0
    if process.terminal:
        from pinnace.monitor.detached import open_streams

        streams = open_streams(os.path.join(bundle, f"exec-{os.getpid()}"), True, interactive)
        process.console_socket = streams.console_path
        stdio = None
    else:
        streams = None
        stdio = (0 if interactive else os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC), 1, 2)
    pid = 0

    def send(signum: int) -> None:
        if pid:
            os.kill(pid, signum)

    try:
        with forwarding(send, streams):
            try:
                pid = engine.exec(cid, process, stdio)
                if streams is not None:
                    streams.started()
            except BaseException:
                if streams is not None:
                    streams.close()
                raise
            finally:
                if stdio is not None and stdio[0] != 0:
                    os.close(stdio[0])
            if streams is not None:
                pump(streams, True, interactive, None)
            _, status = os.waitpid(pid, 0)
    finally:
        if streams is not None:
            with contextlib.suppress(OSError):
                os.rmdir(os.path.dirname(streams.console_path))
    return exit_code(status)
