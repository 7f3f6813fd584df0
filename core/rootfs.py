"""Files inside a container's root filesystem, opened so that the lookup cannot leave it.

A container owns its files: any symlink in them, absolute or with ``..``, may point at
the host, and the container may swap one in at any moment. So a path is never joined to
the rootfs's host path and handed to ``open``; it is resolved relative to a directory
file descriptor of the root, as if that were ``/``: with openat2(2) and
``RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS`` when the kernel has it, else by walking
one component at a time with ``O_NOFOLLOW`` and following symlinks by hand.
What is missing is made the same way (:func:`mkdir_in`, :func:`create_in`: mount
targets), one entry at a time relative to its directory's descriptor;
:func:`open_parent` gives a directory and an entry name to open without following it.
"""

from __future__ import annotations

import ctypes
import errno
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager

from pinnace.errors import InvalidConfig, NotFound

RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_IN_ROOT = 0x10
_OPENAT2 = 437  # the same number on every architecture pinnace runs on (not alpha)
_ARCHES = {"x86_64", "aarch64", "riscv64", "ppc64le", "s390x", "i686", "armv7l"}
_MAX_LINKS = 40  # the kernel's limit on symlinks followed in one lookup


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64),
                ("resolve", ctypes.c_uint64)]


_have_openat2 = os.uname().machine in _ARCHES


@contextmanager
def opened_root(path: str | os.PathLike[str]) -> Iterator[int]:
    """An ``O_PATH`` descriptor of the directory ``path``, the root lookups stay in."""
    try:
        fd = os.open(path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as e:
        raise NotFound(f"root filesystem {os.fspath(path)}: {e.strerror}") from None
    try:
        yield fd
    finally:
        os.close(fd)


def open_in(root: int, path: str, flags: int) -> int:
    """Open ``path`` with ``flags`` as seen from the directory ``root`` taken as ``/``.

    Symlinks, absolute or relative, are followed inside the root; ``..`` stops at it;
    magic links (``/proc/*/fd``, ``/proc/*/root``) are never jumped through (openat2
    refuses them, the walk reads their target as text). Raises ``OSError``.
    """
    global _have_openat2
    flags |= os.O_CLOEXEC
    if _have_openat2:
        try:
            return _openat2(root, path, flags)
        except OSError as e:
            if e.errno != errno.ENOSYS:
                raise
            _have_openat2 = False
    return open_by_walking(root, path, flags)


def _openat2(root: int, path: str, flags: int) -> int:
    how = _OpenHow(flags=flags, mode=0, resolve=RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)
    libc = ctypes.CDLL(None, use_errno=True)
    for _ in range(8):  # EAGAIN: a rename raced a "..", the kernel asks to retry
        fd = libc.syscall(ctypes.c_long(_OPENAT2), ctypes.c_int(root),
                          ctypes.c_char_p(os.fsencode(path)), ctypes.byref(how),
                          ctypes.c_size_t(ctypes.sizeof(how)))
        if fd >= 0:
            return fd
        err = ctypes.get_errno()
        if err != errno.EAGAIN:
            raise OSError(err, os.strerror(err), path)
    raise OSError(errno.EAGAIN, os.strerror(errno.EAGAIN), path)


def open_by_walking(root: int, path: str, flags: int) -> int:
    """:func:`open_in` for kernels without openat2: ``RESOLVE_IN_ROOT`` done by hand, one
    ``O_NOFOLLOW`` step at a time, a symlink's target read and resolved against the root
    or the current directory (a magic link's target is only text, so it stays inside)."""
    return _walk(root, path, flags, None)


def mkdir_in(root: int, path: str, mode: int = 0o755,
             owner: tuple[int, int] | None = None) -> int:
    """An ``O_PATH`` descriptor of the directory ``path`` inside ``root``, made (with the
    directories on the way) where missing, owned by ``owner`` (uid, gid) when given.
    Symlinks, dangling ones too, resolve inside the root as in :func:`open_in`; each
    directory is made relative to its parent's descriptor, never through a host path.
    Raises ``OSError`` (``ENOTDIR`` when ``path`` is something else than a directory)."""
    return _walk(root, path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC,
                 (stat.S_IFDIR, mode, owner))


def create_in(root: int, path: str, mode: int = 0o644,
              owner: tuple[int, int] | None = None) -> int:
    """An ``O_PATH`` descriptor of ``path`` inside ``root``, made as an empty regular file
    (and its parent directories) where missing, owned by ``owner`` when given; an
    existing entry of any type is opened as it is. Resolves as :func:`mkdir_in` does;
    the file is created with ``O_EXCL`` and ``O_NOFOLLOW`` relative to its directory's
    descriptor. Raises ``OSError``."""
    return _walk(root, path, os.O_PATH | os.O_CLOEXEC, (stat.S_IFREG, mode, owner))


def open_parent(root: int, path: str, follow: bool) -> tuple[int, str]:
    """The directory holding ``path`` inside ``root``, as an ``O_PATH`` descriptor (the
    caller closes it), and the name of ``path``'s entry in it (``.`` for a path that
    names a directory by ``/``, ``.`` or ``..``). With ``follow``, a final symlink is
    followed, again inside the root, until the entry is no symlink or is missing; without
    it the entry may be a symlink. Only the entry's name is returned, so a caller that
    opens it relative to the descriptor with ``O_NOFOLLOW`` sees that entry, whatever is
    swapped in meanwhile. Raises ``OSError``."""
    for _ in range(_MAX_LINKS):
        head, _, name = path.rstrip("/").rpartition("/")
        if name in ("", ".", ".."):
            return open_in(root, path or "/", os.O_PATH | os.O_DIRECTORY), "."
        parent = open_in(root, head or "/", os.O_PATH | os.O_DIRECTORY)
        try:
            target = os.readlink(name, dir_fd=parent) if follow else None
        except OSError as e:  # missing, or not a symlink: this is the entry
            if e.errno not in (errno.ENOENT, errno.EINVAL):
                os.close(parent)
                raise
            target = None
        if target is None:
            return parent, name
        os.close(parent)
        path = target if target.startswith("/") else f"{head}/{target}"
    raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), path)


