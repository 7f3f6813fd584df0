"""The ``oci`` isolation: pinnace containers run by an OCI runtime binary (runc, youki, ...).

``create`` performs the storage plugin's mounts on ``rootfs`` in the bundle,
writes ``config.json`` there (``config_from_spec``: the mapping ``pinnace-runtime``
reads back) and runs the runtime's ``create``, which holds the container's process
before exec until ``start``. The runtime forks that process as its own child; when
``create`` exits it is reparented to the caller, which pinnace has made a child
subreaper, so the caller can ``waitpid`` it. ``exec`` runs ``exec --detach``
for the same reason. The runtime keeps its state under ``<run dir>/<its name>``
(``--root``).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pinnace.plugin import (
    CommandNotExecutable,
    CommandNotFound,
    ContainerSpec,
    ContainerState,
    FailedPrecondition,
    Option,
    Plugin,
    Process,
    Security,
    Status,
    Unavailable,
    hookimpl,
)

EXEC_ERROR = re.compile(r'exec: "[^"]*": (.*)$')
NOT_FOUND = ("executable file not found", "no such file or directory")
GONE = ("container does not exist", "container not running", "process already finished")
STATES = {"created": Status.CREATED, "running": Status.RUNNING, "paused": Status.RUNNING,
          "stopped": Status.STOPPED}


HYBRID_REFUSERS = ("crun",)
"""Runtimes that refuse a hybrid cgroup host (v1 controllers beside a unified mount)."""


class OciIsolation(Plugin):
    """Containers made, started, signalled, frozen and deleted by an OCI runtime."""

    options = (Option("runtime", "runc",
                      "the OCI runtime binary (runc, youki, ...: a name on PATH or a path)"),)
    runtime_option = "runtime"
    """The option naming the binary (a subclass may declare its own)."""

    def __init__(self, ctx: Any) -> None:
        super().__init__(ctx)
        self._exits: dict[str, int | None] = {}
        """Containers this instance created: their exit code once reaped."""

    @property
    def runtime(self) -> str:
        """The runtime binary, as configured."""
        return str(self.ctx.options.get(self.runtime_option, "runc"))

    def _check_host(self) -> None:
        """A clear error for a runtime known not to work on this host's cgroups."""
        from pinnace.plugin import cgroups

        name = os.path.basename(self.runtime)
        if name in HYBRID_REFUSERS and cgroups.version() == "v1" \
                and os.path.isdir(f"{cgroups.CGROUP_ROOT}/unified"):
            raise Unavailable(f"{name} refuses this host's hybrid cgroups (v1 with a unified "
                              f"mount); choose runc or youki with [isolation.{self.ctx.name}] "
                              f"{self.runtime_option}")

    # --------------------------------------------------------- running the runtime
    def _call(self, *args: str, stdio: tuple[int, int, int] | None | bool = False,
              pass_fds: tuple[int, ...] = ()) -> subprocess.CompletedProcess[str]:
        """Run ``RUNTIME --root ... ARGS``; raise the error it reports. ``stdio`` (fds, or None
        for the caller's) is passed through to the container; otherwise output is captured."""
        import tempfile

        self.ctx.run_dir.mkdir(parents=True, exist_ok=True)
        fd, log = tempfile.mkstemp(prefix=".oci-log-", dir=self.ctx.run_dir)
        os.close(fd)
        runtime = self.runtime
        argv = [runtime, "--root", str(self.ctx.run_dir / os.path.basename(runtime)),
                "--log", log, "--log-format", "json", *args]
        if stdio is False:
            streams: dict[str, Any] = {"capture_output": True}
        else:
            fds = stdio or (None, None, None)
            streams = {"stdin": fds[0], "stdout": fds[1], "stderr": fds[2]}
        try:
            proc = subprocess.run(argv, text=True, pass_fds=pass_fds, **streams)
            if proc.returncode != 0:
                _raise(os.path.basename(runtime), args[0],
                       _message(Path(log), proc.stderr or ""))
        except FileNotFoundError:
            raise Unavailable(f"OCI runtime {runtime} not found: install it (apt-get install "
                              f"runc) or name another with [isolation.{self.ctx.name}] "
                              f"{self.runtime_option}") from None
        finally:
            os.unlink(log)
        return proc

    # ------------------------------------------------------------------ hooks
    @hookimpl
    def pinnace_isolation_create(self, spec: ContainerSpec, bundle: Path,
                                 stdio: tuple[int, int, int] | None = None) -> int:
        """Mount the rootfs in the bundle, write config.json, the runtime's ``create``."""
        from pinnace.plugin import cgroups, config_from_spec, mount_all

        self._check_host()
        config = config_from_spec(spec)  # refuses what cannot be mapped before anything is made
        rootfs = bundle / "rootfs"
        rootfs.mkdir(exist_ok=True)
        (bundle / "config.json").write_text(json.dumps(config))
        args = ["create", "--bundle", str(bundle), "--pid-file", str(bundle / "pid")]
        try:
            if config["linux"].get("cgroupsPath"):  # made here, so a parent that another
                # container's teardown removes meanwhile is made again (a runtime fails)
                cgroups.create(config["linux"]["cgroupsPath"].lstrip("/"))
            mount_all(spec.rootfs, rootfs)
            with _console(spec.process) as (console, fds):
                self._call(*args, *console, spec.id,
                           stdio=False if spec.process.terminal else stdio, pass_fds=fds)
        except BaseException:
            self._release(spec.id, bundle)
            raise
        self._exits[spec.id] = None
        return int((bundle / "pid").read_text())

    @hookimpl
    def pinnace_isolation_start(self, container_id: str, bundle: Path) -> None:
        """The runtime's ``start``: the held process execs."""
        self._call("start", container_id)

    @hookimpl
    def pinnace_isolation_wait(self, container_id: str, bundle: Path) -> int:
        """waitpid on the first process (our child since ``create`` exited)."""
        if container_id not in self._exits:
            raise FailedPrecondition(
                f"container {container_id[:12]} was not created by this process")
        code = self._exits[container_id]
        if code is None:
            _, status = os.waitpid(int((bundle / "pid").read_text()), 0)
            code = self._exits[container_id] = (
                os.waitstatus_to_exitcode(status) if os.WIFEXITED(status)
                else 128 + os.WTERMSIG(status))
        return code

    @hookimpl
    def pinnace_isolation_kill(self, container_id: str, bundle: Path, signal: int) -> None:
        """The runtime's ``kill``; nothing happens when the process is gone."""
        if self._exits.get(container_id) is not None:
            return
        with contextlib.suppress(_Gone):
            self._call("kill", container_id, str(signal))

    @hookimpl
    def pinnace_isolation_state(self, container_id: str, bundle: Path) -> ContainerState:
        """The runtime's ``state``: created, running (paused counts), or stopped."""
        try:
            out = self._call("state", container_id).stdout
        except _Gone:
            return ContainerState(Status.STOPPED)
        state = json.loads(out)
        status = STATES[state["status"]]
        return ContainerState(status, 0 if status is Status.STOPPED else state["pid"])

    @hookimpl
    def pinnace_isolation_exec(self, container_id: str, bundle: Path, process: Process,
                               stdio: tuple[int, int, int] | None = None) -> int:
        """``exec --detach`` with the container's capabilities. The caller is made a child
        subreaper first, so the process is reparented to it when the runtime exits."""
        from pinnace.plugin import linux, process_config

        linux.set_child_subreaper()

        config = json.loads((bundle / "config.json").read_text())
        caps = config["process"]["capabilities"]["bounding"]
        security = Security(capabilities=caps,
                            no_new_privileges=config["process"]["noNewPrivileges"])
        tag = os.urandom(6).hex()
        spec_file, pid_file = bundle / f"exec-{tag}.json", bundle / f"exec-{tag}.pid"
        spec_file.write_text(json.dumps(process_config(process, security)))
        args = ["exec", "--detach", "--pid-file", str(pid_file), "--process", str(spec_file)]
        try:
            with _console(process) as (console, fds):
                self._call(*args, *console, container_id,
                           stdio=False if process.terminal else stdio, pass_fds=fds)
            return int(pid_file.read_text())
        finally:
            for path in (spec_file, pid_file):
                path.unlink(missing_ok=True)

    @hookimpl
    def pinnace_isolation_pause(self, container_id: str, bundle: Path) -> None:
        """The runtime's ``pause``: the cgroup freezer."""
        self._call("pause", container_id)

    @hookimpl
    def pinnace_isolation_resume(self, container_id: str, bundle: Path) -> None:
        """The runtime's ``resume``."""
        self._call("resume", container_id)

    @hookimpl
    def pinnace_isolation_delete(self, container_id: str, bundle: Path) -> None:
        """``delete --force``, reap our child, unmount the rootfs; idempotent."""
        self._release(container_id, bundle)

    def _release(self, container_id: str, bundle: Path) -> None:
        """Everything ``create`` made, whatever state it got to."""
        from pinnace.plugin import cgroups, unmount_all

        with contextlib.suppress(_Gone, Unavailable):  # no runtime binary: nothing it made
            self._call("delete", "--force", container_id)
        if container_id in self._exits and self._exits.pop(container_id) is None:
            with contextlib.suppress(ChildProcessError, FileNotFoundError):  # reaped already
                os.waitpid(int((bundle / "pid").read_text()), 0)
        config = bundle / "config.json"
        path = json.loads(config.read_text())["linux"].get("cgroupsPath") \
            if config.exists() else None
        if path:  # runtimes leave the empty parents of the container's cgroup
            cgroups.Cgroup(path.lstrip("/")).remove()
        unmount_all(bundle / "rootfs")
        for name in ("rootfs", "config.json", "pid"):
            path = bundle / name
            with contextlib.suppress(FileNotFoundError):
                path.rmdir() if name == "rootfs" else path.unlink()

    @hookimpl
    def pinnace_doctor(self) -> list[dict[str, str]]:
        """Whether the runtime binary runs, and on this host's cgroups."""
        runtime = self.runtime
        try:
            self._check_host()
            out = subprocess.run([runtime, "--version"], capture_output=True, text=True).stdout
            detail, ok = out.splitlines()[0] if out else f"{runtime} printed nothing", bool(out)
        except OSError as err:
            detail, ok = f"{runtime}: {err.strerror}", False
        except Unavailable as err:
            detail, ok = str(err), False
        return [{"check": "OCI runtime binary", "ok": "yes" if ok else "no", "detail": detail,
                 "fix": f"apt-get install runc, or set [isolation.{self.ctx.name}] "
                        f"{self.runtime_option} = PATH"}]


