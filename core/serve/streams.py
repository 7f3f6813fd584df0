"""What attach, exec and logs share: docker's stream framing and socket endings."""

from __future__ import annotations

import array
import socket
import struct
from collections.abc import Callable

HEADER = struct.Struct(">BxxxL")
"""Docker's multiplexed stream frame header: stream (1 stdout, 2 stderr), size."""
STREAM_IDS = {"stdout": 1, "stderr": 2}


def frame(stream: str, data: bytes, tty: bool) -> bytes:
    """``data`` as it goes to a client: raw with a tty, else in a multiplexed frame."""
    return data if tty else HEADER.pack(STREAM_IDS.get(stream, 1), len(data)) + data


def content_type(tty: bool) -> str:
    """The content type of a container's streams: raw with a tty, else multiplexed."""
    return "application/vnd.docker.raw-stream" if tty else \
        "application/vnd.docker.multiplexed-stream"


def quietly(action: Callable[[], None]) -> None:
    """Run ``action``; a connection that went away ends it silently."""
    try:
        action()
    except OSError:
        pass


def headers_read(sock: socket.socket, timeout: float = 1.0) -> None:
    """Wait (``timeout`` at most) until the peer has read what was sent on ``sock``: a
    client that reads a hijacked reply's headers through a buffer (http.client's) would
    otherwise swallow the stream's first bytes with them. Exact on a unix socket, whose
    send queue holds what its peer has not read yet; on TCP, until it was acknowledged."""
    import fcntl
    import termios
    import time

    deadline = time.monotonic() + timeout
    queued = array.array("i", [0])
    while time.monotonic() < deadline:
        try:
            fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, queued)
        except OSError:
            return
        if queued[0] == 0:
            return
        time.sleep(0.002)


def shutdown(sock: socket.socket) -> None:
    """Say we have sent everything (the client sees the end of the stream)."""
    try:
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        pass


DEFAULT_DETACH_KEYS = "ctrl-p,ctrl-q"
_CONTROL = {"@": 0, "[": 27, "\\": 28, "]": 29, "^": 30, "_": 31}


def detach_sequence(spec: str | None) -> bytes:
    """Docker's detach keys (``ctrl-p,ctrl-q``: comma-separated, each ``ctrl-X`` or one
    character) as the bytes a client types; the default for None or empty."""
    from pinnace.errors import InvalidConfig

    out = bytearray()
    for key in (spec or DEFAULT_DETACH_KEYS).split(","):
        if len(key) == 1:
            out.append(ord(key))
        elif key.startswith("ctrl-") and len(key) == 6:
            char = key[5].lower()
            if "a" <= char <= "z":
                out.append(ord(char) - ord("a") + 1)
            elif char in _CONTROL:
                out.append(_CONTROL[char])
            else:
                raise InvalidConfig(f"invalid detach keys {spec!r}: unknown key {key!r}")
        else:
            raise InvalidConfig(f"invalid detach keys {spec!r}: unknown key {key!r}")
    return bytes(out)


class DetachScanner:
    """Watches a client's input for the detach sequence: what to pass on, and whether
    the client detached (a partial sequence is held back until it completes or breaks,
    as docker does)."""

    def __init__(self, sequence: bytes) -> None:
        self.sequence = sequence
        self.held = b""

    def feed(self, data: bytes) -> tuple[bytes, bool]:
        """The bytes of ``data`` to forward, and True once the sequence was typed."""
        out = bytearray()
        for byte in data:
            self.held += bytes((byte,))
            while self.held and not self.sequence.startswith(self.held):
                out.append(self.held[0])
                self.held = self.held[1:]
            if self.held == self.sequence:
                return bytes(out), True
        return bytes(out), False
