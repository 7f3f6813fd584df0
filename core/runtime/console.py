"""Terminals: a pty made inside the container, its master passed out over a unix socket.

The runtime side (:func:`connect`, then :func:`make_console` once the
container's /dev is in place) allocates the pty from the container's own
devpts, so ``tty`` inside names a device that exists there; the master goes
to whoever listens on the console socket (:class:`ConsoleSocket`), as OCI
runtimes do with ``--console-socket``.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import struct
import termios
from collections.abc import Iterator

TIOCSPTLCK = 0x40045431
TIOCGPTN = 0x80045430


def connect(path: str) -> socket.socket:
    """Connect to a console socket (before pivot_root or setns hides its path)."""
    from pinnace.runtime.watch import unix_socket

    return unix_socket(path, listen=False)


def make_console(sock: socket.socket, uid: int = 0, gid: int = 0) -> None:
    """Allocate a pty from /dev/ptmx, send its master on ``sock``, make the slave
    this process's controlling terminal and stdio (call after setsid)."""
    master = os.open("/dev/ptmx", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    fcntl.ioctl(master, TIOCSPTLCK, struct.pack("i", 0))
    number = struct.unpack("I", fcntl.ioctl(master, TIOCGPTN, b"\0" * 4))[0]
    slave = os.open(f"/dev/pts/{number}", os.O_RDWR | os.O_NOCTTY)
    os.fchown(slave, uid, gid)
    socket.send_fds(sock, [b"pty"], [master])
    sock.close()
    os.close(master)
    fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
    for fd in (0, 1, 2):
        os.dup2(slave, fd)
    if slave > 2:
        os.close(slave)


class ConsoleSocket:
    """The listening end: a socket file at ``path`` that receives one pty master."""

    def __init__(self, path: str) -> None:
        from pinnace.runtime.watch import unix_socket

        self.path = path
        self.sock = unix_socket(path, listen=True)

    def receive(self, timeout: float = 10.0) -> int:
        """The master fd sent by the runtime (it has connected by now)."""
        self.sock.settimeout(timeout)
        conn, _ = self.sock.accept()
        with conn:
            _, fds, _, _ = socket.recv_fds(conn, 16, 1)
        if not fds:
            raise OSError("the runtime sent no terminal")
        return fds[0]

    def close(self) -> None:
        """Close and unlink the socket."""
        self.sock.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)


def window_size(fd: int) -> tuple[int, int] | None:
    """The (rows, columns) of the terminal on ``fd``, or None when it is not one."""
    try:
        rows, cols, _, _ = struct.unpack("HHHH", fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8))
    except OSError:
        return None
    return rows, cols




def copy_size(terminal: int, pty: int) -> None:
    """Give the pty on ``pty`` the window size of ``terminal`` (nothing when it is not one)."""
    from pinnace.runtime.watch import resize

    size = window_size(terminal)
    if size:
        resize(pty, *size)


@contextlib.contextmanager
def raw_mode(fd: int) -> Iterator[None]:
    """Put the terminal on ``fd`` in raw mode for the duration (no-op when not a tty).

    Both switches keep the terminal's pending input (no TCSAFLUSH): what was typed
    before the container was ready still reaches it."""
    if not os.isatty(fd):
        yield
        return
    import tty

    saved = termios.tcgetattr(fd)
    tty.setraw(fd, termios.TCSANOW)
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
