"""The build context: a directory, or ``-`` (a tar on stdin, unpacked into a temporary
directory, or a Dockerfile alone with an empty context); its ``.dockerignore``; and
the Dockerfile's text."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from pinnace import rootfs
from pinnace.build.ignore import Ignore
from pinnace.build.tree import Tree
from pinnace.errors import InvalidConfig, NotFound

DOCKERFILE_LIMIT = 16 << 20
"""The largest Dockerfile (and .dockerignore) read, in bytes."""


@dataclass
class Context:
    """The context's tree and the Dockerfile's text."""

    tree: Tree
    dockerfile: str


@contextlib.contextmanager
def opened(context: str, dockerfile: str | None, stdin: BinaryIO) -> Iterator[Context]:
    """The context for the block: ``context`` a directory, or ``-`` for ``stdin``.
    ``dockerfile`` is a path (relative to the working directory, as docker takes
    ``-f``), default ``Dockerfile`` in the context."""
    if context != "-":
        if not os.path.isdir(context):
            raise NotFound(f"build context {context} is not a directory")
        with rootfs.opened_root(context) as root:
            yield _context(root, dockerfile)
        return
    head = _read_head(stdin)
    if not is_archive(head):
        if dockerfile is not None:
            raise InvalidConfig("-f needs a context: stdin holds a Dockerfile, not a tar")
        with tempfile.TemporaryDirectory(prefix="pinnace-build-") as empty, \
                rootfs.opened_root(empty) as root:
            text = (head + stdin.read(DOCKERFILE_LIMIT)).decode("utf-8", "replace")
            yield Context(Tree(root, "build context"), text)
        return
    from pinnace.images.unpack import extract

    with tempfile.TemporaryDirectory(prefix="pinnace-build-") as unpacked:
        fd = os.open(unpacked, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            extract(_Prefixed(head, stdin), fd, None)
        finally:
            os.close(fd)
        with rootfs.opened_root(unpacked) as root:
            yield _context(root, dockerfile, inside=True)


def _context(root: int, dockerfile: str | None, inside: bool = False) -> Context:
    try:
        ignore = Ignore(rootfs.read_small(root, ".dockerignore", DOCKERFILE_LIMIT).decode(
            "utf-8", "replace"))
    except NotFound:
        ignore = Ignore()
    tree = Tree(root, "build context", ignore)
    if dockerfile is None or inside:
        name = dockerfile or "Dockerfile"
        try:
            text = rootfs.read_small(root, name, DOCKERFILE_LIMIT)
        except NotFound:
            raise NotFound(f"no Dockerfile: {name} is not in the build context") from None
    else:
        try:
            with open(dockerfile, "rb") as f:
                text = f.read(DOCKERFILE_LIMIT + 1)
        except OSError as err:
            raise NotFound(f"cannot read the Dockerfile {dockerfile}: {err.strerror}") from None
        if len(text) > DOCKERFILE_LIMIT:
            raise InvalidConfig(f"the Dockerfile {dockerfile} is larger than "
                                f"{DOCKERFILE_LIMIT} bytes")
    return Context(tree, text.decode("utf-8", "replace"))


def _read_head(stream: BinaryIO) -> bytes:
    """The first 512 bytes of ``stream`` (fewer when it is shorter)."""
    chunks, size = [], 0
    while size < 512:
        chunk = stream.read(512 - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def is_archive(head: bytes) -> bool:
    """Whether ``head`` starts a tar (plain or compressed)."""
    from pinnace.images.compression import sniff

    return sniff(head) != "none" or head[257:262] == b"ustar"


class _Prefixed:
    """A stream whose first bytes were already read (``head``)."""

    def __init__(self, head: bytes, rest: BinaryIO) -> None:
        self.head, self.rest = head, rest

    def read(self, n: int = -1) -> bytes:
        if self.head:
            if n < 0:
                data, self.head = self.head + self.rest.read(), b""
                return data
            data, self.head = self.head[:n], self.head[n:]
            return data
        return self.rest.read(n)
