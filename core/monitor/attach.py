"""``pinnace attach``: a client of a detached container's monitor.

The monitor listens on ``attach.sock`` in the container's bundle and speaks
the framed protocol of :mod:`pinnace.runtime.watch`. The client sends our
stdin (and window size with a tty), prints what the container writes, and
leaves on the detach keys (default Ctrl-P Ctrl-Q) with the container still
running.

Signals follow docker: without a tty and with ``--sig-proxy`` (the default)
they are forwarded to the container; otherwise SIGINT, SIGTERM, SIGHUP and
SIGQUIT end the client (exit 128 + the signal) and never reach the container.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
from typing import TYPE_CHECKING

from pinnace.errors import FailedPrecondition, InvalidConfig

if TYPE_CHECKING:
    import socket
    from collections.abc import Callable, Iterator

    from pinnace.engine import Engine

LEAVE_ON = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)


class Interrupted(Exception):
    """A signal that ends the client without being proxied to the container."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


@contextlib.contextmanager
def leaving_on_signals(on_resize: Callable[[], None]) -> Iterator[None]:
    """SIGWINCH calls ``on_resize``; the signals of :data:`LEAVE_ON` raise :class:`Interrupted`."""

    def leave(signum: int, _frame: object) -> None:
        raise Interrupted(signum)

    handlers = {s: leave for s in LEAVE_ON}
    handlers[signal.SIGWINCH] = lambda _signum, _frame: on_resize()
    previous = {s: signal.signal(s, h) for s, h in handlers.items()}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def parse_detach_keys(text: str) -> bytes:
    """``ctrl-p,ctrl-q`` or ``a,ctrl-x`` as the bytes a terminal sends."""
    out = bytearray()
    for key in text.split(","):
        key = key.strip().lower()
        if key.startswith("ctrl-") and len(key) == 6 and (key[5].isalpha() or key[5] in "@[\\]^_"):
            out.append(ord(key[5].upper()) & 0x1F)
        elif len(key) == 1:
            out.append(ord(key))
        else:
            raise InvalidConfig(f"invalid detach key {key!r}: use a letter or ctrl-<letter>")
    return bytes(out)


def connect(engine: Engine, cid: str, wait: float = 0.0) -> socket.socket:
    """A connection to the running container's monitor (its framed protocol); its
    socket appears just after the start, so ``wait`` seconds are given for it."""
    import time

    from pinnace.polling import Pauses
    from pinnace.runtime.watch import unix_socket

    c = engine.container(cid)
    if not c.active:
        raise FailedPrecondition(f"container {c.name} is not running: start it first")
    path = engine.paths.bundle(cid) / "attach.sock"
    deadline = time.monotonic() + wait
    pauses = Pauses()
    while True:
        try:
            return unix_socket(str(path), listen=False)
        except OSError:
            if time.monotonic() >= deadline:
                raise FailedPrecondition(
                    f"container {c.name} runs in the foreground of another pinnace: nothing "
                    "to attach to") from None
            pauses.sleep()


def attach(engine: Engine, cid: str, detach_keys: bytes, with_stdin: bool,
           sig_proxy: bool) -> int:
    """Attach until the container exits (its exit code) or the detach keys (0)."""
    from pinnace.monitor.foreground import forwarding
    from pinnace.runtime import console
    from pinnace.runtime.watch import FRAME, RESIZE

    sock = connect(engine, cid)
    tty = engine.container(cid).config.run.tty

    def send_frame(kind: bytes, payload: bytes) -> None:
        sock.sendall(FRAME.pack(kind, len(payload)) + payload)

    def send_size() -> None:
        size = console.window_size(0)
        if size:
            send_frame(RESIZE, f"{size[0]} {size[1]}".encode())

    def send(signum: int) -> None:
        if signum != signal.SIGWINCH:
            engine.kill(cid, signum)

    def on_resize() -> None:
        if tty:
            send_size()

    signals = forwarding(send, None) if sig_proxy and not tty else leaving_on_signals(on_resize)
    try:
        detached = pump(sock, signals, tty, with_stdin, detach_keys, send_frame, send_size)
    except Interrupted as stop:
        return 128 + stop.signum
    finally:
        sock.close()
    if detached:
        return 0
    code = engine.wait_exit(cid)
    return 0 if code is None else code


def pump(sock: socket.socket, signals: contextlib.AbstractContextManager[None], tty: bool,
         with_stdin: bool, detach_keys: bytes, send_frame: Callable[[bytes, bytes], None],
         send_size: Callable[[], None]) -> bool:
    """Copy stdin to the monitor and its output to ours until the container's
    output ends (False) or the detach keys are typed (True)."""
    from pinnace.runtime import console
    from pinnace.runtime.watch import CLOSE_STDIN, STDERR, STDIN, frames

    detached = False
    with signals, contextlib.ExitStack() as stack:
        if tty:
            stack.enter_context(console.raw_mode(0))
            send_size()
        readers: list = [sock]
        if with_stdin:
            readers.append(0)
        buf, matched = b"", 0
        while not detached:
            ready, _, _ = select.select(readers, [], [])
            if 0 in ready:
                data = os.read(0, 4096)
                if not data:
                    readers.remove(0)
                    send_frame(CLOSE_STDIN, b"")
                    continue
                for i, byte in enumerate(data):
                    matched = matched + 1 if byte == detach_keys[matched] else \
                        (1 if byte == detach_keys[0] else 0)
                    if matched == len(detach_keys):
                        data, detached = data[:i + 1 - len(detach_keys)], True
                        break
                if data:
                    send_frame(STDIN, data)
            if sock in ready:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                complete, buf = frames(buf + chunk)
                for kind, payload in complete:
                    os.write(2 if kind == STDERR else 1, payload)
    return detached
