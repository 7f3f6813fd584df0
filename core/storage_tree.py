"""A base for storage plugins that keep each snapshot as a tree of files
(``pinnace.storage_tree``, re-exported by ``pinnace.plugin``): the built-in
``dir`` and ``btrfs`` plugins and the ``overlay`` example build on it.

Layout under the plugin's data directory::

    snapshots/<name>/fs          the tree: a directory, or a btrfs subvolume
    snapshots/<name>/meta.json   {"kind", "parent", "labels", "created"}
    tmp/                         staging: trees are built here, then renamed into snapshots/
    lock                         flock: shared while building, exclusive to commit or remove

``<name>`` is the key percent-encoded (``sha256:ab`` -> ``sha256%3Aab``): reversible,
so two keys never share a directory and the key is read back from the name.
A snapshot appears and disappears with one ``rename``, so readers never see
half a tree. Commit writes the new metadata before renaming, so a crash in
between leaves the old key holding a committed snapshot, never a key stuck
half-way; leftovers in ``tmp/`` are swept under the exclusive lock.

A subclass says how a tree is made (:meth:`TreeStorage.make_tree`), sealed,
measured and destroyed, and may say how a snapshot is mounted
(:meth:`TreeStorage.describe`); the base implements every storage hook, the
locking, the metadata and the checks the storage contract suite holds it to.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pinnace.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidConfig,
    NotFound,
    PinnaceError,
    Unavailable,
)
from pinnace.plugin import Plugin, hookimpl
from pinnace.snapshots import Kind, SnapshotInfo, Usage

if TYPE_CHECKING:
    from collections.abc import Sequence

    from pinnace.mounts import Mount
    from pinnace.runtime.userns import IdMap
    from pinnace.snapshots import StorageCapabilities

NAME_MAX = 255
SHIFT_LABEL = "pinnace.shift-of"
"""The label of a snapshot made by ``pinnace_storage_shift``: the key it shifts."""


def key_to_name(key: str) -> str:
    """The directory name of snapshot ``key``; ``InvalidConfig`` for keys that could
    escape the data directory (``/``, ``.``, ``..``), empty or too long keys."""
    from urllib.parse import quote

    if not isinstance(key, str) or key in ("", ".", "..") or "/" in key:
        raise InvalidConfig(f"invalid snapshot key {key!r}: must be non-empty, not '.' or '..', "
                            "without '/'")
    name = quote(key, safe="")
    if len(name.encode()) > NAME_MAX:
        raise InvalidConfig(f"invalid snapshot key {key[:40]!r}...: too long")
    return name


def name_to_key(name: str) -> str:
    """The key whose directory name is ``name`` (inverse of :func:`key_to_name`)."""
    from urllib.parse import unquote

    return unquote(name)


def mount_of(path: Path) -> tuple[str, str, str]:
    """``(mount point, filesystem type, source)`` of the mount that holds ``path``
    (or would hold it, for a path that does not exist yet)."""
    target = os.path.realpath(path)
    best = ("/", "unknown", "unknown")
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            point = _unescape(left.split()[4])
            fstype, source = right.split()[:2]
            inside = target == point or target.startswith(point.rstrip("/") + "/")
            if inside and len(point) >= len(best[0]):  # later lines stack on earlier ones
                best = (point, fstype, _unescape(source))
    return best


def _unescape(field: str) -> str:
    return field.encode().decode("unicode_escape") if "\\" in field else field


def human(size: float) -> str:
    """``12.3 GiB`` for a byte count."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024:
            return f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


def free_bytes(path: Path) -> int:
    """Bytes available to root on the filesystem that holds (or would hold) ``path``."""
    while not path.exists():
        path = path.parent
    st = os.statvfs(path)
    return st.f_bfree * st.f_frsize


def tree_usage(path: Path) -> Usage:
    """Blocks and inodes of the tree at ``path``, hard links counted once,
    without leaving its filesystem."""
    seen: set[int] = set()
    size = 0
    top = os.lstat(path)
    stack = [str(path)]
    seen.add(top.st_ino)
    size += top.st_blocks * 512
    while stack:
        with os.scandir(stack.pop()) as entries:
            for entry in entries:
                st = entry.stat(follow_symlinks=False)
                if st.st_dev != top.st_dev or st.st_ino in seen:
                    continue
                seen.add(st.st_ino)
                size += st.st_blocks * 512
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
    return Usage(size=size, inodes=len(seen))


