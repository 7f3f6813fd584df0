"""Starting and stopping ``pinnace serve``: its listeners, each serving in a thread; a
signal (SIGTERM, SIGINT) closes them and removes the socket, and nothing else: the
containers run on under their monitors."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from typing import TYPE_CHECKING

from pinnace.serve import API_VERSION

if TYPE_CHECKING:
    from pinnace.config import Config


def default_socket(config: Config) -> str:
    """Where the socket goes without ``--socket``: ``pinnace.sock`` in the run root."""
    return str(config.run_root / "pinnace.sock")


def serve(config: Config, socket_path: str | None, tcp: str | None,
          debug: bool = False) -> None:
    """Serve the Docker Engine API until SIGTERM or SIGINT."""
    from pinnace.engine import Engine
    from pinnace.serve.http import Server, tcp_listener, unix_listener
    from pinnace.serve.routes import routes

    engine = Engine(config)
    engine.recover()
    engine.close()
    server = Server(config, routes(), debug)
    path = socket_path or default_socket(config)
    group = str(config.engine["api_group"].value) or None
    listeners = [unix_listener(server, path, group)]
    try:
        if tcp:
            listeners.append(tcp_listener(server, tcp))
    except BaseException:
        listeners[0].server_close()
        os.unlink(path)
        raise
    threads = [threading.Thread(target=listener.serve_forever, daemon=True)
               for listener in listeners]
    try:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, _leave)
        for thread in threads:
            thread.start()
        where = f"unix://{path}" + (f" and tcp://{tcp}" if tcp else "")
        print(f"pinnace serve: Docker API {API_VERSION} on "
              f"{where}", file=sys.stderr, flush=True)
        _wait_for_signals()
    except _Stop:
        pass
    finally:
        for listener, thread in zip(listeners, threads, strict=True):
            if thread.ident is not None:  # started: its loop ends, then shutdown returns
                listener.shutdown()
            listener.server_close()
        if os.path.exists(path):
            os.unlink(path)


def _wait_for_signals() -> None:
    """Sleep until a signal's handler raises: a signal that reaches another thread only
    marks itself for the main one, so the main thread wakes on the wakeup fd."""
    import select

    read_end, write_end = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(write_end)
    try:
        while True:
            select.select([read_end], [], [])
            with contextlib.suppress(BlockingIOError):
                os.read(read_end, 512)
    finally:
        signal.set_wakeup_fd(-1)
        os.close(read_end)
        os.close(write_end)


class _Stop(Exception):
    """SIGTERM or SIGINT: the server closes its listeners and leaves."""


def _leave(_signum: int, _frame: object) -> None:
    """The signal handler: raised in the main thread wherever it is (setting an Event
    here could deadlock on the lock its own wait holds); later signals are ignored."""
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, signal.SIG_IGN)
    raise _Stop
