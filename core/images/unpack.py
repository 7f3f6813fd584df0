"""Safe layer application: extract an image layer (a tar stream) into a rootfs directory.

Every entry is written through directory file descriptors opened one path
component at a time with ``O_NOFOLLOW|O_DIRECTORY``, starting from a
descriptor of the destination, so nothing in the tar (``..``, absolute
names, symlinks planted by earlier entries, hardlinks) can make a write land
outside it. The decisions, for a hostile or odd tar:

- names are cleaned lexically: a leading ``/`` is dropped (``/etc/x`` lands
  at ``dest/etc/x``, as in docker); a name whose ``..`` climbs above the
  root rejects the **whole layer** with ``InvalidConfig``;
- a path component that is a symlink (or any non-directory) is never
  followed: an entry below it rejects the layer, even when the symlink
  would point inside the rootfs (``etc -> /`` then ``etc/passwd`` fails);
- symlinks are created as stored (absolute targets resolve in the container);
- a hardlink must name an existing entry inside ``dest``, found without
  following symlinks (an absolute link name is relative to ``dest``, too);
- character and block devices are skipped and counted, never created: a
  layer has no business shipping host devices, and ``/dev`` is a tmpfs in
  containers;
- an existing entry is replaced (a directory by a file: its tree is
  removed), except that a directory over a directory keeps its contents and
  takes the new metadata, as docker applies layers;
- OCI whiteouts: ``.wh.NAME`` deletes ``NAME`` in its own directory (a
  whiteout of ``.``/``..`` rejects the layer); ``.wh..wh..opq`` empties its
  directory of what lower layers put there (entries from this layer stay).
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, BinaryIO

from pinnace.errors import InvalidConfig

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_WHITEOUT = ".wh."
_OPAQUE = ".wh..wh..opq"
_XATTR = "SCHILY.xattr."
_XATTR_UNSUPPORTED = (errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM)
_BUFSIZE = 1 << 16  # bytes per read of the layer stream (tarfile's default is 10 KiB)


@dataclass
class LayerStats:
    """What one layer application did; FIFOs count as files."""

    files: int = 0
    dirs: int = 0
    symlinks: int = 0
    hardlinks: int = 0
    skipped_devices: int = 0
    bytes: int = 0


def apply_layer(stream: BinaryIO, dest: Path) -> LayerStats:
    """Apply the (plain, gzip, bzip2 or xz) layer tar ``stream`` onto the directory ``dest``.

    Reads the stream once, in order (tarfile ``r|`` mode). A plain tar in a
    file is read in place instead: the kernel copies small files' data from
    it (``copy_file_range``), with no pass through this process. Aligned 4 KiB
    blocks of zeros in file data, and the holes of GNU sparse members, are
    left as holes, so a sparse file stays sparse. Raises
    ``InvalidConfig`` for a hostile member (see the module docstring: the
    whole layer is rejected, entries applied before it stay) and
    ``InvalidConfig("corrupt layer: ...")`` for a truncated or corrupt stream.
    """
    root = os.open(dest, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        return _extract(stream, _Applier(root, _plain_file(stream)))
    finally:
        os.close(root)


def extract(stream: BinaryIO, root: int, owner: tuple[int, int] | None) -> LayerStats:
    """Extract the tar ``stream`` into the directory open as ``root``, as ``cp`` does: the
    same safe walk as :func:`apply_layer`, but ``.wh.`` names are ordinary names, and with
    ``owner`` (uid, gid) every entry gets that owner instead of the tar's, without setuid
    and setgid bits."""
    return _extract(stream, _Applier(root, None, whiteouts=False, owner=owner), "tar stream")


def _extract(stream: BinaryIO, applier: _Applier, what: str = "layer") -> LayerStats:
    """Apply every member of ``stream`` (read in place when ``applier`` has its fd);
    ``what`` names the stream in the error for a corrupt one."""
    import tarfile

    from pinnace.images.compression import decompressed

    try:
        try:
            opened = (tarfile.open(fileobj=stream, mode="r:") if applier.source is not None else
                      tarfile.open(fileobj=decompressed(stream), mode="r|", bufsize=_BUFSIZE))
            with opened as tar:
                for member in tar:
                    applier.apply(member, tar)
        except tarfile.TarError as err:
            raise InvalidConfig(f"corrupt {what}: {err}") from None
        applier.finish()
        return applier.stats
    finally:
        applier.forget()


def _plain_file(stream: BinaryIO) -> int | None:
    """The descriptor of ``stream`` when it is a regular file holding a plain
    (uncompressed) tar, at its start; else None."""
    try:
        fd = stream.fileno()
        if not stat.S_ISREG(os.fstat(fd).st_mode) or stream.tell() != 0:
            return None
    except (AttributeError, OSError, ValueError):
        return None
    from pinnace.images.compression import sniff

    head = stream.read(6)
    stream.seek(0)
    return fd if sniff(head) == "none" else None


NAME_MAX = 255
"""The longest file name (one path component) Linux file systems take, in bytes."""


def _clean(name: str, member: str, what: str = "name") -> tuple[str, ...]:
    """The path components of ``name`` inside the root, or InvalidConfig if it climbs out
    or has a component too long for a file name."""
    parts: list[str] = []
    for part in name.split("/"):
        if part in ("", "."):
            continue
        if "\0" in part:
            raise InvalidConfig(f"layer member {member!r} has a NUL byte in its name")
        if len(part.encode(errors="surrogateescape")) > NAME_MAX:
            raise InvalidConfig(f"layer member {member[:64]!r}...: {what} has a component "
                                f"longer than {NAME_MAX} bytes")
        if part == "..":
            if not parts:
                raise InvalidConfig(f"layer member {member!r}: {what} {name!r} points outside "
                                    f"the rootfs; the layer is rejected")
            parts.pop()
        else:
            parts.append(part)
    return tuple(parts)


def check_member(m: Any) -> tuple[str, ...]:
    """The path components of tar member ``m`` inside the root, or InvalidConfig when no
    layer may hold it: a name or hardlink target that climbs out, a whiteout of ``.``
    or ``..``, a NUL byte, a type a layer cannot have."""
    parts = _clean(m.name, m.name)
    if parts and parts[-1].startswith(_WHITEOUT):
        victim = parts[-1][len(_WHITEOUT):]
        if parts[-1] != _OPAQUE and victim in ("", ".", ".."):
            raise InvalidConfig(f"layer member {m.name!r} is a whiteout of {victim!r}, which is "
                                f"not an entry of its directory; the layer is rejected")
        return parts
    if not (m.isreg() or m.isdir() or m.issym() or m.islnk() or m.isfifo() or m.ischr()
            or m.isblk()):
        raise InvalidConfig(f"layer member {m.name!r} has an unsupported type {m.type!r}")
    if "\0" in m.linkname:
        raise InvalidConfig(f"layer member {m.name!r} has a NUL byte in its link target")
    if m.islnk():
        _clean(m.linkname, m.name, "hardlink target")
    return parts


class LayerChecker:
    """Checks a layer's members in order, as they stream by (before anything is stored):
    :func:`check_member`, and no member below a symlink the same layer made."""

    def __init__(self) -> None:
        self.symlinks: set[tuple[str, ...]] = set()

    def check(self, m: Any) -> None:
        """Raise InvalidConfig if member ``m`` may not be in a layer."""
        parts = check_member(m)
        for i in range(1, len(parts)):
            if parts[:i] in self.symlinks:
                raise InvalidConfig(f"layer member {m.name!r} is below the symlink "
                                    f"{'/'.join(parts[:i])!r} of the same layer; the layer "
                                    f"is rejected")
        if m.issym():
            self.symlinks.add(parts)
        else:
            self.symlinks.discard(parts)


def _lstat(dir_fd: int, name: str) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def _remove(dir_fd: int, name: str, st: os.stat_result) -> None:
    """Remove ``name`` in ``dir_fd``; a directory with its whole tree (never following links)."""
    if stat.S_ISDIR(st.st_mode):
        import shutil

        shutil.rmtree(name, dir_fd=dir_fd)
    else:
        os.unlink(name, dir_fd=dir_fd)


def _mtime_ns(member: Any) -> int:
    return round(member.mtime * 1_000_000_000)


class _Applier:
    """The state of one layer application: the root fd, what this layer created, stats."""

    def __init__(self, root: int, source: int | None = None, whiteouts: bool = True,
                 owner: tuple[int, int] | None = None) -> None:
        self.root = root
        self.source = source                         # the fd of a plain tar file read in place
        self.whiteouts = whiteouts                   # False: .wh. names are plain names
        self.owner = owner                           # every entry's (uid, gid), else the tar's
        self.stats = LayerStats()
        self.created: set[tuple[str, ...]] = set()   # paths this layer made (for opaque dirs)
        self.dir_times: list[tuple[tuple[str, ...], int]] = []
        self.chain: list[int] = []                   # fds of self.path's directories
        self.path: tuple[str, ...] = ()

    def open_dir(self, parts: tuple[str, ...], member: str, create: bool) -> int | None:
        """An fd of directory ``parts`` under the root, walked without following symlinks.

        Missing components are created (0755, root-owned) when ``create``; else
        None is returned when the path is missing or not a directory all the way.
        The fds of the last path walked are kept (:meth:`forget` drops them), so
        the entries of one directory, which tars list together, cost one open each.
        """
        keep = 0
        while keep < min(len(parts), len(self.path)) and parts[keep] == self.path[keep]:
            keep += 1
        for fd in self.chain[keep:]:
            os.close(fd)
        del self.chain[keep:]
        self.path = parts[:keep]
        for i in range(keep, len(parts)):
            fd = self.chain[-1] if self.chain else self.root
            part = parts[i]
            try:
                sub = os.open(part, _DIR, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    return None
                os.mkdir(part, 0o700, dir_fd=fd)
                sub = os.open(part, _DIR, dir_fd=fd)
                os.chown(sub, 0, 0)
                os.chmod(sub, 0o755)
                self.created.add(parts[:i + 1])
            except OSError as err:
                if err.errno not in (errno.ENOTDIR, errno.ELOOP):
                    raise
                if not create:
                    return None
                raise InvalidConfig(
                    f"layer member {member!r}: {'/'.join(parts[:i + 1])!r} is not a "
                    f"directory (symlinks are never followed); the layer is rejected"
                ) from None
            self.chain.append(sub)
            self.path = parts[:i + 1]
        return os.dup(self.chain[-1] if self.chain else self.root)

    def remove(self, dir_fd: int, name: str, st: os.stat_result) -> None:
        """Remove an entry (a directory with its tree); kept directory fds may be stale."""
        _remove(dir_fd, name, st)
        self.forget()

    def forget(self) -> None:
        """Close the kept directory fds (after anything is removed, and at the end)."""
        for fd in self.chain:
            os.close(fd)
        self.chain, self.path = [], ()

    def apply(self, m: Any, tar: Any) -> None:
        """Apply one tar member."""
        parts = check_member(m)
        if self.whiteouts and parts and parts[-1].startswith(_WHITEOUT):
            self.whiteout(m.name, parts)
            return
        if m.ischr() or m.isblk():
            self.stats.skipped_devices += 1
            return
        if not parts:
            if not m.isdir():
                raise InvalidConfig(f"layer member {m.name!r} would replace the rootfs root")
            self.metadata(self.root, m)
            self.dir_times.append(((), _mtime_ns(m)))
            return
        parent = self.open_dir(parts[:-1], m.name, create=True)
        assert parent is not None
        try:
            self.create(parent, parts, m, tar)
        finally:
            os.close(parent)
        self.created.add(parts)

    def create(self, parent: int, parts: tuple[str, ...], m: Any, tar: Any) -> None:
        """Create entry ``parts[-1]`` in ``parent``, replacing what is there."""
        name = parts[-1]
        existing = _lstat(parent, name)
        if m.isdir():
            if existing is None or not stat.S_ISDIR(existing.st_mode):
                if existing is not None:
                    self.remove(parent, name, existing)
                os.mkdir(name, 0o700, dir_fd=parent)
            fd = os.open(name, _DIR, dir_fd=parent)
            try:
                self.metadata(fd, m)
            finally:
                os.close(fd)
            self.dir_times.append((parts, _mtime_ns(m)))
            self.stats.dirs += 1
            return
        if existing is not None:
            self.remove(parent, name, existing)
        if m.islnk():
            self.hardlink(parent, name, m)
        elif m.issym():
            os.symlink(m.linkname, name, dir_fd=parent)
            os.chown(name, *self.owned(m), dir_fd=parent, follow_symlinks=False)
            self.xattrs(f"/proc/self/fd/{parent}/{name}", m)
            ns = _mtime_ns(m)
            os.utime(name, ns=(ns, ns), dir_fd=parent, follow_symlinks=False)
            self.stats.symlinks += 1
        else:
            if m.isfifo():
                os.mkfifo(name, 0o600, dir_fd=parent)
                fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC,
                             dir_fd=parent)
            else:
                fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                             | os.O_CLOEXEC, 0o600, dir_fd=parent)
            try:
                if m.isreg():
                    self.stats.bytes += self.data(m, tar, fd)
                self.metadata(fd, m)
                ns = _mtime_ns(m)
                os.utime(fd, ns=(ns, ns))
            finally:
                os.close(fd)
            self.stats.files += 1

    def data(self, m: Any, tar: Any, fd: int) -> int:
        """Write the data of regular member ``m`` to the open file ``fd``, zero blocks and
        the holes of a GNU sparse member left as holes; the file's size in bytes."""
        regions = m.sparse if m.issparse() else [(0, m.size)]
        if self.source is not None:
            at = m.offset_data
            for offset, size in regions:
                _copy_range(self.source, at, size, fd, offset)
                at += size
        else:
            # tarfile's raw member reader seeks (over holes) in a forward-only stream too
            src = tar.extractfile(m).raw
            for offset, size in regions:
                src.seek(offset)
                _copy(src, size, fd, offset)
        os.ftruncate(fd, m.size)
        return int(m.size)

    def hardlink(self, parent: int, name: str, m: Any) -> None:
        """Link ``name`` to the entry ``m.linkname`` names inside the root."""
        target = _clean(m.linkname, m.name, "hardlink target")
        missing = InvalidConfig(f"layer member {m.name!r}: hardlink target {m.linkname!r} "
                                f"does not exist in the rootfs; the layer is rejected")
        src = self.open_dir(target[:-1], m.name, create=False) if target else None
        if src is None:
            raise missing
        try:
            os.link(target[-1], name, src_dir_fd=src, dst_dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            raise missing from None
        except PermissionError:
            raise InvalidConfig(f"layer member {m.name!r}: cannot hardlink to directory "
                                f"{m.linkname!r}") from None
        finally:
            os.close(src)
        self.stats.hardlinks += 1

    def owned(self, m: Any) -> tuple[int, int]:
        """The owner an entry gets."""
        return self.owner or (m.uid, m.gid)

    def metadata(self, fd: int, m: Any) -> None:
        """Owner, mode (with setuid/setgid/sticky) and xattrs of an open entry."""
        os.chown(fd, *self.owned(m))
        # setuid/setgid were meant for the tar's owner, not for the one given instead
        os.chmod(fd, m.mode & (0o1777 if self.owner else 0o7777))
        self.xattrs(fd, m)

    @staticmethod
    def xattrs(target: int | str, m: Any) -> None:
        """Apply the member's ``SCHILY.xattr.*`` pax headers, where the filesystem allows;
        ``target`` is an open fd, or a path whose last component is not followed."""
        nofollow = {} if isinstance(target, int) else {"follow_symlinks": False}
        for key, value in m.pax_headers.items():
            if not key.startswith(_XATTR):
                continue
            try:
                os.setxattr(target, key[len(_XATTR):], value.encode("utf-8", "surrogateescape"),
                            **nofollow)
            except OSError as err:
                if err.errno not in _XATTR_UNSUPPORTED:
                    raise InvalidConfig(f"layer member {m.name!r}: xattr "
                                        f"{key[len(_XATTR):]!r}: {err.strerror}") from None

    def whiteout(self, member: str, parts: tuple[str, ...]) -> None:
        """Apply ``.wh.NAME`` (delete NAME) or ``.wh..wh..opq`` (empty the directory)."""
        base = parts[-1]
        victim = base[len(_WHITEOUT):]
        parent = self.open_dir(parts[:-1], member, create=False)
        if parent is None:
            return
        try:
            if base == _OPAQUE:
                self.opaque(parent, parts[:-1])
            elif (st := _lstat(parent, victim)) is not None:
                self.remove(parent, victim, st)
        finally:
            os.close(parent)

    def opaque(self, dir_fd: int, prefix: tuple[str, ...]) -> None:
        """Remove everything below ``dir_fd`` that this layer did not create."""
        for entry in list(os.scandir(dir_fd)):
            path = prefix + (entry.name,)
            st = entry.stat(follow_symlinks=False)
            if path not in self.created:
                self.remove(dir_fd, entry.name, st)
            elif stat.S_ISDIR(st.st_mode):
                sub = os.open(entry.name, _DIR, dir_fd=dir_fd)
                try:
                    self.opaque(sub, path)
                finally:
                    os.close(sub)

    def finish(self) -> None:
        """Set directory mtimes, now that nothing more is created inside them."""
        for parts, ns in reversed(self.dir_times):
            fd = self.open_dir(parts, "/".join(parts), create=False)
            if fd is not None:
                try:
                    os.utime(fd, ns=(ns, ns))
                finally:
                    os.close(fd)


_BLOCK = 4096
"""Aligned blocks of this many zero bytes in file data are left as holes, not written."""
_ZEROS = bytes(_BLOCK)
_CHUNK = 1 << 20
_KERNEL_COPY_MAX = 1 << 16
"""Data up to this size is copied by the kernel unread: holes that small save little."""


def _copy_range(src: int, offset: int, size: int, fd: int, at: int) -> None:
    """Copy ``size`` bytes at ``offset`` of file ``src`` to offset ``at`` of the open file
    ``fd``: small data by the kernel (``copy_file_range``), larger data read here so its
    zero blocks stay holes (see :func:`_write_sparse`)."""
    if size <= _KERNEL_COPY_MAX and _kernel_copy(src, offset, size, fd, at):
        return
    done = 0
    while done < size:
        chunk = os.pread(src, min(size - done, _CHUNK), offset + done)
        if not chunk:
            raise InvalidConfig(f"corrupt layer: a member's data ends {size - done} bytes early")
        _write_sparse(fd, chunk, at + done)
        done += len(chunk)


def _kernel_copy(src: int, offset: int, size: int, fd: int, at: int) -> bool:
    """Copy with ``copy_file_range``; False (nothing copied) where the kernel cannot."""
    done = 0
    while done < size:
        try:
            n = os.copy_file_range(src, fd, size - done, offset + done, at + done)
        except OSError as err:
            if done or err.errno not in (errno.EXDEV, errno.EINVAL, errno.ENOSYS,
                                         errno.EOPNOTSUPP):
                raise
            return False
        if n == 0:
            raise InvalidConfig(f"corrupt layer: a member's data ends {size - done} bytes early")
        done += n
    return True


def _copy(src: IO[bytes], size: int, fd: int, at: int) -> None:
    """Copy ``size`` bytes of ``src`` to offset ``at`` of the open file ``fd``, zero blocks
    left as holes."""
    done = 0
    while done < size:
        chunk = src.read(min(size - done, _CHUNK))
        if not chunk:
            raise InvalidConfig(f"corrupt layer: a member's data ends {size - done} bytes early")
        _write_sparse(fd, chunk, at + done)
        done += len(chunk)


def _write_sparse(fd: int, chunk: bytes, at: int) -> None:
    """Write ``chunk`` at offset ``at`` of ``fd``, except its file-aligned blocks of
    :data:`_BLOCK` zero bytes: those are skipped, so they read back as zeros from a hole
    (the caller sets the file's final size with ``ftruncate``)."""
    start = 0
    end = len(chunk)
    search = 0
    while (found := chunk.find(_ZEROS, search)) >= 0:
        block = found + (-(at + found) % _BLOCK)         # the first aligned block from there
        if block + _BLOCK > end or chunk[block:block + _BLOCK] != _ZEROS:
            search = block + 1 if block + _BLOCK <= end else end
            continue
        rest = chunk[block:]
        zeros = len(rest) - len(rest.lstrip(b"\0"))
        hole = block + zeros - zeros % _BLOCK if block + zeros < end else end
        _pwrite_all(fd, chunk, start, block, at)
        start = search = hole
    _pwrite_all(fd, chunk, start, end, at)


def _pwrite_all(fd: int, chunk: bytes, start: int, end: int, at: int) -> None:
    """Write ``chunk[start:end]`` at offset ``at + start`` of ``fd``."""
    view = memoryview(chunk)[start:end]
    while view:
        n = os.pwrite(fd, view, at + start)
        view, start = view[n:], start + n
