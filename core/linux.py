"""Linux system calls Python 3.11 lacks, through ctypes: namespaces, mounts, pivot_root."""

from __future__ import annotations

import ctypes
import os
from collections.abc import Callable, Iterable
from typing import TypeVar

T = TypeVar("T")

_libc = ctypes.CDLL(None, use_errno=True)

CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

NAMESPACE_FLAGS = {
    "mount": CLONE_NEWNS,
    "cgroup": CLONE_NEWCGROUP,
    "uts": CLONE_NEWUTS,
    "ipc": CLONE_NEWIPC,
    "user": CLONE_NEWUSER,
    "pid": CLONE_NEWPID,
    "net": CLONE_NEWNET,
}
"""Namespace names (as in /proc/PID/ns, ``mount`` for ``mnt``) to clone flags."""

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_NOATIME = 1024
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_SHARED = 1 << 20
MS_UNBINDABLE = 1 << 17
MS_STRICTATIME = 1 << 24
MNT_DETACH = 2
PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36

_MOUNT_FLAGS = {
    "ro": MS_RDONLY,
    "rw": 0,
    "nosuid": MS_NOSUID,
    "nodev": MS_NODEV,
    "noexec": MS_NOEXEC,
    "noatime": MS_NOATIME,
    "strictatime": MS_STRICTATIME,
    "bind": MS_BIND,
    "rbind": MS_BIND | MS_REC,
}
PROPAGATION = {
    "private": MS_PRIVATE, "rprivate": MS_PRIVATE | MS_REC, "shared": MS_SHARED,
    "rshared": MS_SHARED | MS_REC, "slave": MS_SLAVE, "rslave": MS_SLAVE | MS_REC,
    "unbindable": MS_UNBINDABLE, "runbindable": MS_UNBINDABLE | MS_REC,
}
"""Propagation options of a mount description: set by a mount call of their own."""


def _check(ret: int, what: str) -> int:
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return ret


def unshare(flags: int) -> None:
    """unshare(2): move the calling thread into new namespaces."""
    _check(_libc.unshare(ctypes.c_int(flags)), "unshare")


def setns(fd: int, nstype: int = 0) -> None:
    """setns(2): join the namespace open on ``fd``."""
    _check(_libc.setns(ctypes.c_int(fd), ctypes.c_int(nstype)), "setns")


def mount(source: str, target: str, fstype: str | None, flags: int = 0,
          data: str | None = None) -> None:
    """mount(2)."""
    ret = _libc.mount(
        source.encode(),
        target.encode(),
        fstype.encode() if fstype else None,
        ctypes.c_ulong(flags),
        data.encode() if data else None,
    )
    _check(ret, f"mount {source} on {target}")


def umount(target: str, detach: bool = False) -> None:
    """umount2(2); ``detach`` for a lazy unmount."""
    _check(_libc.umount2(target.encode(), ctypes.c_int(MNT_DETACH if detach else 0)),
           f"umount {target}")


def pivot_root(new_root: str, put_old: str) -> None:
    """pivot_root(2) (no libc wrapper: raw syscall 155 on x86_64, 41 on aarch64)."""
    nr = {"x86_64": 155, "aarch64": 41}[os.uname().machine]
    _check(_libc.syscall(ctypes.c_long(nr), new_root.encode(), put_old.encode()), "pivot_root")


def fork_in_new_pidns() -> int:
    """fork(2) into a new PID namespace (clone with ``CLONE_NEWPID``): the child is its
    PID 1; this process's own namespaces are left as they were (an unshare would change
    where its later children go, and only host root may set that back). The raw system
    call holds the GIL and runs none of Python's fork handlers: call it with no other
    thread running. Returns 0 in the child, the child's PID in the parent."""
    import signal

    nr = {"x86_64": 56, "aarch64": 220}[os.uname().machine]
    call = ctypes.PyDLL(None, use_errno=True).syscall
    call.restype = ctypes.c_long
    return _check(call(ctypes.c_long(nr), ctypes.c_ulong(CLONE_NEWPID | signal.SIGCHLD),
                       ctypes.c_ulong(0), None, None, ctypes.c_ulong(0)), "clone")


