"""What runs in the container's first process between fork and exec.

Order (as runc does it): die with the parent, own session, join the network
namespace, new mount/uts/ipc namespaces (or join those ``namespace_paths`` name;
one left out of ``namespaces`` is the host's: without a mount namespace the rootfs is
mounted in the creator's and entered with chroot, and delete unmounts it), mount the
rootfs and the API filesystems, wait until the parent has moved this process into the container's
cgroup, a new cgroup namespace, pivot_root, devices, sysctls, masked and
read-only paths, resource limits, drop to
the user with the container's capabilities and seccomp filter
(:mod:`pinnace.runtime.security`), wait for ``start``, exec.

The parent moves the child into its cgroup while the child builds its mounts:
on cgroup v1 the first move waits for an RCU grace period (10-20 ms), about as
long as the rest of the set-up, so the two overlap instead of adding up.

Before pivot_root, the container's files are seen from the host's root, where an
image's symlink (``/etc/hosts -> /etc/shadow``, ``/proc -> ../../../x``) would lead
out of the rootfs. So no mount target is a path joined to the rootfs: each is looked
up (or made) with :mod:`pinnace.rootfs` relative to a descriptor of the root, its
symlinks resolved inside it, and the mount goes onto ``/proc/self/fd/N`` of that
descriptor (as runc mounts through its procfd). After pivot_root the root is the
container's own, and paths are plain paths again.
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
from pinnace.plugin import rootfs as in_root  # a name of its own: "rootfs" is the path below

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


def setup(spec: ContainerSpec, bundle: str, gate: int, fifo: str,
          userns: int | None = None, die_with_creator: bool = True) -> int:
    """Build the container around this process; return the fd of the start fifo.

    With ``userns`` (a user namespace's descriptor, for a spec with id maps) the rootfs
    (unless ``spec.idmapped_rootfs`` is off) and the ``idmap`` mount points are mounted
    idmapped through it, and the process
    enters it last, after every mount: its other namespaces stay the host root's, so
    container root holds no capability over its mounts, hostname or network. Without
    ``die_with_creator`` the container outlives the process that created it."""
    if die_with_creator:
        linux.set_pdeathsig(signal.SIGKILL)
    os.setsid()
    lockdown = Lockdown(spec.security)
    # what runs after pivot_root is imported now: the host's Python is out of reach then
    if spec.devices:
        from pinnace.plugin import devices
    if spec.sysctl:
        from pinnace.plugin import sysctls
    if spec.process.rlimits:
        from pinnace.plugin import ulimits
    if spec.netns:
        fd = os.open(spec.netns, os.O_RDONLY | os.O_CLOEXEC)
        linux.setns(fd, linux.CLONE_NEWNET)
        os.close(fd)
    else:
        linux.unshare(linux.CLONE_NEWNET)
    flags = 0
    for ns in sorted(spec.namespaces, key=lambda n: n == "mount"):  # the mount one last:
        if ns in spec.namespace_paths and ns != "pid":  # it changes what the paths lead to
            fd = os.open(spec.namespace_paths[ns], os.O_RDONLY | os.O_CLOEXEC)
            linux.setns(fd, linux.NAMESPACE_FLAGS[ns])
            os.close(fd)
        elif ns not in ("pid", "cgroup"):
            flags |= linux.NAMESPACE_FLAGS[ns]
    linux.unshare(flags)
    own_mounts = "mount" in spec.namespaces
    slave = spec.rootfs_propagation in ("slave", "rslave")  # the host's mounts come in
    if own_mounts:
        linux.mount("none", "/", None,
                    linux.MS_REC | (linux.MS_SLAVE if slave else linux.MS_PRIVATE))
    rootfs = os.path.join(bundle, "rootfs")
    os.makedirs(rootfs, exist_ok=True)
    mount_all(spec.rootfs, rootfs)
    linux.mount(rootfs, rootfs, None, linux.MS_BIND | linux.MS_REC)
    root = os.open(rootfs, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)  # the bind mount's
    try:
        _api_filesystems(root, spec)
        _spec_mounts(spec, root, userns)
        if userns is not None:
            os.close(in_root.mkdir_in(root, spec.process.cwd or "/", owner=_made_by(spec)))
    finally:
        os.close(root)
    if userns is not None and spec.idmapped_rootfs:
        # the whole tree again, its top idmapped: made above by host root, now container root's
        linux.bind_idmapped(rootfs, rootfs, userns, recursive=True)
    if spec.hostname and "uts" in spec.namespaces and "uts" not in spec.namespace_paths:
        linux.sethostname(spec.hostname)
    start_fd = os.open(fifo, os.O_RDWR | os.O_CLOEXEC)
    terminal = _connect_console(spec.process)
    await_cgroup(gate)
    if "cgroup" in spec.namespaces:  # its root is the cgroup this process is in now
        linux.unshare(linux.CLONE_NEWCGROUP)
    os.chdir(rootfs)
    if own_mounts:
        linux.pivot_root(".", ".")
        linux.umount(".", detach=True)
    else:  # the creator's mount namespace, whose root stays everyone else's
        os.chroot(".")
    os.chdir("/")
    if spec.rootfs_propagation and not slave:  # in a peer group of the container's own
        linux.mount("", "/", None, linux.PROPAGATION[spec.rootfs_propagation])
    if userns is None:
        os.makedirs(spec.process.cwd or "/", exist_ok=True)  # -w of a missing directory
    if spec.devices:
        devices.make(spec.devices)
    if spec.readonly_rootfs:
        linux.mount("", "/", None, linux.MS_BIND | linux.MS_REMOUNT | linux.MS_RDONLY)
    if spec.sysctl:  # before restrict_paths makes /proc/sys read-only
        sysctls.apply(spec.sysctl)
    restrict_paths(spec.security)
    if spec.process.rlimits:  # while raising a hard limit is still allowed
        ulimits.apply(spec.process.rlimits)
    if userns is not None:
        linux.setns(userns, linux.CLONE_NEWUSER)
        os.close(userns)
    if terminal is not None:
        _make_console(terminal, spec.process)
    _become(spec.process, lockdown)
    return start_fd


def join(process: Process, sec: Security, gate: int, fds: dict[str, int]) -> None:
    """Move this process into a running container: every namespace (the mount
    namespace after the others: it changes the root; the user namespace, when the
    container has one, last: the others belong to host root), a session, then, once the
    parent has moved it into the container's cgroup, the process's user."""
    lockdown = Lockdown(sec)
    for ns in ("net", "ipc", "uts", "cgroup"):
        linux.setns(fds[ns], 0)
    terminal = _connect_console(process)
    linux.setns(fds["mnt"], linux.CLONE_NEWNS)
    if "root" in fds:  # a container without a mount namespace: its root is a chroot
        os.fchdir(fds["root"])
        os.chroot(".")
    if "user" in fds:
        linux.setns(fds["user"], linux.CLONE_NEWUSER)
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
    (:meth:`pinnace.runtime.security.Lockdown.apply`); enter its working directory; set
    its umask."""
    lockdown.apply(process.user)
    os.chdir(process.cwd or "/")
    if process.umask is not None:
        os.umask(process.umask)


def _fd_path(fd: int) -> str:
    """The path that leads a mount(2) call to the entry open on ``fd``, and only there."""
    return f"/proc/self/fd/{fd}"


def _spec_mounts(spec: ContainerSpec, root: int, userns: int | None) -> None:
    """Mount ``spec.mounts`` on the rootfs open as ``root``; a destination (symlinks on the
    way too) resolves inside it and is made there when missing: a directory, or an empty
    file for a bind mount of a file. A bind with the ``idmap`` option is idmapped through
    ``userns`` (without a user namespace the option means nothing)."""
    for m in spec.mounts:
        directory = m.type != "bind" or os.path.isdir(m.source)
        readonly_bind = m.type == "bind" and "ro" in m.options
        idmapped = m.type == "bind" and "idmap" in m.options and userns is not None
        propagation = 0 if m.type == "bind" else next(
            (linux.PROPAGATION[o] for o in reversed(m.options) if o in linux.PROPAGATION), 0)
        options = [o for o in m.options if o != "idmap" and not (readonly_bind and o == "ro")
                   and not (propagation and o in linux.PROPAGATION)]
        try:
            target = (in_root.mkdir_in if directory else in_root.create_in)(
                root, m.destination, owner=_made_by(spec))
        except OSError as err:
            raise OSError(err.errno, f"mount destination {m.destination} in the container: "
                                     f"{err.strerror}") from None
        try:
            if idmapped:
                linux.bind_idmapped(m.source, _fd_path(target), userns,  # type: ignore[arg-type]
                                    recursive="rbind" in options)
            else:
                linux.mount_described(m.type, m.source, _fd_path(target), options)
        finally:
            os.close(target)
        if readonly_bind or propagation:  # a fresh lookup reaches the new mount, not what
            mounted = in_root.open_in(root, m.destination, os.O_PATH)  # it covers
            try:
                if readonly_bind:
                    linux.remount_bind(_fd_path(mounted),
                                       [o for o in m.options if o != "idmap"])
                if propagation:
                    linux.mount("", _fd_path(mounted), None, propagation)
            finally:
                os.close(mounted)


def _made_by(spec: ContainerSpec) -> tuple[int, int] | None:
    """Who owns what is made in a shifted rootfs (container root's host ids: its files
    are stored so), or None (an idmapped rootfs stores root's files as root's)."""
    if not spec.rootfs_shifted:
        return None
    from pinnace.plugin import userns

    return userns.host_id(spec.uid_map, 0), userns.host_id(spec.gid_map, 0)


def _api_dir(parent: int, name: str) -> int:
    """An ``O_PATH`` descriptor of the directory ``name`` of ``parent`` (not followed);
    anything else there (a symlink, a file) is replaced by an empty directory."""
    try:
        st = os.stat(name, dir_fd=parent, follow_symlinks=False)
    except FileNotFoundError:
        st = None
    if st is not None and not stat.S_ISDIR(st.st_mode):
        os.unlink(name, dir_fd=parent)
        st = None
    if st is None:
        os.mkdir(name, 0o755, dir_fd=parent)
    return os.open(name, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                   dir_fd=parent)


def _mount_api(parent: int, name: str, source: str, fstype: str, flags: int,
               data: str | None = None) -> None:
    """Mount a fresh ``fstype`` on the directory ``name`` of ``parent`` (see :func:`_api_dir`)."""
    fd = _api_dir(parent, name)
    try:
        linux.mount(source, _fd_path(fd), fstype, flags, data)
    finally:
        os.close(fd)


def _api_filesystems(root: int, spec: ContainerSpec) -> None:
    """/proc, a minimal /dev (``/dev/shm`` of ``spec.shm_size`` bytes), read-only /sys, as
    docker sets them up, on real directories of the rootfs open as ``root``; /dev
    belongs to container root (the host id it is)."""
    from pinnace.plugin import userns

    host_id = userns.host_id
    owner = (f",uid={host_id(spec.uid_map, 0)},gid={host_id(spec.gid_map, 0)}"
             if spec.uid_map else "")
    _mount_api(root, "proc", "proc", "proc", NOSUID_NODEV_NOEXEC)
    _mount_api(root, "dev", "tmpfs", "tmpfs", linux.MS_NOSUID | linux.MS_STRICTATIME,
               "mode=755,size=65536k" + owner)
    dev = os.open("dev", os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                  dir_fd=root)  # looked up again: the tmpfs just mounted, not what it covers
    try:
        if os.fstat(dev).st_dev == os.fstat(root).st_dev:
            raise OSError(errno.EBUSY, "/dev of the container was replaced while mounting")
        _populate_dev(dev, host_id(spec.gid_map, 5) if spec.gid_map else 5, owner,
                      spec.shm_size)
    finally:
        os.close(dev)
    _mount_api(root, "sys", "sysfs", "sysfs", NOSUID_NODEV_NOEXEC | linux.MS_RDONLY)


def _bind_device(dev: int, name: str) -> None:
    """/dev/``name`` of the host bound on an empty file ``name`` of ``dev``."""
    os.close(os.open(name, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_CLOEXEC, 0o666,
                     dir_fd=dev))
    fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dev)
    try:
        linux.mount(f"/dev/{name}", _fd_path(fd), None, linux.MS_BIND)
    finally:
        os.close(fd)


