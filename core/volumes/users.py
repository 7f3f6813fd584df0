"""Which containers have a volume mounted: a small file beside the volume, read and
written under an exclusive lock, so that two processes starting or stopping containers
at once agree on who mounts a volume first and who unmounts it last."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from pathlib import Path

USERS_FILE = "users.json"
LOCK_FILE = ".lock"


@contextlib.contextmanager
def volume_users(directory: str | os.PathLike[str]) -> Iterator[set[str]]:
    """The IDs of the containers that have the volume kept in ``directory`` mounted, for
    the block to read and change, under the volume's lock; written back (atomically)
    when the block ends without an error."""
    base = Path(directory)
    fd = os.open(base / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        path = base / USERS_FILE
        try:
            users = set(json.loads(path.read_text()))
        except FileNotFoundError:
            users = set()
        before = set(users)
        yield users
        if users != before:
            tmp = path.with_name(f".{USERS_FILE}.{os.getpid()}")
            tmp.write_text(json.dumps(sorted(users)))
            os.replace(tmp, path)
    finally:
        os.close(fd)
