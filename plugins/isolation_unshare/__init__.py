"""The ``unshare`` isolation: fork, namespaces, a cgroup, pivot_root, exec.

The container's first process is a direct child of the process that calls
``create`` (PID 1 of a new PID namespace, or a process of the one it joins),
with PDEATHSIG set so it dies with its creator, unless the ``die_with_creator``
option is off (a runtime whose ``create`` returns, as ``pinnace-runtime``'s
does). ``create`` returns once the container is built and waiting; ``start``
releases it through a fifo in the bundle (from any process); exec errors come
back over a close-on-exec pipe to the creator. The bundle keeps the first
process's PID and the cgroup path, so later calls from other processes find both.
"""

from __future__ import annotations

import contextlib
import gc
import os
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pinnace.plugin import (
    CommandNotExecutable,
    CommandNotFound,
    FailedPrecondition,
    Option,
    Plugin,
    hookimpl,
)

if TYPE_CHECKING:  # the spec's records, and the set-up in the child, are for create and exec
    from pinnace.plugin import ContainerSpec, ContainerState, Process


class _Child:
    """What the creating process keeps about a container it forked."""

    def __init__(self, pid: int, errors: int) -> None:
        self.pid = pid
        self.errors = errors
        self.exit_code: int | None = None


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    return b"".join(chunks)


def _report_and_exit(run: Any, err_w: int) -> None:
    """In a forked child: ``run`` (which execs on success); any failure is written
    to ``err_w`` as "CODE\\nmessage" for the parent, then the child exits."""
    from pinnace_plugins.isolation_unshare import child as _setup

    code = 1
    try:
        run()
    except _setup.ExecFailure as err:
        code = err.code
        os.write(err_w, f"{err.code}\n{err}".encode())
    except BaseException as err:  # report anything to the parent, then die
        with contextlib.suppress(BaseException):
            os.write(err_w, f"1\n{type(err).__name__}: {err}".encode())
    os._exit(code)


def _attach(cg: Any, pid: int, gate: int) -> str:
    """Move forked child ``pid`` into cgroup ``cg`` and open its gate; return why not, or ""."""
    try:
        cg.add(pid)
        os.write(gate, b"C")
        return ""
    except OSError as err:
        return f"cannot move the process into its cgroup: {err.strerror or err}"
    finally:
        os.close(gate)


def _fork_in_pid_namespace(spec: ContainerSpec) -> int:
    """Fork the container's first process into its PID namespace: a new one, the one of
    ``spec.namespace_paths["pid"]`` (another container's; this process's later children
    go to its own again), or none (the host's). 0 in the child, its PID in the parent."""
    from pinnace.plugin import linux

    if "pid" not in spec.namespaces:
        return os.fork()
    path = spec.namespace_paths.get("pid")
    if path is None:
        return linux.fork_in_new_pidns()
    own = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
    other = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        linux.setns(other, linux.CLONE_NEWPID)
        pid = os.fork()
        if pid:
            linux.setns(own, linux.CLONE_NEWPID)
        return pid
    finally:
        os.close(other)
        os.close(own)


def _raise_exec_error(report: str, what: str) -> None:
    """Turn a child's "CODE\\nmessage" report into the matching error."""
    code_text, _, message = report.partition("\n")
    if code_text == "127":
        raise CommandNotFound(message)
    if code_text == "126":
        raise CommandNotExecutable(message)
    raise FailedPrecondition(f"{what}: {message}")


def _user_namespace(spec: ContainerSpec) -> int:
    """A descriptor of a new user namespace with the spec's id maps."""
    from pinnace.plugin import userns

    try:
        return userns.open_namespace(userns.Mapping(tuple(spec.uid_map), tuple(spec.gid_map)))
    except OSError as err:
        raise FailedPrecondition(f"cannot create the container's user namespace: "
                                 f"{err.strerror or err}") from None


BUNDLE_FILES = ("start.fifo", "pid", "security.json", "cgroup", "host-mounts", "pidns")
"""What this plugin keeps in a container's bundle (``host-mounts``: the container has no
mount namespace of its own, and its rootfs is mounted in the creator's; ``pidns``: the
inode of the PID namespace it made, whose processes alone delete kills in a cgroup
another container may share)."""


def _remove_files(bundle: Path) -> None:
    """Unmount a rootfs left in this mount namespace, then remove the plugin's files."""
    if (bundle / "host-mounts").exists():
        from pinnace.plugin import linux

        rootfs = str(bundle / "rootfs")
        while linux.is_mountpoint(rootfs):  # each lazy unmount takes a mount and its tree
            linux.umount(rootfs, detach=True)
    for name in BUNDLE_FILES:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(bundle / name)


