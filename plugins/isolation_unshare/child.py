"""What runs in the container's first process between fork and exec.

Order (as runc does it): die with the parent, own session, join the network
namespace, new mount/uts/ipc namespaces, mount the rootfs and the API
filesystems, wait until the parent has moved this process into the container's
cgroup, a new cgroup namespace, pivot_root, masked and read-only paths, drop to
the user with the container's capabilities and seccomp filter
(:mod:`pinnace.runtime.security`), wait for ``start``, exec.

The parent moves the child into its cgroup while the child builds its mounts:
on cgroup v1 the first move waits for an RCU grace period (10-20 ms), about as
long as the rest of the set-up, so the two overlap instead of adding up.
"""

from __future__ import annotations

import errno
import os
import signal
import stat

from pinnace.plugin import (
    ContainerSpec,
    Lockdown,
    Process,
    Security,
    linux,
    mount_all,
    restrict_paths,
)

DEVICES = ("null", "zero", "full", "random", "urandom", "tty")
NOSUID_NODEV_NOEXEC = linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC


class ExecFailure(Exception):
    """The command could not be executed: ``code`` is 126 or 127."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def redirect(stdio: tuple[int, int, int] | None) -> None:
    """Make ``stdio`` this process's stdin, stdout and stderr (None: keep them)."""
    if stdio is None:
        return
    for target, fd in enumerate(stdio):
        if fd != target:
            os.dup2(fd, target)


def await_cgroup(gate: int) -> None:
    """Block until the parent has moved this process into the container's cgroup
    (it writes one byte to ``gate``); leave quietly when it could not."""
    if os.read(gate, 1) != b"C":
        os._exit(1)
    os.close(gate)


def setup(spec: ContainerSpec, bundle: str, gate: int, fifo: str) -> int:
    """Build the container around this process; return the fd of the start fifo."""
    linux.set_pdeathsig(signal.SIGKILL)
    os.setsid()
    lockdown = Lockdown(spec.security)
    if spec.netns:
        fd = os.open(spec.netns, os.O_RDONLY | os.O_CLOEXEC)
        linux.setns(fd, linux.CLONE_NEWNET)
        os.close(fd)
    else:
        linux.unshare(linux.CLONE_NEWNET)
    flags = 0
    for ns in spec.namespaces:
        if ns not in ("pid", "cgroup"):
            flags |= linux.NAMESPACE_FLAGS[ns]
    linux.unshare(flags)
    linux.mount("none", "/", None, linux.MS_REC | linux.MS_PRIVATE)
    rootfs = os.path.join(bundle, "rootfs")
    os.makedirs(rootfs, exist_ok=True)
    mount_all(spec.rootfs, rootfs)
    linux.mount(rootfs, rootfs, None, linux.MS_BIND | linux.MS_REC)
    _api_filesystems(rootfs)
    if spec.hostname:
        linux.sethostname(spec.hostname)
    _spec_mounts(spec, rootfs)
    start_fd = os.open(fifo, os.O_RDWR | os.O_CLOEXEC)
    terminal = _connect_console(spec.process)
    await_cgroup(gate)
    if "cgroup" in spec.namespaces:  # its root is the cgroup this process is in now
        linux.unshare(linux.CLONE_NEWCGROUP)
    os.chdir(rootfs)
    linux.pivot_root(".", ".")
    linux.umount(".", detach=True)
    os.chdir("/")
    if terminal is not None:
        _make_console(terminal, spec.process)
    os.makedirs(spec.process.cwd or "/", exist_ok=True)  # -w of a missing directory
    if spec.readonly_rootfs:
        linux.mount("", "/", None, linux.MS_BIND | linux.MS_REMOUNT | linux.MS_RDONLY)
    restrict_paths(spec.security)
    _become(spec.process, lockdown)
    return start_fd


def join(process: Process, sec: Security, gate: int, fds: dict[str, int]) -> None:
    """Move this process into a running container: every namespace (the mount
    namespace last: it changes the root), a session, then, once the parent has
    moved it into the container's cgroup, the process's user."""
    lockdown = Lockdown(sec)
    for ns in ("net", "ipc", "uts", "cgroup"):
        linux.setns(fds[ns], 0)
    terminal = _connect_console(process)
    linux.setns(fds["mnt"], linux.CLONE_NEWNS)
    os.setsid()
    if terminal is not None:
        _make_console(terminal, process)
    await_cgroup(gate)
    _become(process, lockdown)


def _connect_console(process: Process) -> object | None:
    """With a terminal: connect to the console socket while its path is still visible."""
    if not process.terminal:
        return None
    from pinnace.runtime import console

    return console.connect(process.console_socket)


