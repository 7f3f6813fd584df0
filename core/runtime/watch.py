"""The slim side of a container's monitor: copy its output to the log and to
attached clients, feed it input, and notice when it exits.

This module imports only the standard library, so the long-lived monitor of
a detached container runs it as a script (``python -I -S watch.py ARGS``)
after exec-ing away the engine, keeping its memory small. The foreground
``run`` uses the same :class:`Session` in-process, with the terminal as
one more reader and writer.

Logs use docker's json-file format: one JSON object per line with ``log``,
``stream`` and ``time`` (RFC 3339, nanoseconds, UTC), rotated by size.
"""

from __future__ import annotations

import json
import os
import select
import struct
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    import socket

FRAME = struct.Struct(">cI")
"""Attach protocol frames: a type byte and a payload length, then the payload."""
STDIN, STDOUT, STDERR, RESIZE, CLOSE_STDIN = b"0", b"1", b"2", b"r", b"e"
STREAM_FRAMES = {"stdout": STDOUT, "stderr": STDERR}
DRAIN_GRACE = 1.0
"""Seconds to keep reading output after the first process exited."""


def timestamp(now: float | None = None) -> str:
    """RFC 3339 with nanoseconds, UTC, as docker writes it."""
    now = time.time() if now is None else now
    whole = int(now)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + \
        f".{int((now - whole) * 1e9):09d}Z"


class JsonLog:
    """A json-file log with size-based rotation (``max_size`` 0: unlimited)."""

    def __init__(self, path: str, max_size: int = 0, max_files: int = 1) -> None:
        self.path, self.max_size, self.max_files = path, max_size, max(1, max_files)
        self.file = open(path, "ab")  # lives as long as the monitor
        self.size = self.file.tell()
        self.partial: dict[str, bytes] = {}
        self.dropping = False  # a full filesystem refused an entry (said once on stderr)

    def write(self, stream: str, data: bytes) -> None:
        """Append ``data`` from ``stream``; complete lines are written, a tail waits."""
        data = self.partial.pop(stream, b"") + data
        *lines, rest = data.split(b"\n")
        for line in lines:
            self._emit(stream, line + b"\n")
        if rest:
            self.partial[stream] = rest

    def flush(self) -> None:
        """Write the unterminated tails (at exit)."""
        for stream, rest in sorted(self.partial.items()):
            self._emit(stream, rest)
        self.partial.clear()
        self.file.flush()

    def _emit(self, stream: str, raw: bytes) -> None:
        entry = json.dumps({"log": raw.decode("utf-8", "replace"), "stream": stream,
                            "time": timestamp()}, ensure_ascii=False).encode() + b"\n"
        try:
            if self.max_size and self.size and self.size + len(entry) > self.max_size:
                self._rotate()
            self.file.write(entry)
            self.file.flush()
        except OSError as err:
            if err.errno not in (28, 122):  # ENOSPC, EDQUOT: the output goes on, unlogged
                raise
            self._drop(err)
            return
        self.size += len(entry)

    def _drop(self, err: OSError) -> None:
        """Forget the entry a full filesystem refused (the file is reopened without its
        buffered bytes); say so once on stderr."""
        try:
            self.file.close()
        except OSError:
            pass  # the same refused bytes, flushed once more
        self.file = open(self.path, "ab")
        self.size = self.file.tell()
        if not self.dropping:
            self.dropping = True
            reason = "disk quota exceeded" if err.errno == 122 else "no space left on device"
            print(f"pinnace: {reason} writing the container log {self.path}: output not "
                  "logged until there is room", file=sys.stderr, flush=True)

    def _rotate(self) -> None:
        self.file.close()
        if self.max_files == 1:
            os.truncate(self.path, 0)
        else:
            for n in range(self.max_files - 1, 0, -1):
                older = self.path if n == 1 else f"{self.path}.{n - 1}"
                if os.path.exists(older):
                    os.replace(older, f"{self.path}.{n}")
        self.file = open(self.path, "ab")
        self.size = 0


