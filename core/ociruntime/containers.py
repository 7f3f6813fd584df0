"""The runtime's containers: state directories under the root and the lifecycle
operations over the isolation plugin (create, start, state, kill, delete, exec,
pause, resume, update)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pinnace.errors import AlreadyExists, FailedPrecondition, InvalidConfig, NotFound

VALID_ID = re.compile(r"^[\w+\-.]+$")
DEFAULT_ISOLATION = "unshare"


@dataclass
class Record:
    """What ``state.json`` keeps about one container."""

    id: str
    bundle: str
    rootfs: str
    created: str
    cgroup: str
    annotations: dict[str, str] = field(default_factory=dict)
    hooks: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    isolation: str = DEFAULT_ISOLATION


class Runtime:
    """The containers under one ``--root`` and the isolation plugin that runs them."""

    def __init__(self, root: str, isolation: str = DEFAULT_ISOLATION) -> None:
        self.root = Path(root)
        self.isolation = isolation
        self._plugin: Any = None

    # ------------------------------------------------------------------ records
    def directory(self, container_id: str) -> Path:
        """The state (and plugin bundle) directory of ``container_id``."""
        if not VALID_ID.match(container_id):
            raise InvalidConfig(f"invalid container id {container_id!r}")
        return self.root / container_id

    def record(self, container_id: str) -> Record:
        """The record of an existing container; NotFound otherwise."""
        try:
            data = json.loads((self.directory(container_id) / "state.json").read_text())
        except FileNotFoundError:
            raise NotFound(f"container {container_id} does not exist") from None
        return Record(**data)

    def ids(self) -> list[str]:
        """Every container under the root."""
        try:
            return sorted(n for n in os.listdir(self.root)
                          if os.path.exists(self.root / n / "state.json"))
        except FileNotFoundError:
            return []

    # ------------------------------------------------------------------ plugin
    def plugin(self) -> Any:
        """The isolation plugin, loaded from its entry point on first use; a plugin that
        can outlive its creator is told to (``create`` returns before ``start``)."""
        if self._plugin is None:
            from pinnace.plugin import PluginContext

            cls = _load_entry_point("pinnace.isolation", self.isolation)
            declared = {o.name for o in getattr(cls, "options", ())}
            options = {"die_with_creator": False} if "die_with_creator" in declared else {}
            self._plugin = cls(PluginContext.for_plugin(
                cls, self.isolation, "isolation", options, run_dir=self.root))
        return self._plugin

    # ------------------------------------------------------------------ state
    def status(self, rec: Record) -> tuple[str, int]:
        """The OCI status (created, running, paused, stopped) and the first process's PID."""
        from pinnace.runtime.cgroups import Cgroup

        state = self.plugin().pinnace_isolation_state(container_id=rec.id,
                                                      bundle=self.directory(rec.id))
        status = str(state.status)
        if status == "stopped":
            return status, 0
        if status == "running" and Cgroup(rec.cgroup).frozen():
            status = "paused"
        return status, state.pid

    def state(self, container_id: str) -> dict[str, Any]:
        """The OCI state of a container, with runc's extra fields."""
        rec = self.record(container_id)
        status, pid = self.status(rec)
        return {"ociVersion": "1.0.2", "id": rec.id, "pid": pid, "status": status,
                "bundle": rec.bundle, "rootfs": rec.rootfs, "created": rec.created,
                "owner": "", "annotations": rec.annotations}

    def _hooks(self, rec: Record, kind: str, **state: Any) -> None:
        """Run the ``kind`` hooks with the container's state (``state`` overriding it)."""
        items = rec.hooks.get(kind)
        if items:
            from pinnace.ociruntime.hooks import run_hooks
            from pinnace.runtime.oci import Hook

            run_hooks(kind, [Hook(**h) for h in items], {**self.state(rec.id), **state})

    # ------------------------------------------------------------------ lifecycle
    def create(self, container_id: str, bundle: str, console_socket: str = "",
               pid_file: str = "") -> int:
        """Build the container from ``bundle`` with its process held before exec; run the
        prestart, createRuntime and createContainer hooks. On failure nothing is left."""
        from pinnace.runtime.oci import bundle_spec

        if not os.path.isabs(bundle):
            raise InvalidConfig(f"--bundle must be an absolute path, not {bundle!r}")
        try:
            config = json.loads(Path(bundle, "config.json").read_text())
        except FileNotFoundError:
            raise NotFound(f"{bundle}/config.json does not exist") from None
        except ValueError as err:
            raise InvalidConfig(f"{bundle}/config.json is not JSON: {err}") from None
        found = bundle_spec(container_id, bundle, config)
        if not os.path.isdir(found.rootfs):
            raise NotFound(f"rootfs {found.rootfs} does not exist")
        spec = found.spec
        if spec.process.terminal:
            if not console_socket:
                raise InvalidConfig("process.terminal needs --console-socket")
            spec.process.console_socket = os.path.abspath(console_socket)
        directory = self.directory(container_id)
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            directory.mkdir(mode=0o700)
        except FileExistsError:
            raise AlreadyExists(f"container with id {container_id} exists") from None
        rec = Record(container_id, bundle, found.rootfs, _now(), spec.cgroup,
                     spec.annotations, {k: [asdict(h) for h in v] for k, v in found.hooks.items()},
                     self.isolation)
        try:
            (directory / "state.json").write_text(json.dumps(asdict(rec)))
            pid = self.plugin().pinnace_isolation_create(spec=spec, bundle=directory, stdio=None)
            if found.oom_score_adj is not None:
                Path(f"/proc/{pid}/oom_score_adj").write_text(str(found.oom_score_adj))
            _check_command(pid, spec.process.args[0], spec.process.env)
            for kind in ("prestart", "createRuntime", "createContainer"):
                self._hooks(rec, kind)
            if pid_file:
                write_pid_file(pid_file, pid)
        except BaseException:
            self._remove(rec)
            raise
        return pid

    def start(self, container_id: str) -> None:
        """Release a created container's process; run startContainer before and the
        poststart hooks after it (with the state start made: running, the process's PID,
        even when it has exited already)."""
        rec = self.record(container_id)
        status, pid = self.status(rec)
        if status != "created":
            raise FailedPrecondition(f"cannot start a container that is {status}")
        self._hooks(rec, "startContainer")
        self.plugin().pinnace_isolation_start(container_id=rec.id,
                                              bundle=self.directory(rec.id))
        deadline = time.monotonic() + 5
        while self.status(rec)[0] == "created" and time.monotonic() < deadline:
            time.sleep(0.001)  # until it has exec'd (or exited): start is synchronous
        self._hooks(rec, "poststart", status="running", pid=pid)

    def wait(self, container_id: str) -> int:
        """The exit code of a container this process created (``run``)."""
        return self.plugin().pinnace_isolation_wait(
            container_id=container_id, bundle=self.directory(container_id))

    def kill(self, container_id: str, signal: int, every: bool = False) -> None:
        """Signal the first process, or with ``every`` each process of the container."""
        rec = self.record(container_id)
        status, _ = self.status(rec)
        if status == "stopped":
            raise FailedPrecondition("container not running")
        if every:
            from pinnace.runtime.cgroups import Cgroup

            for pid in Cgroup(rec.cgroup).pids():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal)
            return
        self.plugin().pinnace_isolation_kill(container_id=rec.id,
                                             bundle=self.directory(rec.id), signal=signal)

    def delete(self, container_id: str, force: bool = False) -> None:
        """Remove a stopped container (``force``: any container, killing it); run the
        poststop hooks. A missing container with ``force`` is not an error."""
        try:
            rec = self.record(container_id)
        except NotFound:
            if force:
                return
            raise
        status, _ = self.status(rec)
        if status != "stopped" and not force:
            raise FailedPrecondition(f"cannot delete container {container_id} that is not "
                                     f"stopped: {status}")
        self._remove(rec)
        self._hooks_after(rec)

    def _hooks_after(self, rec: Record) -> None:
        items = rec.hooks.get("poststop")
        if items:
            from pinnace.ociruntime.hooks import run_hooks
            from pinnace.runtime.oci import Hook

            state = {"ociVersion": "1.0.2", "id": rec.id, "status": "stopped", "pid": 0,
                     "bundle": rec.bundle, "annotations": rec.annotations}
            with contextlib.suppress(FailedPrecondition):  # poststop failures only warn
                run_hooks("poststop", [Hook(**h) for h in items], state)

    def _remove(self, rec: Record) -> None:
        """Everything of the container: its processes, cgroup and state directory."""
        from pinnace.files import remove_tree

        directory = self.directory(rec.id)
        self.plugin().pinnace_isolation_delete(container_id=rec.id, bundle=directory)
        remove_tree(directory)

    def exec(self, container_id: str, process: Any, console_socket: str = "") -> int:
        """Start ``process`` in the running container; return its PID (a child of this process)."""
        rec = self.record(container_id)
        status, _ = self.status(rec)
        if status not in ("running", "created"):
            raise FailedPrecondition(f"cannot exec in a {status} container")
        if process.terminal:
            if not console_socket:
                raise InvalidConfig("a terminal needs --console-socket")
            process.console_socket = os.path.abspath(console_socket)
        return self.plugin().pinnace_isolation_exec(
            container_id=rec.id, bundle=self.directory(rec.id), process=process, stdio=None)

    def pause(self, container_id: str, frozen: bool) -> None:
        """Freeze (or thaw) every process of a running container."""
        rec = self.record(container_id)
        status, _ = self.status(rec)
        if status not in (("running",) if frozen else ("paused",)):
            raise FailedPrecondition(f"container {container_id} is {status}")
        directory = self.directory(rec.id)
        if frozen:
            self.plugin().pinnace_isolation_pause(container_id=rec.id, bundle=directory)
        else:
            self.plugin().pinnace_isolation_resume(container_id=rec.id, bundle=directory)

    def pids(self, container_id: str) -> list[int]:
        """Host PIDs of every process of the container."""
        from pinnace.runtime.cgroups import Cgroup

        return sorted(Cgroup(self.record(container_id).cgroup).pids())

    def update(self, container_id: str, resources: dict[str, Any]) -> None:
        """Apply OCI ``linux.resources`` to the container's cgroup."""
        from pinnace.runtime import limits
        from pinnace.runtime.cgroups import Cgroup
        from pinnace.runtime.oci import resources_from_json

        rec = self.record(container_id)
        limits.apply(Cgroup(rec.cgroup), resources_from_json(resources))