def idmap_works(path: Path) -> bool:
    """Whether a mount of directory ``path`` can be idmapped here: its filesystem supports
    idmapped mounts (ramfs, NFS and most FUSE ones do not) and this user namespace may
    make them (a rootless pinnace may not, on a filesystem the host mounted)."""
    from pinnace import linux
    from pinnace.runtime.userns import IdMap, Mapping, open_namespace

    one = (IdMap(0, 0, 1),)
    fd = open_namespace(Mapping(one, one))
    try:
        return linux.idmap_works(str(path), fd)
    finally:
        os.close(fd)


def shift_owners(top: Path, uid_map: Sequence[IdMap], gid_map: Sequence[IdMap]) -> None:
    """Chown every entry of the tree ``top`` from container ids to host ids through the
    maps (ids beyond them: the overflow id), each inode once, links not followed, without
    leaving its filesystem; the setuid/setgid bits and file capabilities a chown clears
    are put back."""
    import stat

    from pinnace.runtime.userns import host_id

    seen: set[int] = set()
    dev = os.lstat(top).st_dev

    def shift(name: str, dir_fd: int | None) -> None:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        if st.st_ino in seen or st.st_dev != dev:
            return
        seen.add(st.st_ino)
        caps = None
        if stat.S_ISREG(st.st_mode):
            with contextlib.suppress(OSError):
                caps = os.getxattr(name, "security.capability", follow_symlinks=False)
        os.chown(name, host_id(uid_map, st.st_uid), host_id(gid_map, st.st_gid),
                 dir_fd=dir_fd, follow_symlinks=False)
        if stat.S_ISREG(st.st_mode) and st.st_mode & (stat.S_ISUID | stat.S_ISGID):
            os.chmod(name, stat.S_IMODE(st.st_mode), dir_fd=dir_fd)
        if caps is not None:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
            try:
                os.setxattr(fd, "security.capability", caps)
            finally:
                os.close(fd)

    shift(str(top), None)
    for _, dirs, files, dir_fd in os.fwalk(top):
        for name in dirs + files:
            shift(name, dir_fd)


def run(argv: list[str], what: str) -> str:
    """Run a tool and return its output; a failure is ``FailedPrecondition`` naming
    ``what`` and the tool's last error line."""
    import subprocess

    try:
        proc = subprocess.run(argv, capture_output=True, text=True)
    except FileNotFoundError:
        raise Unavailable(f"{what}: {argv[0]} is not installed") from None
    if proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines() or [f"exit {proc.returncode}"]
        raise FailedPrecondition(f"{what}: {argv[0]}: {lines[-1]}")
    return proc.stdout


