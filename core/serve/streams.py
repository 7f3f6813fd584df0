"""What attach, exec and logs share: docker's stream framing and socket endings."""

from __future__ import annotations

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


def shutdown(sock: socket.socket) -> None:
    """Say we have sent everything (the client sees the end of the stream)."""
    try:
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        pass
