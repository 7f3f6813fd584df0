"""Network namespaces bind-mounted on files, and entering one for a moment."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator
from typing import TypeVar

from pinnace import linux

T = TypeVar("T")


def create(path: str) -> None:
    """Create a new network namespace kept alive by a bind mount on file ``path``.

    A short-lived thread unshares its own network namespace (namespaces are
    per thread) and bind-mounts it, which costs far less than a fork.
    """
    with open(path, "x"):
        pass
    failure: list[BaseException] = []

    def make() -> None:
        try:
            linux.unshare(linux.CLONE_NEWNET)
            linux.mount(f"/proc/self/task/{threading.get_native_id()}/ns/net", path, None,
                        linux.MS_BIND)
        except BaseException as err:  # reported to the caller below
            failure.append(err)

    worker = threading.Thread(target=make, name="pinnace-netns")
    worker.start()
    worker.join()
    if failure:
        os.unlink(path)
        raise failure[0]


def delete(path: str) -> None:
    """Unmount and remove a namespace file made by :func:`create`; idempotent."""
    try:
        linux.umount(path, detach=True)
    except OSError:
        pass
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


@contextlib.contextmanager
def entered(path: str) -> Iterator[None]:
    """Run the block with the calling thread inside the network namespace at ``path``."""
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    target = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        linux.setns(target, linux.CLONE_NEWNET)
        try:
            yield
        finally:
            linux.setns(home, linux.CLONE_NEWNET)
    finally:
        os.close(target)
        os.close(home)


def run_in(path: str, work: Callable[[], T]) -> T:
    """``work()`` run in the network namespace at ``path`` by a thread of its own that
    ends there. Unlike :func:`entered` it needs no way back, which a rootless pinnace
    lacks: the host's namespace is not its user namespace's to join again."""
    def inside() -> T:
        target = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            linux.setns(target, linux.CLONE_NEWNET)
        finally:
            os.close(target)
        return work()

    return linux.in_thread(inside, "pinnace-netns")


SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1


def loopback_up(bring_up: bool = True) -> bool:
    """Whether ``lo`` is up in the calling thread's network namespace; with
    ``bring_up`` it is brought up first (an ioctl, no ``ip`` process)."""
    import fcntl
    import struct

    sock = linux.inet_socket()  # a bare fd: the socket module costs more than the ioctls
    try:
        req = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(sock, SIOCGIFFLAGS, req))[1]
        if bring_up and not flags & IFF_UP:
            flags |= IFF_UP
            fcntl.ioctl(sock, SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags))
    finally:
        os.close(sock)
    return bool(flags & IFF_UP)


def is_up(ifname: str) -> bool:
    """Whether interface ``ifname`` exists and is up in the calling thread's namespace."""
    import fcntl
    import struct

    sock = linux.inet_socket()
    try:
        req = struct.pack("16sH14x", ifname.encode(), 0)
        return bool(struct.unpack("16sH14x", fcntl.ioctl(sock, SIOCGIFFLAGS, req))[1] & IFF_UP)
    except OSError:  # no such device
        return False
    finally:
        os.close(sock)


def enter_private() -> None:
    """Move the calling thread into a new network namespace with ``lo`` up; the
    processes it starts afterwards live there too, away from the host's network."""
    linux.unshare(linux.CLONE_NEWNET)
    loopback_up()


UPLINK, UPLINK_PEER, UPLINK_ADDRESS, UPLINK_GATEWAY = ("uplink0", "uplink1", "198.51.100.1/24",
                                                       "198.51.100.254")
"""A documentation network (RFC 5737): nothing outside answers there."""


def add_uplink() -> None:
    """Give the calling thread's (private) network namespace what a host has and a new
    namespace lacks: an interface with an address and a default route (``uplink0``, a
    veth whose peer stays in the namespace, so nothing leaves it). User-mode networks
    (pasta) copy the outside's configuration from such an interface."""
    import subprocess

    for args in (["link", "add", UPLINK, "type", "veth", "peer", "name", UPLINK_PEER],
                 ["address", "add", UPLINK_ADDRESS, "dev", UPLINK],
                 ["link", "set", UPLINK, "addrgenmode", "none"],  # no IPv6 link-local
                 ["link", "set", UPLINK_PEER, "addrgenmode", "none"],  # appearing later
                 ["link", "set", UPLINK_PEER, "up"], ["link", "set", UPLINK, "up"],
                 ["route", "add", "default", "via", UPLINK_GATEWAY]):
        done = subprocess.run(["ip", *args], capture_output=True, text=True)
        if done.returncode != 0:
            raise OSError(done.returncode, f"ip {' '.join(args)}: {done.stderr.strip()}")