def _walk(root: int, path: str, flags: int,
          create: tuple[int, int, tuple[int, int] | None] | None) -> int:
    """Open ``path`` from ``root`` one ``O_NOFOLLOW`` step at a time; with ``create``
    (a file type, mode and owner), make what is missing on the way: directories, and at
    the end an entry of that type."""
    stack: list[int] = []  # directories below the root, the current one last
    todo = [c for c in path.split("/") if c not in ("", ".")]
    todo.reverse()
    links = made = 0
    try:
        while todo:
            name = todo.pop()
            if name == "..":
                if stack:
                    os.close(stack.pop())
                continue
            here = stack[-1] if stack else root
            last = not todo
            try:
                fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=here)
            except FileNotFoundError:
                if create is None or made > _MAX_LINKS:
                    raise
                made += 1  # made, then looked up again (or someone else's entry is found)
                _make(here, name, create if last else (stat.S_IFDIR, 0o755, create[2]))
                todo.append(name)
                continue
            mode = os.fstat(fd).st_mode
            if not stat.S_ISLNK(mode):
                if last:
                    return _reopen(fd, mode, flags, path)
                if not stat.S_ISDIR(mode):
                    os.close(fd)
                    raise OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), path)
                stack.append(fd)
                continue
            os.close(fd)
            links += 1
            if links > _MAX_LINKS:
                raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), path)
            target = os.readlink(name, dir_fd=here)
            if target.startswith("/"):
                while stack:
                    os.close(stack.pop())
            todo.extend(reversed([c for c in target.split("/") if c not in ("", ".")]))
        return os.open(".", flags, dir_fd=stack[-1] if stack else root)
    finally:
        for fd in stack:
            os.close(fd)


def _reopen(fd: int, mode: int, flags: int, path: str) -> int:
    """The entry open as ``O_PATH`` on ``fd``, opened with ``flags`` instead (``fd`` is
    taken over): through its ``/proc/self/fd`` link, which is that inode and no other."""
    if flags & os.O_PATH and not (flags & os.O_DIRECTORY and not stat.S_ISDIR(mode)):
        return fd
    try:
        if flags & os.O_DIRECTORY and not stat.S_ISDIR(mode):
            raise OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), path)
        return os.open(f"/proc/self/fd/{fd}", flags & ~os.O_NOFOLLOW)
    finally:
        os.close(fd)


def _make(parent: int, name: str, kind: tuple[int, int, tuple[int, int] | None]) -> None:
    """Make the entry ``name`` of ``parent`` (a directory or an empty file, of an owner
    when one is given); one that appeared meanwhile is left as it is, to be looked up
    again."""
    file_type, mode, owner = kind
    try:
        if file_type == stat.S_IFDIR:
            os.mkdir(name, mode, dir_fd=parent)
        else:
            os.close(os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                             | os.O_CLOEXEC, mode, dir_fd=parent))
    except FileExistsError:
        return
    if owner is not None:
        os.chown(name, *owner, dir_fd=parent, follow_symlinks=False)


def read_small(root: int, path: str, limit: int) -> bytes:
    """The contents of the regular file ``path`` inside ``root``, at most ``limit`` bytes.

    Never blocks (a FIFO or device is refused after opening it non-blocking, not read).
    Raises NotFound when the file (or a directory on the way) is missing, InvalidConfig
    when it is not a regular file, is larger than ``limit`` or cannot be opened.
    """
    try:
        fd = open_in(root, path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    except OSError as e:
        if e.errno in (errno.ENOENT, errno.ENOTDIR):
            raise NotFound(f"{path} not found in the container's filesystem") from None
        raise InvalidConfig(f"cannot open {path} in the container's filesystem: "
                            f"{e.strerror}") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise InvalidConfig(f"{path} in the container's filesystem is not a regular file "
                                f"({_kind(mode)})")
        chunks, size = [], 0
        while size <= limit:
            chunk = os.read(fd, min(65536, limit + 1 - size))
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
            size += len(chunk)
        raise InvalidConfig(f"{path} in the container's filesystem is larger than "
                            f"{limit} bytes")
    finally:
        os.close(fd)


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "of an unknown type"