class Timer(NamedTuple):
    """A callback a :class:`Session` makes every ``interval`` seconds."""

    interval: float
    callback: Callable[[], None]


class HealthChecks:
    """Starts ``command`` (one health check, a process of its own) at each call, unless
    the previous one is still running; the container's streams (``private`` fds) are
    not passed on."""

    def __init__(self, command: list[str], private: list[int]) -> None:
        self.command = command
        self.closed = [(os.POSIX_SPAWN_CLOSE, fd) for fd in private]
        self.pid = 0

    def __call__(self) -> None:
        if self.pid and os.waitpid(self.pid, os.WNOHANG) == (0, 0):
            return
        self.pid = os.posix_spawn(self.command[0], self.command, os.environ,
                                  file_actions=self.closed)

    def wait(self) -> None:
        """Reap the last check (it ends once the container has)."""
        if self.pid:
            try:
                os.waitpid(self.pid, 0)
            except ChildProcessError:
                pass
            self.pid = 0


class Session:
    """One pump loop: container outputs to log, local fds and attach clients;
    local input and client input to the container's stdin (or pty)."""

    def __init__(self, outputs: dict[int, str], stdin: int | None = None,
                 log: JsonLog | None = None, echo: dict[str, int] | None = None,
                 local_input: int | None = None, attach: str | None = None,
                 tty: bool = False) -> None:
        self.outputs = dict(outputs)
        self.stdin = stdin
        self.log = log
        self.echo = echo or {}
        self.local_input = local_input
        self.tty = tty
        self.clients: list[socket.socket] = []
        self.buffers: dict[socket.socket, bytes] = {}
        self.listener: socket.socket | None = None
        self.attach = attach
        if attach:
            self.listener = unix_socket(attach, listen=True)

    def run(self, pidfd: int | None = None, every: Timer | None = None,
            until: float | None = None) -> bool:
        """Pump until every output is closed (and, with ``pidfd``, the process exited);
        call ``every``'s callback at its interval meanwhile, until the process exits.
        With ``until`` (a :func:`time.monotonic` time) stop then if not done before:
        False then, True when done."""
        exited_at: float | None = None
        next_tick = time.monotonic() + every.interval if every else None
        while self.outputs or (pidfd is not None and exited_at is None):
            if until is not None and time.monotonic() >= until:
                return False
            readers: list = list(self.outputs) + self.clients
            if self.local_input is not None:
                readers.append(self.local_input)
            if self.listener is not None:
                readers.append(self.listener)
            if pidfd is not None and exited_at is None:
                readers.append(pidfd)
            timeout = None
            if exited_at is not None:
                timeout = max(0.0, exited_at + DRAIN_GRACE - time.monotonic())
                if timeout == 0:
                    break
            elif every is not None and next_tick is not None:
                if time.monotonic() >= next_tick:
                    every.callback()
                    next_tick = time.monotonic() + every.interval
                timeout = max(0.0, next_tick - time.monotonic())
            if until is not None:
                left = max(0.0, until - time.monotonic())
                timeout = left if timeout is None else min(timeout, left)
            ready, _, _ = select.select(readers, [], [], timeout)
            for r in ready:
                if r is pidfd:
                    exited_at = time.monotonic()
                elif r is self.listener:
                    conn, _ = self.listener.accept()
                    self.clients.append(conn)
                elif r in self.clients:
                    self._client_input(r)
                elif r == self.local_input:
                    self._local_input()
                elif r in self.outputs:  # not a client dropped earlier in this round
                    self._output(r)
        if self.log:
            self.log.flush()
        return True

    def handover(self) -> dict:
        """The watcher's arguments that change for another process to go on with this
        session after an exec: the outputs and stdin still open, and ``handed`` (see
        :meth:`adopt`): the attach listener and clients, their partial input, the log's
        partial lines. Every descriptor of the session is made inheritable."""
        sockets = [*self.clients, *([self.listener] if self.listener is not None else [])]
        for fd in [*self.outputs, *([self.stdin] if self.stdin is not None else []),
                   *(s.fileno() for s in sockets)]:
            os.set_inheritable(fd, True)
        handed = {
            "listener": self.listener.fileno() if self.listener is not None else None,
            "clients": [c.fileno() for c in self.clients],
            "buffers": {str(c.fileno()): b.hex() for c, b in self.buffers.items() if b},
            "partial": {k: v.hex() for k, v in self.log.partial.items()} if self.log else {}}
        return {"outputs": {str(fd): s for fd, s in self.outputs.items()}, "stdin": self.stdin,
                "handed": handed}

    def adopt(self, handed: dict) -> None:
        """Go on with the session another process handed over (:meth:`handover`)."""
        import socket

        if handed["listener"] is not None:
            self.listener = socket.socket(fileno=handed["listener"])
        self.clients = [socket.socket(fileno=fd) for fd in handed["clients"]]
        by_fd = {c.fileno(): c for c in self.clients}
        self.buffers = {by_fd[int(fd)]: bytes.fromhex(b) for fd, b in handed["buffers"].items()}
        if self.log:
            self.log.partial = {k: bytes.fromhex(v) for k, v in handed["partial"].items()}
        for sock in [*self.clients, *([self.listener] if self.listener else [])]:
            os.set_inheritable(sock.fileno(), False)

    def await_client(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for a first attach client before any output is
        read (a client that asked to attach before the start sees all of it)."""
        assert self.listener is not None
        ready, _, _ = select.select([self.listener], [], [], timeout)
        if ready:
            conn, _ = self.listener.accept()
            self.clients.append(conn)

    def close(self) -> None:
        """Close the attach socket and its clients."""
        for c in self.clients:
            c.close()
        if self.listener is not None:
            self.listener.close()
            if self.attach and os.path.exists(self.attach):
                os.unlink(self.attach)

    def _output(self, fd: int) -> None:
        try:
            data = os.read(fd, 65536)
        except OSError:  # EIO: the pty's last slave closed
            data = b""
        stream = self.outputs[fd]
        if not data:
            del self.outputs[fd]
            if fd != self.stdin:
                os.close(fd)
            return
        if self.log:
            self.log.write(stream, data)
        if stream in self.echo:
            _write_all(self.echo[stream], data)
        frame = FRAME.pack(STREAM_FRAMES[stream], len(data)) + data
        for c in list(self.clients):
            try:
                c.sendall(frame)
            except OSError:
                self._drop(c)

    def _local_input(self) -> None:
        data = os.read(self.local_input, 65536)  # type: ignore[arg-type]
        if not data:
            self.local_input = None
        elif self.stdin is not None:
            _write_all(self.stdin, data)

    def _client_input(self, conn: socket.socket) -> None:
        try:
            data = conn.recv(65536)
        except OSError:
            data = b""
        if not data:
            self._drop(conn)
            return
        complete, self.buffers[conn] = frames(self.buffers.get(conn, b"") + data)
        for kind, payload in complete:
            self._frame(kind, payload)

    def _frame(self, kind: bytes, payload: bytes) -> None:
        if self.stdin is None:
            return
        if kind == STDIN:
            _write_all(self.stdin, payload)
        elif kind == RESIZE and self.tty:
            rows, cols = (int(x) for x in payload.split())
            resize(self.stdin, rows, cols)
        elif kind == CLOSE_STDIN and not self.tty:
            os.close(self.stdin)
            self.stdin = None

    def _drop(self, conn: socket.socket) -> None:
        self.clients.remove(conn)
        self.buffers.pop(conn, None)
        conn.close()


def unix_socket(path: str, listen: bool) -> socket.socket:
    """A unix socket bound to (or connected to) ``path``, whatever its length: a path
    too long for ``sun_path`` is reached through /proc/self/fd of its directory."""
    import socket

    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    dir_fd = None
    address = path
    if len(os.fsencode(path)) > 100:
        dir_fd = os.open(os.path.dirname(path) or ".", os.O_PATH | os.O_CLOEXEC)
        address = f"/proc/self/fd/{dir_fd}/{os.path.basename(path)}"
    try:
        if listen:
            if os.path.lexists(path):
                os.unlink(path)
            sock.bind(address)
            sock.listen(8)
        else:
            sock.connect(address)
    except BaseException:
        sock.close()
        raise
    finally:
        if dir_fd is not None:
            os.close(dir_fd)
    return sock


def _write_all(fd: int, data: bytes) -> None:
    try:
        while data:
            data = data[os.write(fd, data):]
    except OSError:  # the reader went away; output still reaches the log
        pass


def frames(buf: bytes) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """The complete attach frames at the start of ``buf`` as (type, payload), and the rest."""
    out = []
    while len(buf) >= FRAME.size:
        kind, length = FRAME.unpack_from(buf)
        if len(buf) < FRAME.size + length:
            break
        out.append((kind, buf[FRAME.size:FRAME.size + length]))
        buf = buf[FRAME.size + length:]
    return out, buf


def resize(fd: int, rows: int, cols: int) -> None:
    """Set the window size of the pty on ``fd`` (its foreground group gets SIGWINCH)."""
    import fcntl
    import termios

    try:
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    except OSError:
        pass


def exit_code(status: int) -> int:
    """A wait status as a shell reports it: the exit code, or 128 + the signal number."""
    return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)


def open_session(args: dict) -> Session:
    """The session of a detached container that ``args`` (the watcher's) describe: a
    new one, or with ``handed`` the one another process began (:meth:`Session.handover`)."""
    outputs = {int(fd): stream for fd, stream in args["outputs"].items()}
    log = JsonLog(args["log"], args.get("max_size", 0), args.get("max_files", 1))
    handed = args.get("handed")
    session = Session(outputs, stdin=args.get("stdin"), log=log,
                      attach=None if handed else args.get("attach"), tty=args.get("tty", False))
    if handed:
        session.attach = args.get("attach")
        session.adopt(handed)
    return session


def watch(args: dict, session: Session, until: float | None = None) -> int | None:
    """Pump ``session`` until the container's first process (``args["pid"]``, our
    child) has exited and its output ended, then reap it: its exit code (-1 unknown).
    With ``until``, None if that time came first (the session goes on, nothing reaped)."""
    pid = args["pid"]
    pidfd = os.pidfd_open(pid)
    private = [*session.outputs, *([session.stdin] if session.stdin is not None else [])]
    checks = HealthChecks(args["health"]["command"], private) if args.get("health") else None
    done = False
    try:
        if args.get("hold") and session.listener is not None:
            session.await_client(args["hold"])
        done = session.run(pidfd, Timer(args["health"]["interval"], checks) if checks
                           else None, until)
    finally:
        os.close(pidfd)
        if done or until is None:
            session.close()
    if not done:
        return None
    if checks:
        checks.wait()
    return reap(pid)


def reap(pid: int) -> int:
    """Reap ``pid`` (and any orphan reparented to us meanwhile): its exit code, -1 unknown."""
    code = -1
    while True:  # reap our first process, and any orphan that was reparented to us
        try:
            child, status = os.waitpid(-1, 0)
        except ChildProcessError:
            break
        if child == pid:
            code = exit_code(status)
            break
    return code


def main(argv: list[str]) -> None:
    """Monitor one detached container (its first process is our child), then
    exec ``finish`` with the exit code appended."""
    args = json.loads(argv[0])
    code = watch(args, open_session(args))
    os.execv(args["finish"][0], args["finish"] + [str(code)])


if __name__ == "__main__":
    main(sys.argv[1:])