def sethostname(name: str) -> None:
    """sethostname(2) in the current UTS namespace."""
    raw = name.encode()
    _check(_libc.sethostname(raw, ctypes.c_size_t(len(raw))), "sethostname")


def set_pdeathsig(sig: int) -> None:
    """prctl(PR_SET_PDEATHSIG): get ``sig`` when the parent thread dies."""
    _check(_libc.prctl(ctypes.c_int(PR_SET_PDEATHSIG), ctypes.c_ulong(sig), 0, 0, 0), "prctl")


def inet_socket() -> int:
    """socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC): a descriptor for interface ioctls."""
    return _check(_libc.socket(2, 2 | os.O_CLOEXEC, 0), "socket")


def set_child_subreaper() -> None:
    """prctl(PR_SET_CHILD_SUBREAPER): orphaned descendants are reparented to this process."""
    _check(_libc.prctl(ctypes.c_int(PR_SET_CHILD_SUBREAPER), ctypes.c_ulong(1), 0, 0, 0), "prctl")


_OPEN_TREE, _MOVE_MOUNT, _MOUNT_SETATTR = 428, 429, 442  # one number on every architecture
_AT_FDCWD, _AT_EMPTY_PATH, _AT_RECURSIVE = -100, 0x1000, 0x8000
_OPEN_TREE_CLONE, _MOVE_MOUNT_F_EMPTY_PATH, _MOVE_MOUNT_T_SYMLINKS = 1, 4, 0x10


class _MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]


def bind_propagated(source: str, target: str, recursive: bool, propagation: int) -> None:
    """Bind ``source`` on ``target`` and set ``propagation`` (``MS_SHARED`` ..., with
    ``MS_REC`` for the whole tree) on the new mount through the descriptor open_tree gave
    for it (open_tree, move_mount, mount_setattr), so ``target`` may be a descriptor's
    path that leads to what the mount covers."""
    syscall = _libc.syscall
    fd = _cloned_tree(source, recursive)
    try:
        _check(syscall(ctypes.c_long(_MOVE_MOUNT), ctypes.c_int(fd), b"",
                       ctypes.c_int(_AT_FDCWD), target.encode(),
                       ctypes.c_uint(_MOVE_MOUNT_F_EMPTY_PATH | _MOVE_MOUNT_T_SYMLINKS)),
               f"move_mount on {target}")
        attr = _MountAttr(0, 0, propagation & ~MS_REC, 0)  # the descriptor is the new mount
        _check(syscall(ctypes.c_long(_MOUNT_SETATTR), ctypes.c_int(fd), b"",
                       ctypes.c_uint(_AT_EMPTY_PATH | (_AT_RECURSIVE if propagation & MS_REC
                                                       else 0)),
                       ctypes.byref(attr), ctypes.c_size_t(ctypes.sizeof(attr))),
               f"mount_setattr on {target}")
    finally:
        os.close(fd)


_MOUNT_ATTR_IDMAP = 0x00100000


def _cloned_tree(source: str, recursive: bool) -> int:
    """A detached bind of ``source`` (open_tree with OPEN_TREE_CLONE), as a descriptor."""
    return _check(_libc.syscall(ctypes.c_long(_OPEN_TREE), ctypes.c_int(_AT_FDCWD),
                                source.encode(),
                                ctypes.c_uint(_OPEN_TREE_CLONE | os.O_CLOEXEC
                                              | (_AT_RECURSIVE if recursive else 0))),
                  f"open_tree {source}")


def _idmapped_tree(source: str, userns_fd: int, recursive: bool) -> int:
    """A detached bind of ``source`` (open_tree), idmapped through ``userns_fd``."""
    syscall = _libc.syscall
    fd = _cloned_tree(source, recursive)
    try:
        attr = _MountAttr(_MOUNT_ATTR_IDMAP, 0, 0, userns_fd)
        _check(syscall(ctypes.c_long(_MOUNT_SETATTR), ctypes.c_int(fd), b"",
                       ctypes.c_uint(_AT_EMPTY_PATH), ctypes.byref(attr),
                       ctypes.c_size_t(ctypes.sizeof(attr))),
               f"idmapped mount of {source} (the filesystem must support idmapped mounts)")
    except BaseException:
        os.close(fd)
        raise
    return fd


