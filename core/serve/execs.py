"""Exec endpoints (create, start, resize, inspect) and the server's table of execs and of
attaches waiting for their container to start."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pinnace.errors import FailedPrecondition, NotFound, PinnaceError

if TYPE_CHECKING:
    from pinnace.client import Exec
    from pinnace.serve.http import Request


@dataclass
class ExecEntry:
    """An exec as ``POST /containers/{id}/exec`` made it, and what became of it."""

    id: str
    container: str
    command: list[str]
    env: list[str]
    workdir: str | None
    user: str | None
    tty: bool
    stdin: bool
    stdout: bool
    stderr: bool
    detach_keys: bytes = b""
    running: bool = False
    exit_code: int | None = None
    pid: int = 0
    process: Exec | None = field(default=None, repr=False)


class ExecTable:
    """The server's execs by ID, and the containers an attach waits on (thread-safe)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.entries: dict[str, ExecEntry] = {}
        self.waiting: dict[str, int] = {}
        self.starts = threading.Condition(self.lock)

    def add(self, entry: ExecEntry) -> None:
        """Record a new exec."""
        with self.lock:
            self.entries[entry.id] = entry

    def get(self, exec_id: str) -> ExecEntry:
        """An exec by ID."""
        with self.lock:
            entry = self.entries.get(exec_id)
        if entry is None:
            raise NotFound(f"No such exec instance: {exec_id}")
        return entry

    def expect_attach(self, cid: str) -> None:
        """An attach waits for container ``cid`` to start."""
        with self.lock:
            self.waiting[cid] = self.waiting.get(cid, 0) + 1

    def attached(self, cid: str) -> None:
        """That attach has its connection (or gave up)."""
        with self.lock:
            left = self.waiting.get(cid, 1) - 1
            if left:
                self.waiting[cid] = left
            else:
                self.waiting.pop(cid, None)

    def attach_pending(self, cid: str) -> bool:
        """Whether an attach waits for ``cid`` to start."""
        with self.lock:
            return cid in self.waiting

    def started(self) -> None:
        """This server started a container: wake the attaches waiting in :meth:`pause`."""
        with self.starts:
            self.starts.notify_all()

    def pause(self, seconds: float) -> None:
        """Wait ``seconds`` for a container to start, less when this server starts one."""
        with self.starts:
            self.starts.wait(seconds)


def create(req: Request) -> None:
    """``POST /containers/{id}/exec``."""
    import secrets

    from pinnace.serve.streams import detach_sequence

    body = req.json()
    record = req.client.container(req.params["id"])
    if record.status != "running":
        raise FailedPrecondition(f"Container {record.id} is not running")
    command = body.get("Cmd") or []
    if isinstance(command, str):
        command = [command]
    if not command:
        raise FailedPrecondition("No exec command specified")
    entry = ExecEntry(secrets.token_hex(32), record.id, list(command), list(body.get("Env") or []),
                      body.get("WorkingDir") or None, body.get("User") or None,
                      bool(body.get("Tty")), bool(body.get("AttachStdin")),
                      bool(body.get("AttachStdout")), bool(body.get("AttachStderr")),
                      detach_sequence(body.get("DetachKeys") or body.get("detachKeys")))
    req.server.execs.add(entry)
    req.reply(201, {"Id": entry.id})


def start(req: Request) -> None:
    """``POST /exec/{id}/start``: hijacked, or detached. The output is raw when the
    request says ``Tty`` (the exec's own setting when it says nothing), else in
    multiplexed frames (a terminal's output as stdout), as docker frames it. With a
    terminal, the detach keys typed on stdin leave the process running and close the
    connection."""
    import threading as threads

    from pinnace.serve.streams import DetachScanner, content_type, frame, quietly, shutdown

    entry = req.server.execs.get(req.params["id"])
    body = req.json()
    raw = bool(body.get("Tty", entry.tty))
    if entry.running or entry.exit_code is not None:
        raise FailedPrecondition(f"exec {entry.id} has already run")
    detach = bool(body.get("Detach"))
    record = req.client.container(entry.container)
    if record.status != "running":
        raise FailedPrecondition(f"Container {record.id} is not running")
    # the headers go first: a client that reads them buffered must not swallow output
    sock = None if detach else req.hijack(content_type(raw))
    try:
        process = req.client.exec_start(entry.container, entry.command, entry.env,
                                        entry.workdir, entry.user, entry.tty,
                                        entry.stdin and not detach)
    except PinnaceError as err:
        if sock is None:
            raise
        sock.sendall(frame("stderr", f"{err}\n".encode(), raw))
        entry.exit_code = err.exit_code
        shutdown(sock)
        return
    entry.process, entry.pid, entry.running = process, process.pid, True
    streams = process.streams
    if sock is None:  # detached: its output is read and dropped, as docker's is
        threads.Thread(target=_drain_and_reap, args=(entry,), daemon=True).start()
        req.reply(200)
        return
    done = threads.Event()
    if streams.stdin is not None:
        scanner = DetachScanner(entry.detach_keys) if entry.tty else None

        def forward() -> None:
            while data := req.read_hijacked():
                detached = False
                if scanner is not None:
                    data, detached = scanner.feed(data)
                if not process.write_stdin(data):
                    return
                if detached:
                    done.set()
                    return
            if not entry.tty:
                process.close_stdin()

        threads.Thread(target=quietly, args=(forward,), daemon=True).start()
    wanted = {s for s, on in (("stdout", entry.stdout), ("stderr", entry.stderr)) if on}

    def send(stream: str, data: bytes) -> None:
        if (stream in wanted or entry.tty) and not done.is_set():
            try:
                sock.sendall(frame("stdout" if entry.tty else stream, data, raw))
            except OSError:  # the client left: the output is dropped, the process runs on
                done.set()

    def pump() -> None:
        try:
            process.read(send)
        finally:
            _reap(entry)
            done.set()

    threads.Thread(target=pump, daemon=True).start()
    done.wait()
    shutdown(sock)


def _drain_and_reap(entry: ExecEntry) -> None:
    assert entry.process is not None
    entry.process.read(lambda _stream, _data: None)
    _reap(entry)


def _reap(entry: ExecEntry) -> None:
    assert entry.process is not None
    entry.exit_code = entry.process.wait()
    entry.running = False


def resize(req: Request) -> None:
    """``POST /exec/{id}/resize?h=&w=``."""
    from pinnace.runtime.watch import resize as set_size

    entry = req.server.execs.get(req.params["id"])
    process = entry.process
    if process is None or not entry.tty:
        return
    for fd in process.streams.outputs:
        set_size(fd, req.number("h", 24), req.number("w", 80))


def inspect(req: Request) -> None:
    """``GET /exec/{id}/json``."""
    entry = req.server.execs.get(req.params["id"])
    details: dict[str, Any] = {
        "ID": entry.id, "Running": entry.running, "ExitCode": entry.exit_code,
        "ProcessConfig": {"tty": entry.tty, "entrypoint": entry.command[0],
                          "arguments": entry.command[1:], "privileged": False,
                          "user": entry.user or ""},
        "OpenStdin": entry.stdin, "OpenStdout": entry.stdout, "OpenStderr": entry.stderr,
        "ContainerID": entry.container, "Pid": entry.pid, "CanRemove": False,
        "DetachKeys": "",
    }
    req.reply(200, details)