def _cgroup(container_id: str, bundle: Path) -> Any:
    """The container's cgroup: the path ``create`` kept in the bundle (``pinnace/<id>``
    for a container made before it was kept)."""
    from pinnace.plugin import cgroups

    try:
        return cgroups.Cgroup((bundle / "cgroup").read_text())
    except FileNotFoundError:
        return cgroups.container_cgroup(container_id)


class UnshareIsolation(Plugin):
    """Namespaces and cgroups by hand, through ctypes."""

    options = (
        Option("die_with_creator", True,
               "the container's first process is killed when the process that created it "
               "exits (off for a runtime whose create returns, such as pinnace-runtime)"),
    )

    def __init__(self, ctx: Any) -> None:
        super().__init__(ctx)
        self._children: dict[str, _Child] = {}

    @hookimpl
    def pinnace_isolation_create(self, spec: ContainerSpec, bundle: Path,
                                 stdio: tuple[int, int, int] | None = None) -> int:
        """Fork the container's first process, build its world, hold it before exec."""
        import json
        from dataclasses import asdict

        from pinnace.plugin import cgroups, limits

        fifo = str(bundle / "start.fifo")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(fifo)
        os.mkfifo(fifo, 0o600)
        cg = cgroups.create(spec.cgroup)
        try:  # limits and the device allowlist hold before anything runs in the cgroup
            limits.apply(cg, spec.resources)
        except BaseException:
            cg.remove()
            raise
        (bundle / "security.json").write_text(json.dumps(asdict(spec.security)))  # for exec
        (bundle / "cgroup").write_text(spec.cgroup)
        if "mount" not in spec.namespaces:
            (bundle / "host-mounts").write_text("")
        ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        gate_r, gate_w = os.pipe2(os.O_CLOEXEC)
        userns = None
        gc.freeze()  # keep the collector from touching (and copying) every page in the child
        try:
            if spec.uid_map:
                userns = _user_namespace(spec)
            pid = _fork_in_pid_namespace(spec)
            if pid == 0:
                gc.disable()
                os.close(gate_w)
                self._child(spec, str(bundle), gate_r, fifo, ready_w, err_w, stdio, userns,
                            self.opt("die_with_creator"))
        except BaseException:
            os.close(gate_w)
            cg.remove()
            _remove_files(bundle)
            raise
        finally:
            gc.unfreeze()
            if userns is not None:
                os.close(userns)
            os.close(ready_w)
            os.close(err_w)
            os.close(gate_r)
        unattached = _attach(cg, pid, gate_w)
        ready = os.read(ready_r, 32)
        os.close(ready_r)
        if ready[:1] != b"R":
            message = (_read_all(err_r).decode(errors="replace")
                       or (unattached and f"1\n{unattached}"))
            os.close(err_r)
            os.waitpid(pid, 0)
            cg.kill_all()
            cg.remove()
            _remove_files(bundle)
            _raise_exec_error(message or "1\nunknown error", "container setup failed")
        (bundle / "pid").write_text(str(pid))
        if "pid" in spec.namespaces and "pid" not in spec.namespace_paths:
            (bundle / "pidns").write_text(ready[1:].decode())
        self._children[spec.id] = _Child(pid, err_r)
        return pid

    @staticmethod
    def _child(spec: ContainerSpec, bundle: str, gate: int, fifo: str, ready_w: int,
               err_w: int, stdio: tuple[int, int, int] | None, userns: int | None,
               die_with_creator: bool) -> None:
        """The forked side: never returns. The set-up module is imported here, in the
        child (while the parent moves it into its cgroup): the other hooks need none of it."""
        from pinnace_plugins.isolation_unshare import child as _setup

        def run() -> None:
            # its PID namespace, sent with "ready": the parent may not look it up once the
            # process has changed its ids, and the container may have no /proc
            pidns = os.stat("/proc/self/ns/pid").st_ino
            _setup.redirect(stdio)
            start_fd = _setup.setup(spec, bundle, gate, fifo, userns, die_with_creator)
            os.write(ready_w, b"R%d" % pidns)
            os.close(ready_w)
            if os.read(start_fd, 1) != b"S":
                os._exit(1)
            _setup.execute(spec.process.args, spec.process.env)

        _report_and_exit(run, err_w)

    def _own_child(self, container_id: str) -> _Child:
        child = self._children.get(container_id)
        if child is None:
            raise FailedPrecondition(
                f"container {container_id[:12]} was not created by this process")
        return child

    @hookimpl
    def pinnace_isolation_start(self, container_id: str, bundle: Path) -> None:
        """Release the held process; in the process that created it, raise 126/127 errors
        when its exec fails (another process only releases it)."""
        fd = os.open(bundle / "start.fifo", os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            os.write(fd, b"S")
        finally:
            os.close(fd)
        child = self._children.get(container_id)
        if child is None:
            return
        report = _read_all(child.errors).decode(errors="replace")
        os.close(child.errors)
        child.errors = -1
        if report:
            from pinnace.runtime.watch import exit_code

            _, status = os.waitpid(child.pid, 0)
            child.exit_code = exit_code(status)
            _raise_exec_error(report, "container start failed")

    @hookimpl
    def pinnace_isolation_exec(self, container_id: str, bundle: Path, process: Process,
                               stdio: tuple[int, int, int] | None = None) -> int:
        """Fork into the container's namespaces and cgroup, exec ``process`` under the
        container's own security (capabilities, seccomp, no_new_privs)."""
        import json

        from pinnace.plugin import Security, linux

        pid = self._pid(container_id, bundle)
        if not pid or not os.path.exists(f"/proc/{pid}"):
            raise FailedPrecondition(f"container {container_id[:12]} is not running")
        fds = {ns: os.open(f"/proc/{pid}/ns/{ns}", os.O_RDONLY | os.O_CLOEXEC)
               for ns in ("pid", "net", "ipc", "uts", "cgroup", "mnt")}
        if os.stat(f"/proc/{pid}/ns/user").st_ino != os.stat("/proc/self/ns/user").st_ino:
            fds["user"] = os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
        if (bundle / "host-mounts").exists():
            fds["root"] = os.open(f"/proc/{pid}/root", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        gate_r, gate_w = os.pipe2(os.O_CLOEXEC)
        cg = _cgroup(container_id, bundle)
        saved = bundle / "security.json"  # absent for a container started by an older pinnace
        security = Security(**json.loads(saved.read_text())) if saved.exists() else Security()
        def fork() -> int:  # in a thread of its own: its PID namespace for children
            linux.setns(fds["pid"], linux.CLONE_NEWPID)  # changes, the process's does not
            pid = os.fork()
            if pid == 0:
                os.close(gate_w)
                self._exec_child(process, security, gate_r, fds, err_w, stdio)
            return pid

        try:
            child = linux.in_thread(fork, "pinnace-exec")
        except BaseException:
            os.close(gate_w)
            raise
        finally:
            for fd in (*fds.values(), err_w, gate_r):
                os.close(fd)
        unattached = _attach(cg, child, gate_w)
        report = _read_all(err_r).decode(errors="replace") or (unattached and f"1\n{unattached}")
        os.close(err_r)
        if report:
            os.waitpid(child, 0)
            _raise_exec_error(report, "exec failed")
        return child

    @staticmethod
    def _exec_child(process: Process, security: Any, gate: int, fds: dict[str, int],
                    err_w: int, stdio: tuple[int, int, int] | None) -> None:
        """The forked side of exec: never returns."""
        from pinnace_plugins.isolation_unshare import child as _setup

        def run() -> None:
            _setup.redirect(stdio)
            _setup.join(process, security, gate, fds)
            _setup.execute(process.args, process.env)

        _report_and_exit(run, err_w)

    @hookimpl
    def pinnace_isolation_pause(self, container_id: str, bundle: Path) -> None:
        """Freeze the container's cgroup."""
        _cgroup(container_id, bundle).freeze(True)

    @hookimpl
    def pinnace_isolation_resume(self, container_id: str, bundle: Path) -> None:
        """Thaw the container's cgroup."""
        _cgroup(container_id, bundle).freeze(False)

    @hookimpl
    def pinnace_isolation_wait(self, container_id: str, bundle: Path) -> int:
        """waitpid on the first process; 128+N when killed by signal N."""
        from pinnace.runtime.watch import exit_code

        child = self._own_child(container_id)
        if child.exit_code is None:
            _, status = os.waitpid(child.pid, 0)
            child.exit_code = exit_code(status)
        return child.exit_code

    def _pid(self, container_id: str, bundle: Path) -> int:
        child = self._children.get(container_id)
        if child is not None:
            return child.pid
        try:
            return int((bundle / "pid").read_text())
        except (OSError, ValueError):
            return 0

    @hookimpl
    def pinnace_isolation_kill(self, container_id: str, bundle: Path, signal: int) -> None:
        """Signal the first process; nothing happens when it is gone."""
        pid = self._pid(container_id, bundle)
        child = self._children.get(container_id)
        if pid and (child is None or child.exit_code is None):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal)

    @hookimpl
    def pinnace_isolation_state(self, container_id: str, bundle: Path) -> ContainerState:
        """created (held before exec), running, or stopped."""
        from pinnace.plugin import ContainerState, Status

        pid = self._pid(container_id, bundle)
        if not pid or not os.path.exists(f"/proc/{pid}"):
            return ContainerState(Status.STOPPED)
        try:
            exe = os.readlink(f"/proc/{pid}/exe")
        except OSError:
            return ContainerState(Status.STOPPED)
        held = os.path.exists(bundle / "start.fifo") and "python" in os.path.basename(exe)
        return ContainerState(Status.CREATED if held else Status.RUNNING, pid)

    @hookimpl
    def pinnace_isolation_delete(self, container_id: str, bundle: Path) -> None:
        """Kill what is left of the container in its cgroup (the processes of the PID
        namespace it made, or everything), reap our child, remove the cgroup unless another
        container's processes are in it; idempotent."""
        from pinnace.plugin import cgroups

        cg = _cgroup(container_id, bundle)
        try:
            namespace = int((bundle / "pidns").read_text())
        except (OSError, ValueError):
            namespace = 0
        cg.kill_all(pid_namespace=namespace)
        if not cgroups.hierarchies():  # no cgroup (rootless): its PID 1 takes the rest along
            pid = self._pid(container_id, bundle)
            if pid and container_id not in self._children:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        child = self._children.pop(container_id, None)
        if child is not None:
            if child.errors >= 0:
                os.close(child.errors)
            if child.exit_code is None:
                with contextlib.suppress(ChildProcessError):  # the caller reaped it already
                    if os.waitpid(child.pid, os.WNOHANG) == (0, 0):  # still ours, still there
                        os.kill(child.pid, signal.SIGKILL)
                        os.waitpid(child.pid, 0)
        if not (namespace and cg.pids()):  # else shared: the last container removes it
            cg.remove()
        _remove_files(bundle)

    @hookimpl
    def pinnace_info(self) -> dict[str, Any]:
        """The cgroup version in use and the hierarchies a container joins."""
        from pinnace.plugin import cgroups

        return {"isolation.unshare": {"cgroup_version": cgroups.version(),
                                      "hierarchies": len(cgroups.hierarchies())}}

    @hookimpl
    def pinnace_doctor(self) -> list[dict[str, str]]:
        """Namespaces and cgroups this plugin needs."""
        from pinnace.plugin import cgroups

        checks = []
        have = set(os.listdir("/proc/self/ns"))
        missing = {"pid", "mnt", "uts", "ipc", "net", "cgroup"} - have
        checks.append({"check": "kernel namespaces (pid mnt uts ipc net cgroup)",
                       "ok": "no" if missing else "yes",
                       "detail": (f"missing: {' '.join(sorted(missing))}" if missing
                                  else "all present"),
                       "fix": "use a kernel built with CONFIG_*_NS for the missing namespaces"})
        from pinnace.plugin import rootless

        if rootless.active():  # delegated cgroups are the rootless checks' business
            return checks
        points = cgroups.hierarchies()
        writable = [p for p in points if os.access(p, os.W_OK)]
        checks.append({"check": "cgroups mounted and writable",
                       "ok": "yes" if writable else "no",
                       "detail": f"{cgroups.version()}, {len(writable)}/{len(points)} writable",
                       "fix": "mount cgroup2 on /sys/fs/cgroup (or v1 hierarchies) read-write"})
        fast = cgroups.fast_moves()
        target = next((p for p in points if p in ("/sys/fs/cgroup/unified", "/sys/fs/cgroup")),
                      "/sys/fs/cgroup")
        checks.append({"check": "fast cgroup moves (favordynmods)",
                       "ok": "yes" if fast else "warn",
                       "detail": "a cgroup hierarchy is mounted with favordynmods" if fast else
                                 "each container start and exec waits for an RCU grace period "
                                 "(10-20 ms) to move its process into the cgroup",
                       "fix": f"mount -o remount,favordynmods {target} (fork and exit pay a "
                              "little more; recent kernels keep it on until reboot)"})
        return checks
