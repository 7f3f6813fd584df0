"""``pinnace attach``: a client of a detached container's monitor.

The monitor listens on ``attach.sock`` in the container's bundle and speaks
the framed protocol of :mod:`pinnace.runtime.watch`. The client sends our
stdin (and window size with a tty), prints what the container writes, and
leaves on the detach keys (default Ctrl-P Ctrl-Q) with the container still
running.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
from typing import TYPE_CHECKING

from pinnace.errors import FailedPrecondition, InvalidConfig

if TYPE_CHECKING:
    from pinnace.engine import Engine


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


def attach(engine: Engine, cid: str, detach_keys: bytes, with_stdin: bool,
           sig_proxy: bool) -> int:
    """Attach until the container exits (its exit code) or the detach keys (0)."""
    from pinnace.monitor.foreground import forwarding
    from pinnace.runtime import console
    from pinnace.runtime.watch import CLOSE_STDIN, FRAME, RESIZE, STDERR, STDIN, frames, unix_socket

    c = engine.container(cid)
    if not c.active:
        raise FailedPrecondition(f"container {c.name} is not running: start it first")
    path = engine.paths.bundle(cid) / "attach.sock"
    try:
        sock = unix_socket(str(path), listen=False)
    except OSError:
        raise FailedPrecondition(
            f"container {c.name} runs in the foreground of another pinnace: nothing to attach "
            "to") from None
    tty = c.config.run.tty

    def send_frame(kind: bytes, payload: bytes) -> None:
        sock.sendall(FRAME.pack(kind, len(payload)) + payload)

    def send_size() -> None:
        size = console.window_size(0)
        if size:
            send_frame(RESIZE, f"{size[0]} {size[1]}".encode())

    def send(signum: int) -> None:
        if signum == signal.SIGWINCH:
            if tty:
                send_size()
        elif sig_proxy and not tty:
            engine.kill(cid, signum)

    detached = False
    with forwarding(send, None), contextlib.ExitStack() as stack:
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
    sock.close()
    if detached:
        return 0
    code = engine.wait_exit(cid)
    return 0 if code is None else code