def idmap_works(source: str, userns_fd: int) -> bool:
    """Whether a bind of ``source`` can be idmapped through ``userns_fd`` here: the
    filesystem supports it and this process may (made detached, then let go)."""
    try:
        os.close(_idmapped_tree(source, userns_fd, recursive=False))
    except OSError:
        return False
    return True


def bind_idmapped(source: str, target: str, userns_fd: int, recursive: bool) -> None:
    """Bind ``source`` on ``target`` as an idmapped mount: the ids of its files are seen
    through the mapping of the user namespace open on ``userns_fd`` (a file owned by 0
    on disk belongs to whoever is 0 there). Only the top mount of a ``recursive`` bind
    is idmapped."""
    syscall = _libc.syscall
    fd = _idmapped_tree(source, userns_fd, recursive)
    try:
        _check(syscall(ctypes.c_long(_MOVE_MOUNT), ctypes.c_int(fd), b"",
                       ctypes.c_int(_AT_FDCWD), target.encode(),
                       ctypes.c_uint(_MOVE_MOUNT_F_EMPTY_PATH | _MOVE_MOUNT_T_SYMLINKS)),
               f"move_mount on {target}")
    finally:
        os.close(fd)


def mount_described(fstype: str, source: str, target: str, options: Iterable[str]) -> None:
    """Mount from an fstab-style description; ``ro`` on a bind mount needs a remount, done
    here; a propagation option (``rprivate``, ``shared`` ...) is set on a bind's copy
    before it is attached (:func:`bind_propagated`), on other mounts once they are made."""
    flags, data, propagation = 0, [], 0
    for opt in options:
        if opt in PROPAGATION:
            propagation = PROPAGATION[opt]
        elif opt in _MOUNT_FLAGS:
            flags |= _MOUNT_FLAGS[opt]
        else:
            data.append(opt)
    if fstype == "bind":
        flags |= MS_BIND
        fstype = ""
    if propagation and flags & MS_BIND:
        bind_propagated(source, target, bool(flags & MS_REC), propagation)
    else:
        mount(source, target, fstype or None, flags & ~MS_RDONLY if flags & MS_BIND else flags,
              ",".join(data) or None)
    if flags & MS_BIND and flags & MS_RDONLY:
        remount_bind(target, options)
    if propagation and not flags & MS_BIND:
        mount("", target, None, propagation)


def remount_bind(target: str, options: Iterable[str]) -> None:
    """Apply ``options``' flags (``ro``, ``nosuid`` ...) to the bind mount at ``target``;
    ``target`` must lead to the mount itself, not to what it covers (a descriptor opened
    before the mount was made leads to what it covers)."""
    flags = 0
    for opt in options:
        flags |= _MOUNT_FLAGS.get(opt, 0)
    mount("", target, None, MS_BIND | MS_REMOUNT | (flags & ~MS_REC))


def is_mountpoint(path: str) -> bool:
    """True when ``path`` is listed as a mount point in this mount namespace."""
    target = os.path.realpath(path)
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        for line in f:
            if _unescape(line.split()[4]) == target:
                return True
    return False


def mounts_under(prefix: str) -> list[str]:
    """Mount points at or below ``prefix``, deepest first (the order to unmount them)."""
    base = os.path.realpath(prefix)
    found = []
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        for line in f:
            point = _unescape(line.split()[4])
            if point == base or point.startswith(base.rstrip("/") + "/"):
                found.append(point)
    return sorted(set(found), key=len, reverse=True)


def _unescape(field: str) -> str:
    return field.encode().decode("unicode_escape") if "\\" in field else field



def in_thread(work: Callable[[], T], name: str = "pinnace") -> T:
    """``work()`` run by a thread of its own that ends afterwards (so what it changes of
    its own thread, a namespace it joined, goes with it); its result or its exception."""
    import threading

    result: list[T] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            result.append(work())
        except BaseException as err:  # raised in the caller below
            failure.append(err)

    worker = threading.Thread(target=run, name=name)
    worker.start()
    worker.join()
    if failure:
        raise failure[0]
    return result[0]