def _populate_dev(dev: int, tty_gid: int, owner: str, shm_size: int) -> None:
    """Device nodes, pts/shm/mqueue and the usual symlinks in the fresh tmpfs ``dev``:
    ptys of group ``tty_gid``, /dev/shm of ``shm_size`` bytes with the tmpfs ``owner``
    options."""
    old = os.umask(0)
    try:
        for name in DEVICES:
            st = os.stat(f"/dev/{name}")
            try:
                os.mknod(name, stat.S_IFCHR | 0o666, st.st_rdev, dir_fd=dev)
            except PermissionError:  # a user namespace's root: the host's node, bound
                _bind_device(dev, name)
        for sub, mode in (("pts", 0o755), ("shm", 0o1777), ("mqueue", 0o755)):
            os.mkdir(sub, mode, dir_fd=dev)
    finally:
        os.umask(old)
    pts = "newinstance,ptmxmode=0666,mode=0620"
    try:
        _mount_api(dev, "pts", "devpts", "devpts", linux.MS_NOSUID | linux.MS_NOEXEC,
                   f"{pts},gid={tty_gid}")
    except OSError as err:  # the tty group is not mapped (a rootless pinnace with one id)
        if err.errno != errno.EINVAL:
            raise
        _mount_api(dev, "pts", "devpts", "devpts", linux.MS_NOSUID | linux.MS_NOEXEC, pts)
    _mount_api(dev, "shm", "shm", "tmpfs", NOSUID_NODEV_NOEXEC,
               f"mode=1777,size={shm_size}{owner}")
    _mount_api(dev, "mqueue", "mqueue", "mqueue", NOSUID_NODEV_NOEXEC)
    for link, target in (("ptmx", "pts/ptmx"), ("fd", "/proc/self/fd"),
                         ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
                         ("stderr", "/proc/self/fd/2")):
        os.symlink(target, link, dir_fd=dev)


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
