"""The engine: config + state + image store + plugins, the one object the CLI calls.

Every step of ``create``/``start`` that touches the system has an undo, run
in reverse when a later step fails, so a failure leaves no snapshot, netns,
cgroup or half-written row behind. The plugin that made a thing owns it: each
container row records its storage, network and isolation plugin names and
later calls on it go to those plugins, whatever is selected now.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from pinnace import names
from pinnace.config import Config
from pinnace.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidConfig,
    NotFound,
    PinnaceError,
)
from pinnace.files import remove_tree

if TYPE_CHECKING:
    from pinnace.images.store import Image, ImageStore
    from pinnace.plugins import Plugins
    from pinnace.runtime.spec import ContainerSpec, Process
    from pinnace.state import State


ACTIVE = ("starting", "running", "paused")
"""Statuses of a container that has a monitor (and, but for ``starting``, a process)."""


@dataclass
class RunOptions:
    """What ``pinnace run`` asks for, before defaults from the image and config apply."""

    image: str
    command: list[str] = field(default_factory=list)
    entrypoint: str | None = None
    name: str | None = None
    env: list[str] = field(default_factory=list)
    workdir: str | None = None
    user: str | None = None
    hostname: str | None = None
    storage: str | None = None
    network: str | None = None
    isolation: str | None = None
    read_only: bool = False
    networks: list[str] = field(default_factory=list)
    ports: list[str] = field(default_factory=list)
    publish_all: bool = False
    ip: str | None = None
    dns: list[str] = field(default_factory=list)
    add_hosts: list[str] = field(default_factory=list)
    tty: bool = False
    interactive: bool = False
    restart: str = "no"
    log_opts: list[str] = field(default_factory=list)
    auto_remove: bool = False
    privileged: bool = False
    cap_add: list[str] = field(default_factory=list)
    cap_drop: list[str] = field(default_factory=list)
    security_opt: list[str] = field(default_factory=list)
    memory: str | None = None
    memory_swap: str | None = None
    cpus: float | None = None
    cpu_shares: int | None = None
    cpuset_cpus: str | None = None
    pids_limit: int | None = None


@dataclass
class Container:
    """A container row as commands show it; ``status`` is reconciled with the host."""

    id: str
    name: str
    image: str
    image_id: str
    command: list[str]
    status: str
    exit_code: int | None
    created: float
    started: float | None
    finished: float | None
    pid: int
    storage: str
    network: str
    isolation: str

    @property
    def short_id(self) -> str:
        """The first 12 hex digits, as docker shows them."""
        return self.id[:12]


class Engine:
    """One pinnace invocation's view of the host: lazily opened state, store and plugins."""

    def __init__(self, config: Config, trace: TextIO | None = None) -> None:
        self.config = config
        self._trace = trace

    # ------------------------------------------------------------ components
    @cached_property
    def state(self) -> State:
        """The SQLite state under the root (opened on first use)."""
        from pinnace.state import State

        return State(self.config.root / "state.db")

    @cached_property
    def images(self) -> ImageStore:
        """The OCI image store under the root."""
        from pinnace.images.store import ImageStore

        return ImageStore(self.config.root / "images", self.state)

    @cached_property
    def plugins(self) -> Plugins:
        """The plugin manager (imports pluggy; commands that only read state never touch it)."""
        from pinnace.plugins import Plugins

        return Plugins(self.config, trace=self._trace)

    def reopen(self) -> None:
        """After fork: stop using the parent's state connection (SQLite ones must not
        cross a fork); the next use opens a new one. The old one is kept, never closed."""
        self._forked_away = (self.__dict__.pop("state", None), self.__dict__.pop("images", None))

    def selected(self, role: str, override: str | None = None) -> str:
        """The plugin name for ``role``: the flag if given, else env, config file, default."""
        return override or self.config.selected(role).value

    # ------------------------------------------------------------ images
    def image_for_run(self, ref: str) -> Image:
        """The image ``ref`` names, fetched through its transport when the store lacks
        it and it names a transport or a registry (as ``docker run`` pulls)."""
        try:
            return self.images.resolve(ref)
        except (NotFound, InvalidConfig):  # TRANSPORT:rest is no valid local name
            from pinnace.images import sources

            if not sources.has_transport(ref, self):
                raise
        return self.images.resolve(sources.fetch(self, ref, sources.TransferOptions()))

    # ------------------------------------------------------------ containers
    def create(self, opts: RunOptions) -> str:
        """Create a container (row, rootfs, spec) and return its ID; nothing runs yet."""
        from pinnace import networking

        storage = self.selected("storage", opts.storage)
        isolation = self.selected("isolation", opts.isolation)
        image = self.image_for_run(opts.image)
        for role, name in (("storage", storage), ("isolation", isolation)):
            self.plugins.load(role, name)
        network, net = networking.run_options(self, opts, image.config.get("config") or {})
        if opts.name is not None:
            names.validate(opts.name)
        from pinnace.runtime.policy import parse_log_opts, parse_restart

        run = {"tty": opts.tty, "interactive": opts.interactive, "auto_remove": opts.auto_remove,
               "restart": parse_restart(opts.restart), "log": parse_log_opts(opts.log_opts)}
        if opts.auto_remove and run["restart"]["name"] != "no":
            raise InvalidConfig("conflicting options: --restart and --rm")
        cid = names.new_id()
        command = _command(opts, image.config.get("config") or {})
        row = {
            "id": cid, "name": opts.name or "", "image_id": image.id, "image_ref": opts.image,
            "storage": storage, "network": network, "isolation": isolation,
        }
        self._insert(row, opts.name is None)
        undo: list[Callable[[], None]] = [lambda: self._delete_row(cid)]
        try:
            parent = self._ensure_layers(image, storage)
            undo.append(lambda: self._remove_snapshot(storage, cid))
            mounts = self.plugins.call(
                "storage", storage, "prepare", key=cid, parent=parent,
                labels={"pinnace.container": cid},
            )
            spec = self._spec(cid, opts, image, command, mounts)
            with self.state.tx() as db:
                db.execute(
                    "UPDATE containers SET spec = ? WHERE id = ?",
                    (json.dumps({"command": command, "runtime": asdict(spec), "run": run,
                                 "net": net}), cid),
                )
        except BaseException:
            _run_undos(undo)
            raise
        self.state.event("container", "create", cid, image=opts.image)
        self.plugins.broadcast("pinnace_container_created", container=self._row_dict(cid))
        return cid

    def _insert(self, row: dict[str, Any], random_name: bool) -> None:
        for attempt in range(20):
            if random_name:
                row["name"] = (names.random_name() if attempt < 10
                               else f"{names.random_name()}_{attempt}")
            try:
                with self.state.tx() as db:
                    db.execute(
                        "INSERT INTO containers (id, name, image_id, image_ref, storage, network,"
                        " isolation, status, created, spec) VALUES (?,?,?,?,?,?,?,?,?,?)",
                        (row["id"], row["name"], row["image_id"], row["image_ref"], row["storage"],
                         row["network"], row["isolation"], "created", time.time(), "{}"),
                    )
                return
            except sqlite3.IntegrityError:
                if not random_name:
                    other = self.state.one("SELECT id FROM containers WHERE name = ?", row["name"])
                    raise AlreadyExists(
                        f'the container name "{row["name"]}" is already in use by container '
                        f'{other["id"][:12] if other else "?"}; remove it or pick another name'
                    ) from None
        raise AlreadyExists("could not find a free random container name; pass --name")

    def _delete_row(self, cid: str) -> None:
        with self.state.tx() as db:
            db.execute("DELETE FROM containers WHERE id = ?", (cid,))

    def _spec(self, cid: str, opts: RunOptions, image: Image, command: list[str],
              mounts: list) -> ContainerSpec:
        from pinnace.mounts import mounted
        from pinnace.runtime import cgroups, limits, security, users
        from pinnace.runtime.spec import DEFAULT_PATH, ContainerSpec, Process

        cfg = image.config.get("config") or {}
        env = _merge_env(cfg.get("Env") or [f"PATH={DEFAULT_PATH}"], opts.env)
        user_spec = opts.user if opts.user is not None else (cfg.get("User") or "")
        with mounted(mounts, scratch=self.config.run_root) as rootfs:
            user = users.resolve(rootfs, user_spec)
        if not any(e.startswith("HOME=") for e in env):
            env.append(f"HOME={user.home_dir}")
        return ContainerSpec(
            id=cid,
            process=Process(args=command, env=env, cwd=opts.workdir or cfg.get("WorkingDir") or "/",
                            user=user.user, terminal=opts.tty),
            rootfs=list(mounts),
            hostname=opts.hostname or cid[:12],
            cgroup=cgroups.container_cgroup(cid).path,
            readonly_rootfs=opts.read_only,
            security=security.policy(opts.privileged, opts.cap_add, opts.cap_drop,
                                     opts.security_opt),
            resources=limits.resources(opts.memory, opts.memory_swap, opts.cpus, opts.cpu_shares,
                                       opts.cpuset_cpus, opts.pids_limit, opts.privileged),
        )

    def _ensure_layers(self, image: Image, storage: str) -> str | None:
        """Unpack the image's layers into committed snapshots of ``storage`` (once each)."""
        parent = None
        missing = [
            layer for layer in image.layers
            if self.state.one("SELECT 1 FROM snapshots WHERE chain_id = ? AND storage = ?",
                              layer.chain_id, storage) is None
        ]
        if missing:
            with self._lock(f"unpack-{storage}"):
                self._unpack(image, storage)
        if image.layers:
            parent = image.layers[-1].chain_id
        return parent

    def _unpack(self, image: Image, storage: str) -> None:
        from pinnace.errors import NotFound as _NotFound
        from pinnace.images.unpack import apply_layer
        from pinnace.mounts import mounted

        for info in self.plugins.call("storage", storage, "walk"):
            if info.key.startswith("extract-"):  # left by a pinnace killed mid-unpack
                with contextlib.suppress(_NotFound):
                    self.plugins.call("storage", storage, "remove", key=info.key)
        parent = None
        for layer in image.layers:
            done = self.state.one("SELECT 1 FROM snapshots WHERE chain_id = ? AND storage = ?",
                                  layer.chain_id, storage)
            if done is None:
                key = f"extract-{os.getpid()}-{layer.chain_id}"
                labels = {"pinnace.layer": layer.diff_id}
                try:
                    mounts = self.plugins.call("storage", storage, "prepare", key=key,
                                               parent=parent, labels=labels)
                    with mounted(mounts, scratch=self.config.run_root) as target, \
                            self.images.layer_stream(layer) as stream:
                        apply_layer(stream, target)
                    self.plugins.call("storage", storage, "commit", name=layer.chain_id,
                                      key=key, labels=labels)
                except BaseException:
                    with contextlib.suppress(PinnaceError):
                        self._remove_snapshot(storage, key)
                        self._remove_snapshot(storage, layer.chain_id)  # committed, unrecorded
                    raise
                with self.state.tx() as db:
                    db.execute(
                        "INSERT OR REPLACE INTO snapshots (chain_id, storage, parent, created)"
                        " VALUES (?,?,?,?)", (layer.chain_id, storage, parent, time.time()))
            parent = layer.chain_id

    def _remove_snapshot(self, storage: str, key: str) -> None:
        """Remove snapshot ``key`` of ``storage`` if it exists (an undo: it may not)."""
        with contextlib.suppress(NotFound):
            self.plugins.call("storage", storage, "remove", key=key)

    @contextlib.contextmanager
    def _lock(self, name: str) -> Iterator[None]:
        import fcntl

        path = self.config.root / "locks" / f"{name}.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            yield

    def bundle(self, cid: str) -> Path:
        """The container's private runtime directory."""
        return self.config.run_root / "containers" / cid

    def netns_path(self, cid: str) -> Path:
        """Where the container's network namespace is bind-mounted."""
        return self.config.run_root / "netns" / cid

    def log_path(self, cid: str) -> Path:
        """The container's json-file log (kept with its state, not in the run dir)."""
        return self.config.root / "containers" / cid / "json.log"

    def start(self, cid: str, stdio: tuple[int, int, int] | None = None,
              console_socket: str = "") -> int:
        """Set up the network, create the container and start its process; return its PID.

        The calling process becomes the container's monitor: it is recorded
        in the state, made a child subreaper, and must wait for the container
        and call :meth:`finish`. On failure everything set up here is undone
        and the container is marked exited (127/126 when the command cannot
        be executed).
        """
        from pinnace import linux, networking
        from pinnace.runtime.proc import start_time

        row = self._row(cid)
        with self.state.tx() as db:
            claimed = db.execute(
                "UPDATE containers SET status = 'starting', monitor_pid = ?, monitor_start = ?,"
                " stop_requested = 0 WHERE id = ? AND status NOT IN (?, ?, ?)",
                (os.getpid(), start_time(os.getpid()), cid, *ACTIVE)).rowcount
        if not claimed:
            raise FailedPrecondition(f"container {_label(row)} is already {row['status']}")
        spec = _spec_from_json(json.loads(row["spec"])["runtime"])
        spec.process.console_socket = console_socket
        linux.set_child_subreaper()
        bundle = self.bundle(cid)
        bundle.mkdir(parents=True, exist_ok=True)
        undo: list[Callable[[], None]] = [lambda: remove_tree(bundle)]
        try:
            result = networking.setup(self, row, spec, bundle, undo)
            self.plugins.broadcast("pinnace_prepare_spec", spec=spec)
            pid = self.plugins.call("isolation", row["isolation"], "create", spec=spec,
                                    bundle=bundle, stdio=stdio)
            undo.append(lambda: self.plugins.call("isolation", row["isolation"], "delete",
                                                  container_id=cid, bundle=bundle))
            with self.state.tx() as db:
                db.execute(
                    "UPDATE containers SET status = 'running', pid = ?, pid_start = ?,"
                    " started = ?, finished = NULL, exit_code = NULL, network_result = ?"
                    " WHERE id = ?",
                    (pid, start_time(pid), time.time(), json.dumps(result.to_dict()), cid),
                )
            self.plugins.call("isolation", row["isolation"], "start", container_id=cid,
                              bundle=bundle)
        except BaseException as err:
            _run_undos(undo)
            code = getattr(err, "exit_code", 125) if isinstance(err, PinnaceError) else 125
            self._record_exit(cid, code)
            raise
        self.state.event("container", "start", cid)
        self.plugins.broadcast("pinnace_container_started", container=self._row_dict(cid), pid=pid)
        return pid

    def wait(self, cid: str) -> int:
        """Wait for a container this process started, tear its runtime down, return its
        exit code."""
        row = self._row(cid)
        code = None
        try:
            code = self.plugins.call("isolation", row["isolation"], "wait", container_id=cid,
                                     bundle=self.bundle(cid))
        finally:  # a failed wait still ends the monitoring: the teardown kills what is left
            self.finish(cid, code)
        return code

    def finish(self, cid: str, code: int | None) -> bool:
        """Record the exit of a container this process monitored and release its runtime.

        Returns True when its restart policy asks for another start. ``code``
        is None when it is unknown.
        """
        from pinnace.runtime import cgroups, limits
        from pinnace.runtime.policy import should_restart

        try:
            row = self._row(cid)
        except NotFound:  # removed meanwhile (rm -f)
            return False
        oom = limits.oom_killed(cgroups.container_cgroup(cid))  # before teardown removes it
        failure: Exception | None = None
        try:
            self._teardown(row)
        except Exception as err:  # raised once --rm has had its go (which tears down again)
            failure = err
        self._record_exit(cid, code, oom_killed=oom)
        self.state.event("container", "die", cid, exit_code=code)
        self.plugins.broadcast("pinnace_container_exited", container=self._row_dict(cid),
                                exit_code=code)
        run = json.loads(row["spec"]).get("run", {})
        policy = run.get("restart", {"name": "no", "max": 0})
        again = should_restart(policy, code, row["restart_count"], bool(row["stop_requested"]))
        if again:
            with self.state.tx() as db:
                db.execute("UPDATE containers SET restart_count = restart_count + 1 WHERE id = ?",
                           (cid,))
        elif run.get("auto_remove"):
            self.remove(cid, force=True)
        if failure is not None:
            raise failure
        return again

    def kill(self, cid: str, signal: int, by_user: bool = False) -> None:
        """Send ``signal`` to the container's first process. ``by_user`` with
        SIGKILL, SIGTERM or SIGINT counts as a stop: no restart follows."""
        import signal as signals

        row = self._current(cid)
        if row["status"] not in ("running", "paused"):
            raise FailedPrecondition(f"container {_label(row)} is not running")
        if by_user and signal in (signals.SIGKILL, signals.SIGTERM, signals.SIGINT):
            self._set(cid, stop_requested=1)
        self.plugins.call("isolation", row["isolation"], "kill", container_id=cid,
                          bundle=self.bundle(cid), signal=signal)
        if row["status"] == "paused" and signal == signals.SIGKILL:
            self.plugins.call("isolation", row["isolation"], "resume", container_id=cid,
                              bundle=self.bundle(cid))

    def stop(self, cid: str, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout`` seconds; return once it has exited.

        A stopped container is not restarted by its policy; stopping one
        that is not running is not an error (as with docker).
        """
        import signal

        row = self._current(cid)
        self._set(cid, stop_requested=1)  # also stops a restart that is waiting to happen
        if row["status"] not in ACTIVE:
            return
        if row["status"] == "paused":
            self.unpause(cid)
        for sig, limit in ((signal.SIGTERM, timeout), (signal.SIGKILL, 30.0)):
            if limit > 0:
                with contextlib.suppress(FailedPrecondition):
                    self.kill(cid, sig)
                if self.wait_exit(cid, limit) is not None:
                    return
        raise FailedPrecondition(f"container {_label(row)} did not stop after SIGKILL")

    def wait_exit(self, cid: str, timeout: float | None = None) -> int | None:
        """Block until the container is no longer running; return its exit code
        (-1 when unknown), or None on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            row = self._current(cid)
            if row["status"] not in ACTIVE:
                return -1 if row["exit_code"] is None else row["exit_code"]
            if deadline is not None and time.monotonic() >= deadline:
                return None
            time.sleep(0.02)

    def pause(self, cid: str) -> None:
        """Freeze every process of a running container."""
        self._freeze(cid, "running", "pause", "paused")

    def unpause(self, cid: str) -> None:
        """Thaw a paused container."""
        self._freeze(cid, "paused", "resume", "running")

    def _freeze(self, cid: str, before: str, verb: str, after: str) -> None:
        row = self._current(cid)
        if row["status"] != before:
            raise FailedPrecondition(f"container {_label(row)} is not {before}")
        self.plugins.call("isolation", row["isolation"], verb, container_id=cid,
                          bundle=self.bundle(cid))
        self._set(cid, status=after)
        self.state.event("container", "pause" if verb == "pause" else "unpause", cid)

    def rename(self, cid: str, new_name: str) -> None:
        """Give the container another name (refused when taken)."""
        names.validate(new_name)
        try:
            self._set(cid, name=new_name)
        except sqlite3.IntegrityError:
            raise AlreadyExists(f'the container name "{new_name}" is already in use') from None
        self.state.event("container", "rename", cid, name=new_name)

    def prune(self) -> list[str]:
        """Remove every container that is not running; return their IDs."""
        gone = []
        for c in self.containers(all_=True):
            if c.status in ("exited", "created"):
                with contextlib.suppress(NotFound):
                    gone.append(self.remove(c.id))
        return gone

    def exec_process(self, cid: str, args: list[str], env: list[str], workdir: str | None,
                     user: str | None, tty: bool) -> Process:
        """The process ``exec`` runs: the container's env and user unless overridden."""
        from pinnace.runtime.spec import Process

        row = self._current(cid)
        if row["status"] != "running":
            raise FailedPrecondition(
                f"container {_label(row)} is {row['status']}: exec needs a running container")
        if not args:
            raise InvalidConfig("exec needs a command")
        base = _spec_from_json(json.loads(row["spec"])["runtime"]).process
        who = base.user
        if user:
            from pinnace.runtime import users

            who = users.resolve(Path(f"/proc/{row['pid']}/root"), user).user
        return Process(args=args, env=_merge_env(base.env, env), cwd=workdir or base.cwd,
                       user=who, terminal=tty)

    def exec(self, cid: str, process: Process, stdio: tuple[int, int, int] | None) -> int:
        """Start ``process`` in the running container as a child of this process; its PID."""
        row = self._row(cid)
        pid = self.plugins.call("isolation", row["isolation"], "exec", container_id=cid,
                                bundle=self.bundle(cid), process=process, stdio=stdio)
        self.state.event("container", "exec_start", cid, command=process.args)
        return pid

    def _set(self, cid: str, **values: Any) -> None:
        cols = ", ".join(f"{k} = ?" for k in values)
        with self.state.tx() as db:
            db.execute(f"UPDATE containers SET {cols} WHERE id = ?", (*values.values(), cid))

    def _monitor_alive(self, row: sqlite3.Row) -> bool:
        from pinnace.runtime.proc import is_alive

        return is_alive(row["monitor_pid"], row["monitor_start"])

    def _current(self, cid: str) -> sqlite3.Row:
        """The container's row, after reconciling it with the host."""
        row = self._row(cid)
        return self._reconcile(row) if row["status"] in ACTIVE else row

    def _reconcile(self, row: sqlite3.Row) -> sqlite3.Row:
        """A running row whose monitor is gone (killed, or the host rebooted): mark
        it exited with an unknown code and release what its runtime left."""
        if self._monitor_alive(row):
            return row
        with self.state.tx() as db:
            claimed = db.execute(
                "UPDATE containers SET status = 'exited', exit_code = NULL, finished = ?,"
                " pid = 0 WHERE id = ? AND status IN ('starting', 'running', 'paused')",
                (time.time(), row["id"])).rowcount
        if claimed:
            self._teardown(row)
            self.state.event("container", "die", row["id"], exit_code=None)
        return self._row(row["id"])

    def _record_exit(self, cid: str, code: int | None, oom_killed: bool = False) -> None:
        with self.state.tx() as db:
            db.execute(
                "UPDATE containers SET status = 'exited', exit_code = ?, finished = ?, pid = 0,"
                " oom_killed = ? WHERE id = ?", (code, time.time(), int(oom_killed), cid))

    def _teardown(self, row: sqlite3.Row) -> None:
        """Release the runtime side of a container: process, cgroup, network, netns, bundle."""
        from pinnace import netns, networking

        cid, bundle, ns = row["id"], self.bundle(row["id"]), self.netns_path(row["id"])
        steps: list[Callable[[], None]] = [
            lambda: self.plugins.call("isolation", row["isolation"], "delete",
                                      container_id=cid, bundle=bundle),
            lambda: networking.teardown(self, row),
        ]
        steps += [lambda: netns.delete(str(ns)), lambda: remove_tree(bundle)]
        _run_undos(list(reversed(steps)), raise_first=True)

    def remove(self, ref: str, force: bool = False) -> str:
        """Remove a container: its process (with ``force``), runtime, rootfs and row."""
        cid = self.resolve(ref)
        row = self._current(cid)
        if row["status"] in ACTIVE:
            if not force:
                raise FailedPrecondition(
                    f"container {row['name']} is {row['status']}: stop it first or use rm -f")
            self._set(cid, stop_requested=1)
            self.kill(cid, 9)
            try:
                if self.wait_exit(cid, 30) is None:
                    raise FailedPrecondition(f"container {row['name']} did not exit after SIGKILL")
            except NotFound:  # its monitor removed it (run --rm)
                return cid
        self._teardown(row)
        with contextlib.suppress(NotFound):
            self.plugins.call("storage", row["storage"], "remove", key=cid)
        remove_tree(self.log_path(cid).parent)
        self._delete_row(cid)
        self.state.event("container", "destroy", cid)
        self.plugins.broadcast("pinnace_container_removed", container=dict(row))
        return cid

    # ------------------------------------------------------------ queries
    def resolve(self, ref: str) -> str:
        """A container ID from a name, a full ID or a unique ID prefix."""
        row = self.state.one("SELECT id FROM containers WHERE name = ? OR id = ?", ref, ref)
        if row:
            return row["id"]
        if len(ref) >= 1 and all(c in "0123456789abcdef" for c in ref):
            rows = self.state.query("SELECT id FROM containers WHERE id LIKE ?", ref + "%")
            if len(rows) == 1:
                return rows[0]["id"]
            if len(rows) > 1:
                raise InvalidConfig(f"container ID prefix {ref!r} is ambiguous ({len(rows)} match)")
        raise NotFound(f"No such container: {ref}")

    def _row(self, cid: str) -> sqlite3.Row:
        row = self.state.one("SELECT * FROM containers WHERE id = ?", cid)
        if row is None:
            raise NotFound(f"No such container: {cid}")
        return row

    def _row_dict(self, cid: str) -> dict[str, Any]:
        return dict(self._row(cid))

    def containers(self, all_: bool = False) -> list[Container]:
        """Containers, newest first; only running (and paused) ones unless ``all_``."""
        out = []
        for row in self.state.query("SELECT * FROM containers ORDER BY created DESC"):
            if row["status"] in ACTIVE:
                row = self._reconcile(row)
            if all_ or row["status"] in ACTIVE:
                out.append(_container(row))
        return out

    def container(self, cid: str) -> Container:
        """One container, reconciled with the host."""
        return _container(self._current(cid))

    def image_in_use(self, image_id: str) -> list[str]:
        """Names of the containers created from ``image_id``."""
        return [r["name"] for r in self.state.query(
            "SELECT name FROM containers WHERE image_id = ?", image_id)]

    def remove_image(self, ref: str, force: bool = False) -> Any:
        """``rmi``: untag/delete an image, then drop layer snapshots no image needs any more."""
        result = self.images.remove(ref, force=force, in_use=self.image_in_use)
        self._drop_snapshots(result.orphan_chain_ids)
        return result

    def prune_images(self, all_: bool = False) -> list[Any]:
        """``image prune``: remove untagged images (every image with ``all_``) that no
        container uses; return the removal results."""
        results = []
        for image in self.images.list():
            if (image.tags and not all_) or self.image_in_use(image.id):
                continue
            results.append(self.remove_image(image.id, force=True))
        return results

    def _drop_snapshots(self, chain_ids: list[str]) -> None:
        """Remove the layer snapshots of ``chain_ids`` (bottom first) from every storage
        that holds them, children before their parents."""
        for chain_id in reversed(chain_ids):
            for snap in self.state.query(
                    "SELECT storage FROM snapshots WHERE chain_id = ?", chain_id):
                with contextlib.suppress(NotFound):
                    self.plugins.call("storage", snap["storage"], "remove", key=chain_id)
                with self.state.tx() as db:
                    db.execute("DELETE FROM snapshots WHERE chain_id = ? AND storage = ?",
                               (chain_id, snap["storage"]))


def _container(row: sqlite3.Row) -> Container:
    return Container(
        id=row["id"], name=row["name"], image=row["image_ref"], image_id=row["image_id"],
        command=json.loads(row["spec"]).get("command", []), status=row["status"],
        exit_code=row["exit_code"], created=row["created"], started=row["started"],
        finished=row["finished"], pid=row["pid"], storage=row["storage"],
        network=row["network"], isolation=row["isolation"],
    )


def _label(row: sqlite3.Row) -> str:
    return row["name"] or row["id"][:12]


def _command(opts: RunOptions, cfg: dict[str, Any]) -> list[str]:
    """Docker's rule: ENTRYPOINT + CMD, where a given command replaces CMD and
    ``--entrypoint`` replaces ENTRYPOINT (and drops the image's CMD)."""
    if opts.entrypoint is not None:
        entry = [opts.entrypoint] if opts.entrypoint else []
        cmd = list(opts.command)
    else:
        entry = list(cfg.get("Entrypoint") or [])
        cmd = list(opts.command) or list(cfg.get("Cmd") or [])
    args = entry + cmd
    if not args:
        raise InvalidConfig(f"no command given and image {opts.image} has no CMD or ENTRYPOINT")
    return args


def _merge_env(base: list[str], extra: list[str]) -> list[str]:
    """Image env overridden by ``-e KEY=VALUE``; a bare ``-e KEY`` copies the host's value."""
    env = dict(e.split("=", 1) if "=" in e else (e, "") for e in base)
    for item in extra:
        if "=" in item:
            key, value = item.split("=", 1)
        elif item in os.environ:
            key, value = item, os.environ[item]
        else:
            continue
        if not key:
            raise InvalidConfig(f"invalid environment variable {item!r}")
        env[key] = value
    return [f"{k}={v}" for k, v in env.items()]


def _spec_from_json(data: dict[str, Any]) -> ContainerSpec:
    from pinnace.mounts import Mount
    from pinnace.runtime.spec import ContainerSpec, MountPoint, Process, Resources, Security, User

    proc = dict(data["process"])
    proc["user"] = User(**proc["user"])
    data = dict(data, process=Process(**proc),
                rootfs=[Mount(m["type"], m["source"], tuple(m["options"])) for m in data["rootfs"]],
                mounts=[MountPoint(**m) for m in data.get("mounts", [])],
                security=Security(**data.get("security", {})),
                resources=Resources(**data.get("resources", {})))
    return ContainerSpec(**data)


def _run_undos(undos: list[Callable[[], None]], raise_first: bool = False) -> None:
    """Run undo steps newest first; keep going on errors; optionally raise the first."""
    first: BaseException | None = None
    for undo in reversed(undos):
        try:
            undo()
        except Exception as err:  # an undo must not hide the error that triggered it
            first = first or err
    if raise_first and first is not None:
        raise first