def _load_entry_point(group: str, name: str) -> Any:
    """The object entry point ``name`` of ``group`` names, found in the installed
    distributions' ``entry_points.txt`` (importlib.metadata, or configparser and glob,
    cost more than the rest of a runtime command)."""
    import importlib

    for directory in sys.path:
        try:
            entries = sorted(e for e in os.listdir(directory or ".") if e.endswith(".dist-info"))
        except OSError:
            continue
        for entry in entries:
            try:
                with open(os.path.join(directory or ".", entry, "entry_points.txt")) as f:
                    target = _entry_point(f.read(), group, name)
            except OSError:
                continue
            if target:
                module, _, attr = target.partition(":")
                obj = importlib.import_module(module.strip())
                for part in attr.strip().split("."):
                    obj = getattr(obj, part)
                return obj
    raise NotFound(f"isolation plugin {name!r} is not installed")


def _entry_point(text: str, group: str, name: str) -> str:
    """``module:attr`` of entry point ``name`` in section ``[group]`` of an
    ``entry_points.txt`` (an INI file of ``name = module:attr`` lines), or ""."""
    section = ""
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("["):
            section = line.strip("[]").strip()
        elif section == group and "=" in line:
            key, _, value = line.partition("=")
            if key.strip() == name:
                return value.strip()
    return ""


def _now() -> str:
    import datetime

    return datetime.datetime.now(datetime.UTC).isoformat().replace("+00:00", "Z")


def _check_command(pid: int, name: str, env: list[str]) -> None:
    """Refuse a command the held process could not exec, seen through its root (as runc
    checks at create)."""
    from pinnace.errors import CommandNotFound

    root = f"/proc/{pid}/root"
    if "/" in name:
        if not os.path.lexists(root + name if name.startswith("/") else root):
            raise CommandNotFound(f'exec: "{name}": no such file or directory')
        return
    path = next((e[5:] for e in env if e.startswith("PATH=")),
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
    if not any(os.path.lexists(os.path.join(root + d, name)) for d in path.split(":") if d):
        raise CommandNotFound(f'exec: "{name}": executable file not found in $PATH')


def write_pid_file(path: str, pid: int) -> None:
    """Write ``pid`` to ``path`` atomically (a reader never sees it half-written)."""
    tmp = f"{path}.{os.getpid()}.tmp"
    Path(tmp).write_text(str(pid))
    os.rename(tmp, path)
