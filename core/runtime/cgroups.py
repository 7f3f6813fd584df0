"""Per-container cgroups on v1 (and hybrid) and v2 hosts, reusable by any isolation plugin.

On v1 a container gets a directory in every mounted hierarchy (and in the
unified one of a hybrid host); on v2 one directory in the unified tree.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import time
from dataclasses import dataclass

CGROUP_ROOT = "/sys/fs/cgroup"
PARENT = "pinnace"
"""Every container's cgroup is a child of this one, in each hierarchy."""
CGROUP2_MAGIC = 0x63677270


def version() -> str:
    """``v2`` when /sys/fs/cgroup is the unified hierarchy, else ``v1`` (v1 or hybrid)."""
    return "v2" if _fs_magic(CGROUP_ROOT) == CGROUP2_MAGIC else "v1"


def _fs_magic(path: str) -> int:
    import ctypes

    buf = ctypes.create_string_buffer(256)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.statfs(path.encode(), buf) != 0:
        return 0
    return int.from_bytes(buf.raw[:8], "little")


_mounts: dict[int, list[tuple[str, list[str]]]] = {}
"""Cgroup mounts, by mount namespace: reading mountinfo costs more than a write."""


def _cgroup_mounts() -> list[tuple[str, list[str]]]:
    """``(mount point, super options)`` of every cgroup hierarchy in this mount namespace."""
    namespace = os.stat("/proc/self/ns/mnt").st_ino
    mounts = _mounts.get(namespace)
    if mounts is None:
        mounts = []
        with open("/proc/self/mountinfo", encoding="utf-8") as f:
            for line in f:
                pre, _, post = line.partition(" - ")
                fields = post.split()  # type, source, super options
                if fields and fields[0] in ("cgroup", "cgroup2"):
                    mounts.append((pre.split()[4], fields[-1].split(",")))
        _mounts[namespace] = mounts
    return mounts


def hierarchies() -> list[str]:
    """Mount points of the cgroup hierarchies in this mount namespace that this process
    may write: all of them for root; for a rootless pinnace, those delegated to it (on a
    host that delegates none, none, and containers have no cgroup)."""
    return [point for point, _ in _cgroup_mounts() if os.access(point, os.W_OK)]


def fast_moves() -> bool:
    """True when a cgroup hierarchy is mounted with ``favordynmods``: moving a process
    into a cgroup then takes no RCU grace period (10-20 ms each time otherwise)."""
    return any("favordynmods" in options for _, options in _cgroup_mounts())


@dataclass
class Cgroup:
    """One container's cgroup: the same relative path in every hierarchy."""

    path: str

    @property
    def dirs(self) -> list[str]:
        """Its directory in each hierarchy."""
        return [os.path.join(h, self.path) for h in hierarchies()]

    def exists(self) -> bool:
        """True when the cgroup exists in at least one hierarchy."""
        return any(os.path.isdir(d) for d in self.dirs)

    def add(self, pid: int) -> None:
        """Move ``pid`` (0: the calling process) into the cgroup in every hierarchy."""
        for d in self.dirs:
            with open(os.path.join(d, "cgroup.procs"), "w") as f:
                f.write(str(pid))

    def pids(self, pid_namespace: int = 0) -> set[int]:
        """Host PIDs of the processes in the cgroup (with ``pid_namespace``, those of the
        PID namespace with that inode only)."""
        found: set[int] = set()
        for d in self.dirs:
            try:
                with open(os.path.join(d, "cgroup.procs")) as f:
                    found.update(int(x) for x in f.read().split())
            except OSError:
                continue
        if pid_namespace:
            found = {p for p in found if _in_pid_namespace(p, pid_namespace)}
        return found

    def kill_all(self, timeout: float = 5.0, pid_namespace: int = 0) -> None:
        """SIGKILL every process in the cgroup (with ``pid_namespace``, an inode of
        /proc/PID/ns/pid, those of that PID namespace only: the cgroup may be shared) and
        wait until none is left (a frozen cgroup is thawed after the signals: frozen
        processes cannot die)."""
        from pinnace.errors import Unavailable

        deadline = time.monotonic() + timeout
        thawed = False
        while (pids := self.pids(pid_namespace)) and time.monotonic() < deadline:
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            if not thawed:
                thawed = True
                with contextlib.suppress(OSError, Unavailable):
                    self.freeze(False)
            time.sleep(0.005)

    def freeze(self, frozen: bool = True) -> None:
        """Freeze (or thaw) every process: the v1 freezer when mounted, else v2's cgroup.freeze."""
        for d in self.dirs:
            v1 = os.path.join(d, "freezer.state")
            if os.path.exists(v1):
                _write_until(v1, "FROZEN" if frozen else "THAWED")
                return
        for d in self.dirs:
            v2 = os.path.join(d, "cgroup.freeze")
            if os.path.exists(v2):
                with open(v2, "w") as f:
                    f.write("1" if frozen else "0")
                return
        from pinnace.errors import Unavailable

        raise Unavailable("no cgroup freezer on this host (neither v1 freezer nor cgroup.freeze)")

    def frozen(self) -> bool:
        """True when the cgroup is frozen (v1 freezer, else v2's cgroup.freeze)."""
        for d in self.dirs:
            for name, value in (("freezer.state", "FROZEN"), ("cgroup.freeze", "1")):
                with contextlib.suppress(OSError):
                    with open(os.path.join(d, name)) as f:
                        if f.read().strip() == value:
                            return True
        return False

    def remove(self) -> None:
        """Remove the cgroup everywhere (a missing directory is fine; retries while
        busy), then the parents it leaves empty (``pinnace`` once no container is left)."""
        for d in self.dirs:
            deadline = time.monotonic() + 5
            while True:
                try:
                    os.rmdir(d)
                    break
                except FileNotFoundError:
                    break
                except OSError as err:
                    if err.errno != errno.EBUSY or time.monotonic() > deadline:
                        raise
                    time.sleep(0.01)
            for _ in range(self.path.count("/")):
                d = os.path.dirname(d)
                try:
                    os.rmdir(d)
                except OSError:  # another container's cgroup is still in it
                    break


