"""Writing layer tars from trees on disk: a whole tree (``import DIR``, ``export``) or
the difference between two trees (``commit``).

Entries carry numeric owners (no user names), modes with setuid/setgid/sticky
bits, mtimes in whole seconds, symlinks, hardlinks (a second path to an inode
already in the tar is written as a link to the first), FIFOs, device nodes and
xattrs as ``SCHILY.xattr.*`` pax headers; a regular file with holes is a GNU
sparse member (PAX 1.0: a map of its data segments, then only their bytes);
sockets have no tar form and are left out. Directories come before their
contents, names in sorted order, so the same tree always gives the same bytes.

A diff is written as the OCI image spec describes a changeset: entries that
are new or whose type, mode, owner, size, mtime, device number, link target or
xattrs differ from the lower tree, and a ``.wh.NAME`` whiteout for each NAME of
the lower tree that is gone (only the topmost: a removed directory's contents
need no whiteouts of their own). A directory whose only change is its mtime
(something inside it changed) is not written itself. Paths given as mount
points (where the engine mounted ``/etc/hosts`` or a volume) are left out when
the lower tree does not have them: they are the engine's, not the container's.
The trees are walked one directory descriptor at a time: every entry is looked
up by name relative to its parent's descriptor, with ``lstat`` and
``O_NOFOLLOW``, never by a host path. A symlink (or a directory swapped for
one while the walk runs) is written as a symlink and never followed, so the
tar holds nothing from outside the trees.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Callable, Iterator, Set
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

WHITEOUT = ".wh."
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC


class _Sink:
    """Where a tar stream writes: ``out``, until the tar is abandoned."""

    def __init__(self, out: Any) -> None:
        self.out: Any = out

    def write(self, data: bytes) -> int:
        return len(data) if self.out is None else self.out.write(data)


class TreeTar:
    """A tar stream being written to ``out`` (any object with ``write``) from files on disk."""

    def __init__(self, out: Any, adjust: Callable[[Any], None] | None = None) -> None:
        """``adjust(info)``, when given, may change each entry's header before it is
        written (``build``'s ``--chmod``, or zeroed times for a content checksum)."""
        import tarfile

        self.adjust = adjust
        self.sink = _Sink(out)
        self.tar = tarfile.open(fileobj=self.sink, mode="w|", format=tarfile.PAX_FORMAT)
        self.links: dict[tuple[int, int], str] = {}  # (device, inode) -> first arcname

    def add(self, parent: int, name: str, arcname: str) -> int | None:
        """Add the entry ``name`` of the directory open as ``parent`` (not its contents).

        For a directory, return a descriptor of it (the caller closes it), else None.
        """
        found = _lstat_open(parent, name)
        if found is None:  # gone since its directory was listed
            return None
        st, fd, target = found
        try:
            info = self._info(parent, name, arcname, st, target)
            segments = _data_segments(fd, st) if info is not None and info.isreg() else None
            if segments is not None:
                assert fd is not None
                self._add_sparse(info, fd, segments)
            elif info is not None and info.isreg():
                assert fd is not None
                with os.fdopen(fd, "rb", closefd=False) as f:
                    self.tar.addfile(info, f)
            elif info is not None:
                self.tar.addfile(info)
        except BaseException:
            if fd is not None:
                os.close(fd)
            raise
        if stat.S_ISDIR(st.st_mode):
            return fd
        if fd is not None:
            os.close(fd)
        return None

    def _add_sparse(self, info: Any, fd: int, segments: list[tuple[int, int]]) -> None:
        """Add a regular file with holes as a GNU sparse member (PAX format 1.0, which
        GNU tar, Go and Python read): a map of its data segments, then only their bytes,
        so a sparse file stays small in the layer."""
        import posixpath

        real, size = info.name, info.size
        listing = f"{len(segments)}\n" + "".join(f"{at}\n{n}\n" for at, n in segments)
        block = listing.encode().ljust(-(-len(listing) // 512) * 512, b"\0")
        info.name = posixpath.join(posixpath.dirname(real), "GNUSparseFile.0",
                                   posixpath.basename(real))
        info.size = len(block) + sum(n for _, n in segments)
        info.pax_headers.update({"GNU.sparse.major": "1", "GNU.sparse.minor": "0",
                                 "GNU.sparse.name": real, "GNU.sparse.realsize": str(size)})
        self.tar.addfile(info, _SparseData(fd, block, segments))

    def _info(self, parent: int, name: str, arcname: str, st: os.stat_result,
              target: str) -> Any:
        """The tar header for an entry with status ``st`` (and symlink ``target``); None
        for a socket."""
        import tarfile

        info = tarfile.TarInfo(arcname)
        info.mode, info.uid, info.gid = stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid
        info.mtime = int(st.st_mtime)
        mode, inode = st.st_mode, (st.st_dev, st.st_ino)
        if stat.S_ISREG(mode) and st.st_nlink > 1 and inode in self.links:
            info.type, info.linkname = tarfile.LNKTYPE, self.links[inode]
        elif stat.S_ISREG(mode):
            info.type, info.size = tarfile.REGTYPE, st.st_size
            if st.st_nlink > 1:
                self.links[inode] = arcname
        elif stat.S_ISDIR(mode):
            info.type = tarfile.DIRTYPE
        elif stat.S_ISLNK(mode):
            info.type, info.linkname = tarfile.SYMTYPE, target
        elif stat.S_ISFIFO(mode):
            info.type = tarfile.FIFOTYPE
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            info.type = tarfile.CHRTYPE if stat.S_ISCHR(mode) else tarfile.BLKTYPE
            info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
        else:  # a socket: tar has no way to store it
            return None
        info.pax_headers.update(_xattr_headers(parent, name))
        if self.adjust is not None:
            self.adjust(info)
        return info

    def add_tree(self, parent: int, name: str, arcname: str) -> None:
        """Add the entry ``name`` of ``parent`` and, for a directory, everything below it."""
        walk_tree(parent, name, arcname, self.add)

    def whiteout(self, arcname: str) -> None:
        """Add an (empty) whiteout entry ``arcname``."""
        import tarfile

        self.tar.addfile(tarfile.TarInfo(arcname))

    def close(self) -> None:
        """Write the end-of-archive marker."""
        self.tar.close()

    def abandon(self) -> None:
        """Close without writing anything more (after a failed write, such as a full
        disk): the buffered tail is dropped now rather than flushed when the tar is
        garbage-collected."""
        self.sink.out = None
        self.tar.close()

    @contextlib.contextmanager
    def writing(self) -> Iterator[TreeTar]:
        """The tar for the block: closed after it, abandoned if it fails."""
        try:
            yield self
        except BaseException:
            self.abandon()
            raise
        self.close()


def walk_tree(parent: int, name: str, arcname: str,
              visit: Callable[[int, str, str], int | None]) -> None:
    """Call ``visit(parent_fd, name, arcname)`` for the entry ``name`` of ``parent`` and,
    where it returns a directory descriptor (which the walk then owns and closes), for
    everything below, directories before their contents, names sorted."""
    top = visit(parent, name, arcname)
    if top is None:
        return
    stack: list[tuple[int, str, Iterator[str]]] = []
    try:
        _descend(stack, top, arcname)
        while stack:
            fd, prefix, names = stack[-1]
            child = next(names, None)
            if child is None:
                os.close(stack.pop()[0])
                continue
            arc = _join(prefix, child)
            sub = visit(fd, child, arc)
            if sub is not None:
                _descend(stack, sub, arc)
    finally:
        for fd, _, _ in stack:
            os.close(fd)


def _data_segments(fd: int, st: os.stat_result) -> list[tuple[int, int]] | None:
    """The ``(offset, length)`` data segments of a regular file with holes, ending with
    ``(size, 0)`` when a hole ends it; None for a file without holes (or where the
    kernel cannot tell)."""
    if st.st_blocks * 512 >= st.st_size:
        return None
    segments: list[tuple[int, int]] = []
    offset = 0
    try:
        while offset < st.st_size:
            try:
                start = os.lseek(fd, offset, os.SEEK_DATA)
            except OSError as err:
                if err.errno != errno.ENXIO:  # ENXIO: only a hole is left
                    raise
                break
            offset = min(os.lseek(fd, start, os.SEEK_HOLE), st.st_size)
            segments.append((start, offset - start))
    except OSError:
        return None
    finally:
        os.lseek(fd, 0, os.SEEK_SET)
    data = sum(n for _, n in segments)
    if data >= st.st_size:
        return None
    if not segments or sum(segments[-1]) < st.st_size:
        segments.append((st.st_size, 0))
    return segments


class _SparseData:
    """What tarfile reads as a sparse member's data: the map block, then the file's data
    segments, read with ``pread``."""

    def __init__(self, fd: int, block: bytes, segments: list[tuple[int, int]]) -> None:
        self.chunks = self._chunks(fd, block, segments)
        self.buf, self.pos = b"", 0

    @staticmethod
    def _chunks(fd: int, block: bytes, segments: list[tuple[int, int]]) -> Iterator[bytes]:
        yield block
        for offset, length in segments:
            while length > 0:
                data = os.pread(fd, min(length, 1 << 20), offset)
                if not data:  # the file shrank: tarfile reports the missing data
                    return
                yield data
                offset, length = offset + len(data), length - len(data)

    def read(self, n: int) -> bytes:
        parts: list[bytes] = []
        size = 0
        while size < n:
            if self.pos >= len(self.buf):
                self.buf, self.pos = next(self.chunks, b""), 0
                if not self.buf:
                    break
            part = self.buf[self.pos:self.pos + n - size]
            self.pos += len(part)
            parts.append(part)
            size += len(part)
        return b"".join(parts)


def _lstat_open(parent: int, name: str) -> tuple[os.stat_result, int | None, str] | None:
    """The status of entry ``name`` of ``parent``; for a directory or regular file also a
    descriptor of it, for a symlink its target; None when there is no such entry. The
    entry is opened once, without following it, and everything is read from that
    descriptor: an entry swapped meanwhile is seen as what was opened, never through
    the new one."""
    try:
        handle = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
    except FileNotFoundError:
        return None
    try:
        st = os.fstat(handle)
        if stat.S_ISLNK(st.st_mode):
            return st, None, os.readlink("", dir_fd=handle)
        if not (stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode)):
            return st, None, ""
        flags = _DIR if stat.S_ISDIR(st.st_mode) else _FILE  # the magic link is the inode:
        fd = os.open(f"/proc/self/fd/{handle}", flags & ~os.O_NOFOLLOW)  # no race to follow
    finally:
        os.close(handle)
    return os.fstat(fd), fd, ""


def _descend(stack: list[tuple[int, str, Iterator[str]]], fd: int, arcname: str) -> None:
    """Push the open directory ``fd`` with its sorted names (on the stack first, so that
    it is closed with the others should listing it fail)."""
    stack.append((fd, arcname, iter(())))
    stack[-1] = (fd, arcname, iter(sorted(os.listdir(fd))))


def _join(prefix: str, name: str) -> str:
    return f"{prefix}/{name}" if prefix else name


@contextlib.contextmanager
def _opened_dir(name: str | os.PathLike[str], parent: int | None = None) -> Iterator[int]:
    """A descriptor of the directory ``name`` (of ``parent``, never through a symlink)."""
    fd = os.open(name, _DIR, dir_fd=parent)
    try:
        yield fd
    finally:
        os.close(fd)


def _open_dir(parent: int, name: str) -> int | None:
    """A descriptor of the directory ``name`` of ``parent``; None when it is not one
    (or no longer there)."""
    try:
        return os.open(name, _DIR, dir_fd=parent)
    except OSError as e:
        if e.errno not in (errno.ELOOP, errno.ENOTDIR, errno.ENOENT):
            raise
        return None


def _xattrs(parent: int, name: str) -> dict[str, bytes]:
    # the parent's descriptor as a /proc path, the entry itself not followed
    path = f"/proc/self/fd/{parent}/{name}"
    try:
        names = os.listxattr(path, follow_symlinks=False)
        return {key: os.getxattr(path, key, follow_symlinks=False) for key in sorted(names)}
    except OSError:
        return {}


def _xattr_headers(parent: int, name: str) -> dict[str, str]:
    return {f"SCHILY.xattr.{key}": value.decode("utf-8", "surrogateescape")
            for key, value in _xattrs(parent, name).items()}


def write_tree(src: Path, out: Any, adjust: Callable[[Any], None] | None = None) -> None:
    """Write the tree under ``src`` as a tar to ``out``; ``src``'s own entry is left out
    (``adjust``: as :class:`TreeTar` takes it)."""
    with TreeTar(out, adjust).writing() as tar, _opened_dir(src) as root:
        for name in sorted(os.listdir(root)):
            tar.add_tree(root, name, name)


class Changes(Protocol):
    """What :func:`walk_diff` reports, entry by entry (``arcname`` relative to the tops)."""

    def added(self, parent: int, name: str, arcname: str) -> None:
        """Entry ``name`` of ``parent`` is new, with everything below it."""

    def replaced(self, parent: int, name: str, arcname: str) -> None:
        """Entry ``name`` of ``parent`` changed (a directory in neither tree, or in only one);
        what is below it now is new."""

    def changed_dir(self, parent: int, name: str, arcname: str) -> int | None:
        """Directory ``name`` of ``parent`` changed itself; a descriptor of it to walk on
        (or None when it is no longer a directory)."""

    def deleted(self, arcname: str) -> None:
        """Entry ``arcname`` of the lower tree is gone."""


def walk_diff(lower: Path | None, upper: Path, changes: Changes,
              mount_points: Set[str] = frozenset()) -> None:
    """Report to ``changes`` what changed from tree ``lower`` (None: empty) to tree
    ``upper``; ``mount_points`` are relative paths (``etc/hosts``) to leave out when new."""
    with _opened_dir(upper) as up:
        if lower is None:
            for name in sorted(os.listdir(up)):
                if name not in mount_points:
                    changes.added(up, name, name)
        else:
            with _opened_dir(lower) as low:
                _diff_dir(changes, low, up, "", mount_points)


def write_diff(lower: Path | None, upper: Path, out: Any,
               mount_points: Set[str] = frozenset(),
               adjust: Callable[[Any], None] | None = None) -> None:
    """Write what changed from tree ``lower`` (None: empty) to tree ``upper`` as a layer
    tar (:func:`walk_diff`; ``adjust``: as :class:`TreeTar` takes it)."""
    with TreeTar(out, adjust).writing() as tar:
        walk_diff(lower, upper, _TarChanges(tar), mount_points)


class _TarChanges:
    """Changes written as a layer: new and changed entries, ``.wh.`` for removed ones."""

    def __init__(self, tar: TreeTar) -> None:
        self.tar = tar

    def added(self, parent: int, name: str, arcname: str) -> None:
        self.tar.add_tree(parent, name, arcname)

    replaced = added

    def changed_dir(self, parent: int, name: str, arcname: str) -> int | None:
        return self.tar.add(parent, name, arcname)

    def deleted(self, arcname: str) -> None:
        head, _, name = arcname.rpartition("/")
        self.tar.whiteout(_join(head, WHITEOUT + name))


@dataclass(frozen=True)
class Change:
    """One line of ``diff``: ``kind`` is ``A`` (added), ``C`` (changed) or ``D`` (deleted),
    ``path`` absolute inside the container."""

    kind: str
    path: str


def list_changes(lower: Path | None, upper: Path,
                 mount_points: Set[str] = frozenset()) -> list[Change]:
    """What changed from ``lower`` to ``upper`` as docker's ``diff`` lists it, sorted by
    path: every added entry, changed entries, the topmost deleted ones, and every
    directory with a change below it as changed."""
    found = _ListedChanges()
    walk_diff(lower, upper, found, mount_points)
    kinds = found.kinds
    for path in list(kinds):
        parent = path.rpartition("/")[0]
        while parent and parent not in kinds:
            kinds[parent] = "C"
            parent = parent.rpartition("/")[0]
    return [Change(kinds[path], f"/{path}") for path in sorted(kinds)]


class _ListedChanges:
    """Changes collected by path."""

    def __init__(self) -> None:
        self.kinds: dict[str, str] = {}

    def visit(self, parent: int, name: str, arcname: str, kind: str) -> int | None:
        found = _lstat_open(parent, name)
        if found is None:
            return None
        st, fd, _ = found
        self.kinds[arcname] = kind
        if fd is not None and not stat.S_ISDIR(st.st_mode):
            os.close(fd)
            return None
        return fd

    def added(self, parent: int, name: str, arcname: str) -> None:
        walk_tree(parent, name, arcname, lambda p, n, a: self.visit(p, n, a, "A"))

    def replaced(self, parent: int, name: str, arcname: str) -> None:
        walk_tree(parent, name, arcname,
                  lambda p, n, a: self.visit(p, n, a, "C" if a == arcname else "A"))

    def changed_dir(self, parent: int, name: str, arcname: str) -> int | None:
        return self.visit(parent, name, arcname, "C")

    def deleted(self, arcname: str) -> None:
        self.kinds[arcname] = "D"


def _diff_dir(changes: Changes, lower: int, upper: int, arcname: str,
              mount_points: Set[str]) -> None:
    """Diff two open directories, recursively."""
    before = set(os.listdir(lower))
    after = sorted(os.listdir(upper))
    for name in sorted(before.difference(after)):
        changes.deleted(_join(arcname, name))
    for name in after:
        arc = _join(arcname, name)
        if name not in before:
            if arc not in mount_points:
                changes.added(upper, name, arc)
            continue
        old = os.lstat(name, dir_fd=lower)
        try:
            new = os.lstat(name, dir_fd=upper)
        except FileNotFoundError:  # removed since the directory was listed
            changes.deleted(arc)
            continue
        if stat.S_ISDIR(old.st_mode) and stat.S_ISDIR(new.st_mode):
            sub = _open_dir(upper, name) if _same(lower, upper, name, old, new) else None
            if sub is None:  # changed, or no longer a directory: reported as it is now
                sub = changes.changed_dir(upper, name, arc)
            if sub is None:
                continue
            try:
                with _opened_dir(name, lower) as low:
                    _diff_dir(changes, low, sub, arc, mount_points)
            finally:
                os.close(sub)
        elif not _same(lower, upper, name, old, new):
            changes.replaced(upper, name, arc)


def _same(lower: int, upper: int, name: str, old: os.stat_result,
          new: os.stat_result) -> bool:
    """Whether entry ``name`` is unchanged: same metadata, link target and xattrs (content
    is taken as unchanged when size and mtime are, as docker does; a directory's mtime
    only says that its contents changed, which the diff shows entry by entry)."""
    if (old.st_mode, old.st_uid, old.st_gid, old.st_rdev) != \
            (new.st_mode, new.st_uid, new.st_gid, new.st_rdev):
        return False
    if not stat.S_ISDIR(new.st_mode) and \
            (old.st_size, old.st_mtime_ns) != (new.st_size, new.st_mtime_ns):
        return False
    if stat.S_ISLNK(new.st_mode):
        try:
            if os.readlink(name, dir_fd=lower) != os.readlink(name, dir_fd=upper):
                return False
        except OSError:  # no longer a symlink: changed
            return False
    return _xattrs(lower, name) == _xattrs(upper, name)