@contextlib.contextmanager
def _console(process: Process) -> Iterator[tuple[list[str], tuple[int, ...]]]:
    """The runtime's ``--console-socket`` arguments for a terminal, and the descriptors it
    must inherit: a path too long for a unix socket address is reached through /proc/self/fd
    of its directory (as pinnace's own sockets are)."""
    path = process.console_socket
    if not process.terminal:
        yield [], ()
    elif len(os.fsencode(path)) <= 100:
        yield ["--console-socket", path], ()
    else:
        fd = os.open(os.path.dirname(path), os.O_PATH | os.O_CLOEXEC)
        try:
            yield ["--console-socket", f"/proc/self/fd/{fd}/{os.path.basename(path)}"], (fd,)
        finally:
            os.close(fd)


class _Gone(FailedPrecondition):
    """The runtime says the container, or its process, is not there."""


def _message(log: Path, stderr: str) -> str:
    """The runtime's last error, from its JSON log, else from its stderr."""
    errors = []
    with contextlib.suppress(FileNotFoundError):
        for line in log.read_text().splitlines():
            with contextlib.suppress(ValueError):
                entry = json.loads(line)
                if entry.get("level") in ("error", "fatal"):
                    errors.append(entry.get("msg", ""))
    text = errors[-1] if errors else stderr.strip().splitlines()[-1] if stderr.strip() else ""
    return " ".join(text.split()) or "no message"


def _raise(runtime: str, verb: str, message: str) -> None:
    """The pinnace error for the runtime's ``message``: 127/126 when the command cannot be
    executed, _Gone when the container or process is not there, else FailedPrecondition."""
    found = EXEC_ERROR.search(message)
    if found and verb in ("create", "start", "exec"):
        reason = found.group(1)
        if any(text in reason for text in NOT_FOUND):
            raise CommandNotFound(found.group(0))
        raise CommandNotExecutable(found.group(0))
    if any(text in message for text in GONE):
        raise _Gone(f"{runtime} {verb}: {message}")
    prefix = f"{runtime} {verb} failed: "
    raise FailedPrecondition(message if message.startswith(prefix) else prefix + message)
