"""``cp``: files between a container's root filesystem and the host, with docker's rules.

A copy is a tar stream, as in docker: the source side writes one
(:class:`pinnace.images.layers.TreeTar`, which walks one directory descriptor at a
time and never follows a symlink), the destination side extracts it
(:func:`pinnace.images.unpack.extract`, which creates every entry relative to its
directory's descriptor with ``O_NOFOLLOW`` and never writes below a symlink).
``-`` stands for that stream on stdout or stdin.

Paths on either side are resolved against a descriptor of that side's root with
:mod:`pinnace.rootfs`: the container's rootfs for the container's side (its
symlinks, absolute or with ``..``, stay inside it whatever it swaps in meanwhile),
``/`` for the host's. Only the source's final symlink is followed, and only with
``-L``; the destination's is followed (inside its root), as docker does.

Where it lands (docker's rules): a source ending in ``/.`` copies a directory's
contents; a destination that is a directory receives the source under its own name
(or its contents); a missing destination is created under that name (a file source
needs its parent to exist, and no trailing ``/``); a directory never replaces a file.
"""

from __future__ import annotations

import errno
import os
import stat
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO

from pinnace import rootfs
from pinnace.errors import InvalidConfig, NotFound, PinnaceError

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass(frozen=True)
class Side:
    """One end of a copy: ``root`` a descriptor of the root its ``path`` resolves in, and
    ``label`` how errors name it (``CONTAINER:PATH`` or the host path)."""

    root: int
    path: str
    label: str


@dataclass(frozen=True)
class CopyOptions:
    """``-a`` (``archive``: keep the source's owners) and ``-L`` (``follow`` the source's
    final symlink)."""

    archive: bool = False
    follow: bool = False


def copy(source: Side | BinaryIO, dest: Side | BinaryIO, options: CopyOptions,
         owner: tuple[int, int]) -> None:
    """Copy ``source`` to ``dest``; either may be a tar stream instead (``-``), not both.
    Entries written get the tar's owners with ``options.archive``, else ``owner``."""
    if isinstance(source, Side):
        parent, name, st = _source(source, options.follow)
        try:
            if not isinstance(dest, Side):
                _write(parent, name, _base_name(source.path, name, st), dest, source.label)
                return
            into, arcname = _destination(dest, stat.S_ISDIR(st.st_mode), source.label)
            try:
                top = _base_name(source.path, name, st) if arcname is None else arcname
                pipe(lambda out: _write(parent, name, top, out, source.label),
                      lambda stream: _extract(stream, into, options, owner))
            finally:
                os.close(into)
        finally:
            os.close(parent)
    elif isinstance(dest, Side):
        into, arcname = _destination(dest, True, "-")
        try:
            if arcname is not None:
                raise NotFound(f"destination directory {dest.label} does not exist (a tar "
                               "stream is extracted into a directory)")
            _extract(source, into, options, owner)
        finally:
            os.close(into)
    else:
        raise InvalidConfig("cp copies to or from a container, not from - to -")


def _source(side: Side, follow: bool) -> tuple[int, str, os.stat_result]:
    """The source's directory (a descriptor), its entry's name there, and its status."""
    path = side.path
    contents = path.endswith("/.")
    try:
        parent, name = rootfs.open_parent(side.root, path, follow)
    except OSError as err:
        raise _lookup_error(side.label, err) from None
    try:
        st = os.stat(name, dir_fd=parent, follow_symlinks=False)
    except FileNotFoundError:
        os.close(parent)
        raise NotFound(f"no such file or directory: {side.label}") from None
    if (contents or path.endswith("/")) and not stat.S_ISDIR(st.st_mode):
        os.close(parent)
        raise InvalidConfig(f"not a directory: {side.label}")
    return parent, name, st


def _lookup_error(label: str, err: OSError) -> PinnaceError:
    """The error for a path that could not be looked up."""
    if err.errno == errno.ENOENT:
        return NotFound(f"no such file or directory: {label}")
    return InvalidConfig(f"{label}: {err.strerror.lower() if err.strerror else err}")


def _base_name(path: str, name: str, st: os.stat_result) -> str | None:
    """The source's name in the tar: None to copy a directory's contents (``/.``, ``/``)."""
    if name == "." or (path.endswith("/.") and stat.S_ISDIR(st.st_mode)):
        return None
    return name


def _write(parent: int, name: str, top: str | None, out: BinaryIO, label: str) -> None:
    """Write entry ``name`` of ``parent`` as a tar to ``out``, named ``top`` with everything
    below it; with ``top`` None, the directory's entries instead, each under its own name.
    Raises NotFound, with nothing written, when the entry is gone since it was found."""
    from pinnace.images.layers import TreeTar

    with TreeTar(out).writing() as tar:
        if top is not None:
            tar.add_tree(parent, name, top)
            if not tar.tar.members:
                raise NotFound(f"no such file or directory: {label}")
        else:
            fd = os.open(name, _DIR, dir_fd=parent)
            try:
                for child in sorted(os.listdir(fd)):
                    tar.add_tree(fd, child, child)
            finally:
                os.close(fd)


def _destination(side: Side, source_is_dir: bool, source_label: str) -> tuple[int, str | None]:
    """Where to extract (a directory descriptor the caller closes) and the name the
    source's top entry takes there (None: keep the source's name, or its contents)."""
    path = side.path
    wants_dir = path.endswith("/") or path.endswith("/.")
    try:
        parent, name = rootfs.open_parent(side.root, path, follow=True)
    except OSError as err:
        if err.errno == errno.ENOENT:
            raise NotFound(f"destination directory of {side.label} does not exist") from None
        raise _lookup_error(side.label, err) from None
    try:
        try:
            st = os.stat(name, dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            if wants_dir and not source_is_dir:
                raise NotFound(f"destination directory {side.label} does not exist") from None
            return _reopened(parent), name
        if stat.S_ISDIR(st.st_mode):
            return os.open(name, _DIR, dir_fd=parent), None
        if source_is_dir:
            raise InvalidConfig(f"cannot copy a directory ({source_label}) onto the file "
                               f"{side.label}")
        if wants_dir:
            raise InvalidConfig(f"not a directory: {side.label}")
        return _reopened(parent), name
    finally:
        os.close(parent)


def _reopened(fd: int) -> int:
    """The directory open as ``O_PATH`` on ``fd``, opened for reading (that same inode)."""
    return os.open(f"/proc/self/fd/{fd}", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)


def _extract(stream: BinaryIO, into: int, options: CopyOptions,
             owner: tuple[int, int]) -> None:
    from pinnace.images.unpack import extract

    extract(stream, into, None if options.archive else owner)


def pipe(write: Callable[[BinaryIO], None], read: Callable[[BinaryIO], None]) -> None:
    """Run ``write`` (in a thread) into a pipe that ``read`` reads from; raise what either
    raised, the writer's first (its broken pipe, once the reader has stopped, is no error)."""
    r, w = os.pipe2(os.O_CLOEXEC)
    failed: list[BaseException] = []

    def produce() -> None:
        try:
            with os.fdopen(w, "wb") as out:
                write(out)
        except BrokenPipeError:
            pass
        except BaseException as err:  # handed to the caller's thread
            failed.append(err)

    writer = threading.Thread(target=produce, name="cp-source")
    writer.start()
    try:
        with os.fdopen(r, "rb") as stream:
            read(stream)
    except BaseException:
        writer.join()
        if failed:  # the reader stopped because the writer did: the writer's error tells why
            raise failed[0] from None
        raise
    writer.join()
    if failed:
        raise failed[0]