NS_GET_PARENT = 0xB702


def _in_pid_namespace(pid: int, inode: int) -> bool:
    """True when ``pid`` is in the PID namespace with ``inode`` or one nested in it
    (False once it is gone)."""
    import fcntl

    try:
        fd = os.open(f"/proc/{pid}/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        while os.fstat(fd).st_ino != inode:
            parent = fcntl.ioctl(fd, NS_GET_PARENT)  # EPERM past this process's own
            os.close(fd)
            fd = parent
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def container_cgroup(container_id: str) -> Cgroup:
    """The cgroup of a container (``pinnace/<id>`` in every hierarchy)."""
    return Cgroup(f"{PARENT}/{container_id}")


def create(path: str) -> Cgroup:
    """Create cgroup ``path`` (e.g. ``pinnace/<id>``) in every hierarchy and return it.

    A parent that another container's teardown removes meanwhile (it was empty)
    is made again."""
    cg = Cgroup(path)
    for attempt in range(5):
        try:
            for h in hierarchies():
                _make(h, path)
            return cg
        except BaseException as err:
            if not (isinstance(err, FileNotFoundError) and attempt < 4):
                cg.remove()
                raise
    raise AssertionError("not reached: the last attempt returns or raises")


def _make(hierarchy: str, path: str) -> None:
    """Make each level of ``path`` that is missing. Every level is checked, made by
    this process or not: another pinnace may have just made a parent and not yet
    filled in what its children need (a v1 cpuset starts empty; v2 controllers
    must be enabled), and a child of an empty cpuset cannot take a process."""
    current = hierarchy
    for part in path.split("/"):
        parent, current = current, os.path.join(current, part)
        with contextlib.suppress(FileExistsError):
            os.mkdir(current)
        if os.path.exists(os.path.join(current, "cpuset.cpus")):
            for name in ("cpuset.cpus", "cpuset.mems"):
                _inherit(parent, current, name)
        elif os.path.exists(os.path.join(parent, "cgroup.subtree_control")) \
                and current != os.path.join(hierarchy, path):
            _enable_controllers(current)


def _inherit(parent: str, child: str, name: str) -> None:
    """Copy a v1 cpuset file from ``parent`` into ``child`` when it is still empty."""
    with open(os.path.join(child, name)) as f:
        if f.read().strip():
            return
    with open(os.path.join(parent, name)) as src:
        value = src.read().strip()
    with open(os.path.join(child, name), "w") as dst:
        dst.write(value)


def _enable_controllers(directory: str) -> None:
    """v2: let the children of ``directory`` use every controller it has."""
    try:
        with open(os.path.join(directory, "cgroup.controllers")) as f:
            wanted = f.read().split()
        with open(os.path.join(directory, "cgroup.subtree_control"), "w") as f:
            f.write(" ".join(f"+{c}" for c in wanted))
    except OSError:
        pass  # no controllers delegated here: the cgroup still groups processes


def _write_until(path: str, state: str, timeout: float = 5.0) -> None:
    """Write a v1 freezer state and wait until the kernel reports it (FREEZING passes)."""
    deadline = time.monotonic() + timeout
    while True:
        with open(path, "w") as f:
            f.write(state)
        with open(path) as f:
            if f.read().strip() == state or time.monotonic() > deadline:
                return
        time.sleep(0.005)
