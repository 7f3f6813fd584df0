"""The ``none`` network: a network namespace of its own with only ``lo`` up."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pinnace.errors import FailedPrecondition
from pinnace.network import Attachment, Interface, IPConfig, NetworkResult
from pinnace.plugin import Plugin, hookimpl

if TYPE_CHECKING:
    import socket

SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1


def _lo_flags(sock: socket.socket, set_flags: int = 0) -> int:
    import fcntl
    import struct

    req = struct.pack("16sH14x", b"lo", 0)
    flags = struct.unpack("16sH14x", fcntl.ioctl(sock, SIOCGIFFLAGS, req))[1]
    if set_flags and not flags & set_flags:
        flags |= set_flags
        fcntl.ioctl(sock, SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags))
    return flags


class NoneNetwork(Plugin):
    """Loopback only: no route out, nothing to clean up but the namespace itself."""

    @hookimpl
    def pinnace_network_add(self, attachment: Attachment) -> NetworkResult:
        """Bring ``lo`` up inside the container's network namespace."""
        import socket

        from pinnace import netns

        with netns.entered(attachment.netns), \
                socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            _lo_flags(sock, IFF_UP)
        return NetworkResult(
            interfaces=(Interface("lo", sandbox=attachment.netns),),
            ips=(IPConfig("127.0.0.1/8"),),
        )

    @hookimpl
    def pinnace_network_del(self, attachment: Attachment) -> None:
        """Nothing to undo: the namespace goes with the container."""

    @hookimpl
    def pinnace_network_check(self, attachment: Attachment) -> None:
        """``lo`` must be up."""
        import socket

        from pinnace import netns

        with netns.entered(attachment.netns), \
                socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            if not _lo_flags(sock) & IFF_UP:
                raise FailedPrecondition(f"lo is down in {attachment.netns}")
