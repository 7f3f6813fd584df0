"""``--cidfile``: the new container's ID written to a file that must not exist yet."""

from __future__ import annotations

import contextlib
import os

from pinnace.errors import AlreadyExists, InvalidConfig


def check(path: str) -> None:
    """Refuse a file that exists already (before anything is created), as docker does."""
    if os.path.lexists(path):
        raise AlreadyExists(f"container ID file found, make sure the other container isn't "
                            f"running or delete {path}")


def write(path: str, cid: str) -> None:
    """Write ``cid`` to ``path`` at once: a temporary file beside it, linked into place
    (never over a file that appeared meanwhile)."""
    directory = os.path.dirname(os.path.abspath(path))
    temporary = os.path.join(directory, f".{os.path.basename(path)}.{os.getpid()}.tmp")
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        try:
            os.write(fd, cid.encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.link(temporary, path)
    except FileExistsError:
        raise AlreadyExists(f"container ID file found, make sure the other container isn't "
                            f"running or delete {path}") from None
    except OSError as err:
        raise InvalidConfig(f"cannot write the container ID file {path}: "
                            f"{err.strerror}") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)


def remove(path: str, cid: str) -> None:
    """Remove the file when it still holds ``cid`` (its container is gone)."""
    with contextlib.suppress(OSError):
        with open(path) as f:
            if f.read() != cid:
                return
        os.unlink(path)
