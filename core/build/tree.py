"""Where ``COPY`` and ``ADD`` read: the build context (with its ``.dockerignore``) or the
root filesystem of a stage or an image (``--from``).

Every path is resolved against a descriptor of the tree's root
(:mod:`pinnace.rootfs`): ``..`` and symlinks, absolute or relative, stay inside it;
a source that names a path outside the context is refused. Entries are written as
a tar (:class:`pinnace.images.layers.TreeTar`: one directory descriptor at a time,
symlinks written as links, never followed), so a link in the context that points
outside copies the link, never what it points to. The same walk, with times and
owners zeroed, gives the content checksum the cache keys on.
"""

from __future__ import annotations

import errno
import fnmatch
import hashlib
import os
import posixpath
import re
import stat
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pinnace import rootfs
from pinnace.build.ignore import Ignore
from pinnace.errors import InvalidConfig, NotFound

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_GLOB = re.compile(r"[*?\[]")


@dataclass(frozen=True)
class Placement:
    """One source put at ``target`` (a name relative to the destination directory);
    a directory's contents go there (``''``: into the destination itself)."""

    source: str        # relative to the tree's root ('' for the root itself)
    is_dir: bool
    target: str


class Tree:
    """A directory tree open by a descriptor of its root."""

    def __init__(self, root: int, label: str, ignore: Ignore | None = None) -> None:
        self.root = root
        self.label = label
        self.ignore = ignore or Ignore()

    def find(self, pattern: str) -> list[tuple[str, bool]]:
        """The sources ``pattern`` names (``*``, ``?``, ``[...]`` within a path element),
        each (path, is a directory); NotFound when none, InvalidConfig outside the tree."""
        clean = posixpath.normpath(pattern.lstrip("/") or ".")
        if clean == ".." or clean.startswith("../"):
            raise InvalidConfig(f"forbidden path outside the {self.label}: {pattern}")
        clean = "" if clean == "." else clean
        found = [(p, d) for p, d in self._matches(clean) if not self.ignore.excluded(p)] \
            if _GLOB.search(clean) else self._exact(clean)
        if not found:
            raise NotFound(f"file not found in {self.label} or excluded by .dockerignore: "
                           f"{pattern}")
        return found

    def _exact(self, path: str) -> list[tuple[str, bool]]:
        if path and self.ignore.excluded(path):
            return []
        st = self.lstat(path)
        return [] if st is None else [(path, stat.S_ISDIR(st.st_mode))]

    def lstat(self, path: str) -> os.stat_result | None:
        """The status of ``path`` (its last element not followed), None when missing."""
        try:
            parent, name = rootfs.open_parent(self.root, path or "/", follow=False)
        except OSError as err:
            if err.errno in (errno.ENOENT, errno.ENOTDIR):
                return None
            raise InvalidConfig(f"{path} in {self.label}: {err.strerror}") from None
        try:
            return os.stat(name, dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            return None
        finally:
            os.close(parent)

    def _matches(self, pattern: str) -> list[tuple[str, bool]]:
        """Paths matching a glob, one element at a time, in sorted order."""
        prefixes = [""]
        parts = pattern.split("/")
        for n, part in enumerate(parts):
            last = n == len(parts) - 1
            next_prefixes = []
            for prefix in prefixes:
                if not _GLOB.search(part):
                    candidate = posixpath.join(prefix, part)
                    if self.lstat(candidate) is not None:
                        next_prefixes.append(candidate)
                    continue
                for name in self._names(prefix):
                    if fnmatch.fnmatchcase(name, part):
                        next_prefixes.append(posixpath.join(prefix, name))
            prefixes = next_prefixes if last else [
                p for p in next_prefixes if (st := self.lstat(p)) and stat.S_ISDIR(st.st_mode)]
        out = []
        for path in prefixes:
            st = self.lstat(path)
            if st is not None:
                out.append((path, stat.S_ISDIR(st.st_mode)))
        return out

    def _names(self, directory: str) -> list[str]:
        try:
            fd = rootfs.open_in(self.root, directory or "/", _DIR & ~os.O_NOFOLLOW)
        except OSError:
            return []
        try:
            return sorted(os.listdir(fd))
        finally:
            os.close(fd)

    def write(self, placements: list[Placement], out: Any,
              adjust: Callable[[Any], None] | None = None) -> None:
        """Write the placements as one tar to ``out`` (names relative to the destination),
        leaving out what ``.dockerignore`` excludes."""
        from pinnace.images.layers import TreeTar, walk_tree

        with TreeTar(out, adjust).writing() as tar:
            for placement in placements:
                visit = self._visitor(tar, placement)
                if placement.is_dir:
                    fd = rootfs.open_in(self.root, placement.source or "/", _DIR)
                    try:
                        for child in sorted(os.listdir(fd)):
                            walk_tree(fd, child, _join(placement.target, child), visit)
                    finally:
                        os.close(fd)
                else:
                    parent, name = rootfs.open_parent(self.root, placement.source, follow=False)
                    try:
                        walk_tree(parent, name, placement.target, visit)
                    finally:
                        os.close(parent)

    def _visitor(self, tar: Any, placement: Placement) -> Callable[[int, str, str], int | None]:
        """What :func:`walk_tree` calls per entry: add it unless it is ignored (an ignored
        directory that an exception may re-include below is still walked)."""
        prefix = placement.target

        def visit(parent: int, name: str, arcname: str) -> int | None:
            rel = arcname[len(prefix):].lstrip("/") if prefix else arcname
            path = _join(placement.source, rel) if placement.is_dir else placement.source
            if self.ignore.excluded(path):
                st = os.stat(name, dir_fd=parent, follow_symlinks=False)
                if not (stat.S_ISDIR(st.st_mode) and self.ignore.may_include_below(path)):
                    return None
            return tar.add(parent, name, arcname)  # type: ignore[no-any-return]

        return visit

    def checksum(self, placements: list[Placement]) -> str:
        """A content checksum of the placements: names, types, modes, sizes, link targets
        and contents (not times or owners, which a copy does not keep as they are)."""
        digest = hashlib.sha256()

        def adjust(info: Any) -> None:
            info.mtime, info.uid, info.gid = 0, 0, 0

        self.write(placements, _Hashing(digest), adjust)
        return digest.hexdigest()

    def open_file(self, path: str) -> int:
        """A descriptor of the regular file ``path`` (``ADD``'s archives), read-only."""
        try:
            return rootfs.open_in(self.root, path, os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK)
        except OSError as err:
            raise NotFound(f"{path} in {self.label}: {err.strerror}") from None


class _Hashing:
    """A tar sink that only hashes."""

    def __init__(self, digest: Any) -> None:
        self.digest = digest

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        return len(data)


def _join(prefix: str, name: str) -> str:
    return f"{prefix}/{name}" if prefix and name else prefix or name
