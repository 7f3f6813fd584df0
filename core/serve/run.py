"""Starting and stopping ``pinnace serve``: its listeners, each serving in a thread; a
signal (SIGTERM, SIGINT) closes them and removes the socket, and nothing else: the
containers run on under their monitors."""

from __future__ import annotations

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
    stop = threading.Event()

    def leave(_signum: int, _frame: object) -> None:
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, leave)
    threads = [threading.Thread(target=listener.serve_forever, daemon=True)
               for listener in listeners]
    for thread in threads:
        thread.start()
    where = f"unix://{path}" + (f" and tcp://{tcp}" if tcp else "")
    print(f"pinnace serve: Docker API {API_VERSION} on "
          f"{where}", file=sys.stderr, flush=True)
    try:
        while not stop.wait(3600):
            pass
    finally:
        for listener in listeners:
            listener.shutdown()
            listener.server_close()
        if os.path.exists(path):
            os.unlink(path)