def _make_console(sock: object, process: Process) -> None:
    from pinnace.runtime import console

    console.make_console(sock, process.user.uid, process.user.gid)  # type: ignore[arg-type]


def _become(process: Process, lockdown: Lockdown) -> None:
    """Drop to the process's user, groups, capabilities and seccomp filter
    (:meth:`pinnace.runtime.security.Lockdown.apply`); enter its working directory."""
    lockdown.apply(process.user)
    os.chdir(process.cwd or "/")


def _in_root(rootfs: str, path: str) -> str:
    """``path`` inside ``rootfs`` with symlinks resolved as if ``rootfs`` were ``/``."""
    parts = [p for p in path.split("/") if p]
    done: list[str] = []
    for _ in range(256):
        if not parts:
            return os.path.join(rootfs, *done)
        part = parts.pop(0)
        if part == "..":
            done = done[:-1]
            continue
        full = os.path.join(rootfs, *done, part)
        if os.path.islink(full):
            target = os.readlink(full)
            parts = [p for p in target.split("/") if p] + parts
            if target.startswith("/"):
                done = []
        elif part != ".":
            done.append(part)
    raise OSError(errno.ELOOP, f"too many symlinks in {path}")


def _spec_mounts(spec: ContainerSpec, rootfs: str) -> None:
    """Mount ``spec.mounts`` on the rootfs; destinations resolve inside it (symlinks too)."""
    for m in spec.mounts:
        target = _in_root(rootfs, m.destination)
        if m.type != "bind" or os.path.isdir(m.source):
            os.makedirs(target, exist_ok=True)
        elif not os.path.exists(target):
            os.makedirs(os.path.dirname(target), exist_ok=True)
            os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644))
        linux.mount_described(m.type, m.source, target, m.options)


def _mkdir(path: str, mode: int = 0o755) -> None:
    if not os.path.isdir(path):
        if os.path.lexists(path):
            os.unlink(path)
        os.makedirs(path, mode)


def _api_filesystems(rootfs: str) -> None:
    """/proc, a minimal /dev, read-only /sys, as docker sets them up."""
    proc, dev, sys_ = (os.path.join(rootfs, p) for p in ("proc", "dev", "sys"))
    _mkdir(proc)
    linux.mount("proc", proc, "proc", NOSUID_NODEV_NOEXEC)
    _mkdir(dev)
    linux.mount("tmpfs", dev, "tmpfs", linux.MS_NOSUID | linux.MS_STRICTATIME,
                "mode=755,size=65536k")
    old = os.umask(0)
    try:
        for name in DEVICES:
            st = os.stat(f"/dev/{name}")
            os.mknod(os.path.join(dev, name), stat.S_IFCHR | 0o666, st.st_rdev)
        for sub, mode in (("pts", 0o755), ("shm", 0o1777), ("mqueue", 0o755)):
            os.mkdir(os.path.join(dev, sub), mode)
    finally:
        os.umask(old)
    linux.mount("devpts", os.path.join(dev, "pts"), "devpts", linux.MS_NOSUID | linux.MS_NOEXEC,
                "newinstance,ptmxmode=0666,mode=0620,gid=5")
    linux.mount("shm", os.path.join(dev, "shm"), "tmpfs", NOSUID_NODEV_NOEXEC,
                "mode=1777,size=65536k")
    linux.mount("mqueue", os.path.join(dev, "mqueue"), "mqueue", NOSUID_NODEV_NOEXEC)
    for link, target in (("ptmx", "pts/ptmx"), ("fd", "/proc/self/fd"),
                         ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
                         ("stderr", "/proc/self/fd/2")):
        os.symlink(target, os.path.join(dev, link))
    _mkdir(sys_)
    linux.mount("sysfs", sys_, "sysfs", NOSUID_NODEV_NOEXEC | linux.MS_RDONLY)


def execute(args: list[str], env: list[str]) -> None:
    """exec the command, resolving it through the container's PATH; raise ExecFailure."""
    environ = dict(e.split("=", 1) if "=" in e else (e, "") for e in env)
    name = args[0]
    if "/" in name:
        candidates = [name]
    else:
        path = environ.get("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
        candidates = [os.path.join(d or ".", name) for d in path.split(":")]
        candidates = [c for c in candidates if os.path.isfile(c) and os.access(c, os.X_OK)]
        if not candidates:
            raise ExecFailure(127, f'exec: "{name}": executable file not found in $PATH')
    try:
        os.execve(candidates[0], args, environ)
    except OSError as err:
        code = 127 if err.errno in (errno.ENOENT, errno.ENOTDIR) else 126
        raise ExecFailure(code, f'exec: "{name}": {os.strerror(err.errno).lower()}') from None
