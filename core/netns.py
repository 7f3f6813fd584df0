"""Network namespaces bind-mounted on files, and entering one for a moment."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator

from pinnace import linux


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
