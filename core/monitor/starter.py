"""Starting detached monitors: forked by the caller, or, from a process with threads
(``pinnace serve``), by a starter.

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
import sys
import threading
from typing import TYPE_CHECKING, NoReturn

if TYPE_CHECKING:
    import socket
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
        import socket
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
        import socket

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


def start_detached(engine: Engine, cid: str, hold: float = 0.0) -> None:
    """Fork a monitor that starts the container; return once it runs, or raise why not.

    The monitor is a grandchild (its parent exits at once), so a long-lived caller
    such as ``pinnace serve`` is left no child to reap. A caller with threads (the
    server) has its starter fork it instead. With ``hold`` the monitor reads no output
    until a first client attaches (or ``hold`` seconds pass)."""
    from pinnace.monitor.detached import fork_monitor

    read_end, write_end = os.pipe2(os.O_CLOEXEC)
    if threading.active_count() > 1:
        try:
            start_monitor(engine, cid, hold, write_end)
        finally:
            os.close(write_end)
    else:
        engine.release_state()
        pid = os.fork()
        if pid == 0:  # the monitor's parent, gone as soon as the monitor is forked
            try:
                os.close(read_end)
                fork_monitor(engine, cid, write_end, hold)
            finally:
                os._exit(1)
        os.close(write_end)
        os.waitpid(pid, 0)
    chunks = []
    while chunk := os.read(read_end, 65536):
        chunks.append(chunk)
    os.close(read_end)
    report = b"".join(chunks)
    if report != b"ok":
        _raise(report)


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
    import socket

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


def _raise(report: bytes) -> NoReturn:
    """The error a monitor reported while starting its container."""
    from pinnace.errors import PinnaceError

    try:
        info = json.loads(report)
    except ValueError:
        info = {"error": "the container's monitor died while starting it", "code": 125}
    err = PinnaceError(info["error"])
    err.exit_code = info["code"]
    raise err


if __name__ == "__main__":
    import socket

    serve(json.loads(sys.argv[1]), socket.socket(fileno=int(sys.argv[2])))