class TreeStorage(Plugin):
    """Snapshots kept as ``<data_dir>/snapshots/<name>/{fs,meta.json}``; every storage hook.

    Subclasses implement :meth:`make_tree`, :meth:`destroy_tree` and
    :meth:`measure_tree`, and may override :meth:`setup`, :meth:`seal_tree` and
    :meth:`describe`.
    """

    _ready = False
    _idmap: bool | None = None

    # ------------------------------------------------------------ for subclasses
    def setup(self) -> None:
        """Make the data directory usable, or raise a one-line error saying how to."""

    def make_tree(self, parent: Path | None, fs: Path, readonly: bool) -> None:
        """Create the tree ``fs`` (absent): empty, or with the contents of ``parent``
        (the ``fs`` tree of the committed parent snapshot). Files next to ``fs``
        (in ``fs.parent``) move with the snapshot."""
        raise NotImplementedError

    def seal_tree(self, fs: Path) -> None:
        """Make a tree that is being committed read-only, where the filesystem can."""

    def destroy_tree(self, fs: Path) -> None:
        """Delete the tree ``fs`` and everything in it."""
        raise NotImplementedError

    def measure_tree(self, fs: Path) -> Usage:
        """The space and inodes the tree ``fs`` uses on its own."""
        raise NotImplementedError

    def describe(self, key: str, fs: Path, readonly: bool) -> list[Mount]:
        """The mounts that show active or view snapshot ``key`` (whose tree is ``fs``):
        by default a bind mount of the tree, read-only for a view."""
        from pinnace.mounts import Mount

        return [Mount("bind", str(fs), ("rbind", "ro" if readonly else "rw"))]

    def make_shifted_tree(self, parent: str, fs: Path, uid_map: Sequence[IdMap],
                          gid_map: Sequence[IdMap]) -> None:
        """Create the tree ``fs`` (absent) holding all of committed snapshot ``parent``'s
        files with their owners shifted through the maps (``pinnace_storage_shift``): by
        default :meth:`make_tree` on the parent's tree, then :func:`shift_owners`. A
        subclass whose trees hold only their own changes copies the whole parent instead
        (:meth:`ancestors` stops at a shifted snapshot)."""
        self.make_tree(self.tree(parent), fs, readonly=False)
        shift_owners(fs, uid_map, gid_map)

    def tree(self, key: str) -> Path:
        """The tree (``fs``) of snapshot ``key``."""
        return self._dir(key) / "fs"

    def ancestors(self, key: str) -> list[Path]:
        """The trees of the committed snapshots ``key`` is built on, its parent first,
        down to the first shifted one (a whole tree: nothing below it shows)."""
        trees = []
        parent = self._meta(key)["parent"]
        while parent is not None:
            trees.append(self._dir(parent) / "fs")
            meta = self._meta(parent)
            parent = None if SHIFT_LABEL in meta["labels"] else meta["parent"]
        return trees

    # ------------------------------------------------------------------ helpers
    def _root(self) -> Path:
        if not self._ready:
            self.setup()
            for sub in ("snapshots", "tmp"):  # 0700: image files (setuid ones too) stay root's
                (self.ctx.data_dir / sub).mkdir(mode=0o700, parents=True, exist_ok=True)
            self._ready = True
        return self.ctx.data_dir

    def _dir(self, key: str) -> Path:
        name = key_to_name(key)  # before _root(): a bad key is an error whatever the host
        return self._root() / "snapshots" / name

    def _meta(self, key: str) -> dict[str, Any]:
        import json

        try:
            with open(self._dir(key) / "meta.json", encoding="utf-8") as f:
                return json.load(f)
        except FileNotFoundError:
            raise NotFound(f"snapshot {key!r} not found") from None

    def _info(self, key: str, meta: dict[str, Any]) -> SnapshotInfo:
        return SnapshotInfo(key=key, kind=Kind(meta["kind"]), parent=meta["parent"],
                            labels=dict(meta["labels"]), created=meta["created"])

    @staticmethod
    def _write_meta(where: Path, kind: Kind, parent: str | None, labels: dict[str, str]) -> None:
        import json

        meta = {"kind": kind.value, "parent": parent, "labels": dict(labels or {}),
                "created": time.time()}
        tmp = where / "meta.json.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(meta, f)
            if kind is Kind.COMMITTED:  # a layer outlives crashes; a container's rootfs need not
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, where / "meta.json")

    def _all(self) -> list[SnapshotInfo]:
        found = []
        for name in sorted(os.listdir(self._root() / "snapshots")):
            key = name_to_key(name)
            with contextlib.suppress(NotFound):  # removed while we looked
                found.append(self._info(key, self._meta(key)))
        return found

    @contextlib.contextmanager
    def _lock(self, exclusive: bool) -> Iterator[None]:
        """Shared while building a snapshot, exclusive to commit or remove one
        (which also sweeps what a killed process left in ``tmp/``)."""
        import fcntl

        fd = os.open(self._root() / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            if exclusive:
                for name in os.listdir(self._root() / "tmp"):
                    with contextlib.suppress(OSError, PinnaceError):  # retried next time
                        self._discard(self._root() / "tmp" / name)
            yield
        finally:
            os.close(fd)

    def _discard(self, where: Path) -> None:
        from pinnace.files import remove_tree

        if os.path.lexists(where / "fs"):
            self.destroy_tree(where / "fs")
        remove_tree(where)

    def _create(self, key: str, parent: str | None, labels: dict[str, str], kind: Kind,
                shift: tuple[Sequence[IdMap], Sequence[IdMap]] | None = None) -> Path:
        target = self._dir(key)
        if parent is not None:
            key_to_name(parent)
        with self._lock(exclusive=False):
            if target.exists():
                raise AlreadyExists(f"snapshot {key!r} already exists")
            source = None
            if parent is not None:
                if self._meta(parent)["kind"] != Kind.COMMITTED.value:
                    raise FailedPrecondition(f"parent {parent!r} of {key!r} is not committed")
                source = self._dir(parent) / "fs"
            stage = self._root() / "tmp" / f"{os.getpid()}-{os.urandom(6).hex()}"
            stage.mkdir()
            try:
                if shift is None:
                    self.make_tree(source, stage / "fs", readonly=kind is Kind.VIEW)
                else:  # a committed snapshot: made shifted, then sealed
                    assert parent is not None
                    self.make_shifted_tree(parent, stage / "fs", *shift)
                    self.seal_tree(stage / "fs")
                self._write_meta(stage, kind, parent, labels)
                try:
                    os.rename(stage, target)
                except OSError as err:
                    if target.exists():  # a concurrent prepare of the same key won
                        raise AlreadyExists(f"snapshot {key!r} already exists") from err
                    raise
            except BaseException:
                with contextlib.suppress(OSError, PinnaceError):  # else swept later
                    self._discard(stage)
                raise
        return target / "fs"

    # -------------------------------------------------------------------- hooks
    @hookimpl
    def pinnace_storage_prepare(self, key: str, parent: str | None,
                                labels: dict[str, str]) -> list[Mount]:
        """A writable snapshot ``key``: empty, or a copy-on-write/copy of committed ``parent``."""
        return self.describe(key, self._create(key, parent, labels, Kind.ACTIVE), readonly=False)

    @hookimpl
    def pinnace_storage_view(self, key: str, parent: str, labels: dict[str, str]) -> list[Mount]:
        """A read-only snapshot ``key`` of committed ``parent``, mounted read-only."""
        return self.describe(key, self._create(key, parent, labels, Kind.VIEW), readonly=True)

    @hookimpl
    def pinnace_storage_mounts(self, key: str) -> list[Mount]:
        """The mounts of active or view snapshot ``key``; committed ones are never handed out."""
        kind = self._meta(key)["kind"]
        if kind == Kind.COMMITTED.value:
            raise FailedPrecondition(f"snapshot {key!r} is committed: prepare or view a "
                                     "snapshot on it to mount it")
        return self.describe(key, self._dir(key) / "fs", readonly=kind == Kind.VIEW.value)

    @hookimpl
    def pinnace_storage_commit(self, name: str, key: str, labels: dict[str, str]) -> None:
        """Seal active snapshot ``key`` and rename it to committed snapshot ``name``."""
        source, target = self._dir(key), self._dir(name)
        with self._lock(exclusive=True):
            meta = self._meta(key)
            if meta["kind"] != Kind.ACTIVE.value:
                raise FailedPrecondition(f"snapshot {key!r} is {meta['kind']}, not active: "
                                         "only active snapshots can be committed")
            if target.exists():
                raise AlreadyExists(f"snapshot {name!r} already exists")
            self.seal_tree(source / "fs")
            self._write_meta(source, Kind.COMMITTED, meta["parent"], labels)
            os.rename(source, target)

    @hookimpl
    def pinnace_storage_remove(self, key: str) -> None:
        """Delete snapshot ``key``, unless another snapshot is built on it."""
        from pinnace.linux import mounts_under

        source = self._dir(key)
        with self._lock(exclusive=True):
            self._meta(key)
            busy = mounts_under(str(source))
            if busy:
                raise FailedPrecondition(f"snapshot {key!r} is in use: {busy[-1]} is mounted")
            children = [s.key for s in self._all() if s.parent == key]
            if children:
                more = f" and {len(children) - 1} more" if len(children) > 1 else ""
                raise FailedPrecondition(f"snapshot {key!r} is the parent of {children[0]!r}{more}"
                                         ": remove those first")
            trash = self._root() / "tmp" / f"{os.getpid()}-{os.urandom(6).hex()}"
            os.rename(source, trash)
            self._discard(trash)

    @hookimpl
    def pinnace_storage_stat(self, key: str) -> SnapshotInfo:
        """Kind, parent, labels and creation time of snapshot ``key``."""
        return self._info(key, self._meta(key))

    @hookimpl
    def pinnace_storage_usage(self, key: str) -> Usage:
        """Bytes and inodes snapshot ``key`` uses on its own."""
        self._meta(key)
        return self.measure_tree(self._dir(key) / "fs")

    @hookimpl
    def pinnace_storage_walk(self) -> list[SnapshotInfo]:
        """Every snapshot, sorted by directory name."""
        return self._all()

    @hookimpl
    def pinnace_storage_capabilities(self) -> StorageCapabilities:
        """Idmapped mounts where the data directory's filesystem (and this user namespace)
        allows them; chown-on-snapshot always."""
        from pinnace.snapshots import StorageCapabilities

        if self._idmap is None:
            self._idmap = idmap_works(self._root() / "snapshots")
        return StorageCapabilities(idmap=self._idmap, shift=True)

    @hookimpl
    def pinnace_storage_shift(self, key: str, parent: str, uid_map: list[IdMap],
                              gid_map: list[IdMap]) -> None:
        """Committed snapshot ``key``: a copy (or copy-on-write snapshot) of committed
        ``parent`` with its owners shifted through the maps."""
        self._create(key, parent, {SHIFT_LABEL: parent}, Kind.COMMITTED,
                     shift=(uid_map, gid_map))
