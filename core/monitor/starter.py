"""Starting detached monitors from a process with threads (``pinnace serve``).

A fork of a process with threads may hold another thread's locks forever, so
such a process does not fork monitors itself: it asks a starter, a process of
its own with no threads, started once (a fresh interpreter that has imported
the engine and the selected plugins already), to fork each one. A request is
a datagram on a socket pair: the container, the hold, and the descriptor the
monitor reports its start on. The starter leaves when the socket closes (its
caller exited); the monitors it forked are not its children and run on.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import subprocess

    from pinnace.engine import Engine

PRELOADED = ("sqlite3", "pinnace.state", "pinnace.operations", "pinnace.containers.table",
             "pinnace.images.store", "pinnace.images.snapshots", "pinnace.net.networks",
             "pinnace.netns", "pinnace.runtime.cgroups", "pinnace.runtime.limits",
             "pinnace.runtime.policy", "pinnace.runtime.proc", "pinnace.runtime.watch")
"""What each monitor imports to start and finish a container, imported by the starter
once (besides the engine and the selected plugins)."""

_starters: dict[str, Starter] = {}
_lock = threading.Lock()


class Starter:
    """The caller's side of one starter process (for one engine's settings)."""

    def __init__(self, settings: str) -> None:
        import subprocess

        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.sock = mine
        self.process: subprocess.Popen[bytes] = subprocess.Popen(
            [sys.executable, "-m", "pinnace.monitor.starter", settings, str(theirs.fileno())],
            pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            start_new_session=True)  # a terminal's ^C to the caller is not for it
        theirs.close()

    def request(self, cid: str, hold: float, report: int) -> bool:
        """Ask for a monitor of ``cid`` that reports on ``report``; False when the
        starter is gone."""
        message = json.dumps({"cid": cid, "hold": hold}).encode()
        try:
            socket.send_fds(self.sock, [message], [report])
        except OSError:
            return False
        return True

    def close(self) -> None:
        """End the starter (it leaves when its socket closes) and reap it."""
        self.sock.close()
        self.process.wait()


def start_monitor(engine: Engine, cid: str, hold: float, report: int) -> None:
    """Have this process's starter for ``engine`` fork the monitor of ``cid`` (it reports
    on ``report``, which the caller may close once this returns); a starter that died
    is replaced."""
    from pinnace.monitor.detached import settings

    key = settings(engine)
    with _lock:
        for _ in range(2):
            starter = _starters.get(key)
            if starter is None:
                starter = _starters[key] = Starter(key)
            if starter.request(cid, hold, report):
                return
            del _starters[key]
            starter.close()
    raise OSError(f"the monitor starter for {cid} did not answer")


def serve(settings: dict[str, str | None], sock: socket.socket) -> None:
    """In the starter: fork a monitor for each request until the socket closes."""
    import importlib

    from pinnace.monitor.detached import fork_monitor, open_engine

    preload = open_engine(settings)
    for role in ("isolation", "storage", "network"):
        preload.plugins.load(role, preload.selected(role))
    for module in PRELOADED:
        importlib.import_module(module)
    while True:
        message, fds, _, _ = socket.recv_fds(sock, 4096, 1)
        if not message:
            return
        request = json.loads(message)
        pid = os.fork()
        if pid == 0:  # gone once it has forked the monitor: the monitor is no child of ours
            try:
                sock.close()
                os.set_inheritable(fds[0], False)  # closed when the monitor is done: EOF
                fork_monitor(open_engine(settings), request["cid"], fds[0], request["hold"])
            finally:
                os._exit(0)
        os.close(fds[0])
        os.waitpid(pid, 0)


if __name__ == "__main__":
    serve(json.loads(sys.argv[1]), socket.socket(fileno=int(sys.argv[2])))
