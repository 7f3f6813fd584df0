"""The engine: config + state + plugins + services, the one object front-ends call.

Every step of ``create``/``start`` that touches the system has an undo,
registered before the step runs and run in reverse when a later step fails,
so a failure leaves no snapshot, netns, cgroup or half-written row behind.
The plugin that made a thing owns it: each container records its storage,
network and isolation plugin names and later calls on it go to those
plugins, whatever is selected now.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
from collections.abc import Callable, Iterator, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any, BinaryIO, TextIO, TypeVar

from pinnace import faults, names
from pinnace.config import Config
from pinnace.errors import FailedPrecondition, InvalidConfig, NoSpace, NotFound, PinnaceError
from pinnace.files import remove_tree
from pinnace.paths import Paths

if TYPE_CHECKING:
    from pinnace.collector import Collector
    from pinnace.containers.options import LimitChanges, RunOptions
    from pinnace.containers.record import ContainerRecord
    from pinnace.containers.table import ContainerTable
    from pinnace.images.commit import Step
    from pinnace.images.copy import CopyOptions, Side
    from pinnace.images.layers import Change
    from pinnace.images.snapshots import LayerSnapshots
    from pinnace.images.sources import ImageSources, TransferOptions
    from pinnace.images.store import Image, ImageStore
    from pinnace.net.networks import Networking
    from pinnace.network import Network
    from pinnace.operations import Intent, Lease, Operations
    from pinnace.plugins import Plugins
    from pinnace.runtime.healthcheck import HealthConfig
    from pinnace.runtime.namespaces import Sharing
    from pinnace.runtime.spec import MountPoint, Process
    from pinnace.runtime.userns import Mapping
    from pinnace.state import State
    from pinnace.storage_usage import StorageUsage
    from pinnace.volumes.requests import MountRequest
    from pinnace.volumes.service import Volumes

T = TypeVar("T")
UNPAUSE = "unpause"
"""What ``commit`` and ``export`` note on their lease while they keep a container paused."""
BUILD_CONTAINER = "build-container"
"""What ``build`` notes on its lease, by name, before it makes a container for a step
(which it removes after the step)."""


def _operation(what: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
    """Run an :class:`Engine` method as one operation of the store (:meth:`Engine.operation`)."""
    def wrap(method: Callable[..., T]) -> Callable[..., T]:
        @functools.wraps(method)
        def run(self: Engine, *args: Any, **kwargs: Any) -> T:
            with self.operation(what):
                return method(self, *args, **kwargs)
        return run
    return wrap


class Engine:
    """One pinnace invocation's view of the host: lazily opened state, store and plugins."""

    def __init__(self, config: Config, trace: TextIO | None = None) -> None:
        self.config = config
        self.paths = Paths(config.root, config.run_root)
        self._trace = trace

    def close(self) -> None:
        """Close the state's connection, if it was opened (the engine is done with)."""
        state = self.__dict__.get("state")
        if state is not None:
            state.close()

    # ------------------------------------------------------------ components
    @cached_property
    def state(self) -> State:
        """The SQLite state under the root (opened on first use)."""
        from pinnace.state import State

        return State(self.config.root / "state.db")

    @cached_property
    def containers(self) -> ContainerTable:
        """The containers table."""
        from pinnace.containers.table import ContainerTable

        return ContainerTable(self.state)

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

    @cached_property
    def networks(self) -> Networking:
        """Named networks and the network side of containers."""
        from pinnace.net.networks import Networking

        return Networking(self.state, lambda: self.plugins, self.containers, self.paths,
                          self.selected("network"))

    @cached_property
    def volumes(self) -> Volumes:
        """Volumes, recorded with the driver that made each."""
        from pinnace.volumes.service import Volumes

        return Volumes(self.state, lambda: self.plugins, self.paths.lock("volumes"),
                       self.selected("volume"))

    @cached_property
    def sources(self) -> ImageSources:
        """The image source plugins, by transport."""
        from pinnace.images.sources import ImageSources

        return ImageSources(self.plugins, self.images, self.selected("image_source"))

    @cached_property
    def layers(self) -> LayerSnapshots:
        """Image layers unpacked into each storage plugin."""
        from pinnace.images.snapshots import LayerSnapshots

        return LayerSnapshots(self.state, self.plugins, self.images, self.paths)

    @cached_property
    def operations(self) -> Operations:
        """The leases of the operations in flight on this root."""
        from pinnace.operations import Operations

        return Operations(self.config.root)

    @cached_property
    def collector(self) -> Collector:
        """What finds and removes what nothing in the state names."""
        from pinnace.collector import Collector

        return Collector(self.state, self.paths, self.containers, self.images, self.layers,
                         self.networks, self.volumes)

    @contextlib.contextmanager
    def operation(self, what: str) -> Iterator[Lease]:
        """Run the block as one operation of the store (see :mod:`pinnace.operations`);
        when a crashed one left something and no other runs, collect it first."""
        with self.operations.lease(what, self._collect) as lease:
            yield lease

    def recover(self) -> None:
        """Collect what a crashed operation left, when one did and none runs (otherwise
        this costs one directory listing)."""
        if self.operations.crashed():
            with self.operation("recover"):
                pass

    def _collect(self, intents: list[Intent]) -> None:
        """Collect quietly: a failure here is a warning, not the command's failure (what
        is left stays for ``system check --repair``)."""
        import sys

        try:
            self.reconcile()
            self._resume_paused(intents, repair=True)
            self._remove_build_containers(intents, repair=True)
            self.collector.run(intents, repair=True)
        except (PinnaceError, OSError) as err:
            print(f"Warning: cleaning up after a killed pinnace: {err}", file=sys.stderr)

    def _resume_paused(self, intents: list[Intent], repair: bool) -> list[str]:
        """Containers that a killed ``commit`` or ``export`` paused to read them."""
        found = []
        for intent in intents:
            if intent.kind != UNPAUSE:
                continue
            with contextlib.suppress(NotFound):
                record = self.current(str(intent.data.get("id")))
                if record.status == "paused":
                    found.append(f"container {record.label} was left paused by a killed pinnace")
                    if repair:
                        self.unpause(record.id)
        return found

    def _remove_build_containers(self, intents: list[Intent], repair: bool) -> list[str]:
        """Containers a killed ``build`` made for its steps (their monitor, the build, is
        gone: reconciling tears their runtime down, then they are discarded)."""
        found = []
        for intent in intents:
            if intent.kind != BUILD_CONTAINER:
                continue
            with contextlib.suppress(NotFound):
                record = self.current(self.resolve(str(intent.data.get("name"))))
                found.append(f"container {record.label} of a killed build was left")
                if repair and not record.active:
                    self._discard(record, volumes=True)
        return found

    def release_state(self) -> None:
        """Close the state's connection and forget the services over it; the next use
        opens it again. Called before a fork whose child uses the state: SQLite keeps
        per-process records of its open files, which a child would inherit without the
        locks they stand for (another process could then reset the shared memory under
        it)."""
        services = ("state", "containers", "images", "networks", "layers", "sources", "volumes")
        state = self.__dict__.get("state")
        for name in services:
            self.__dict__.pop(name, None)
        if state is not None:
            state.close()

    def selected(self, role: str, override: str | None = None) -> str:
        """The plugin name for ``role``: the flag if given, else env, config file, default."""
        return override or str(self.config.selected(role).value)

    # ------------------------------------------------------------ images
    def image_for_run(self, ref: str) -> Image:
        """The image ``ref`` names, fetched through its transport when the store lacks
        it and it names a transport or a registry (as ``docker run`` pulls)."""
        try:
            return self.images.resolve(ref)
        except (NotFound, InvalidConfig):  # TRANSPORT:rest is no valid local name
            if not self.sources.has_transport(ref):
                raise
        from pinnace.images.sources import TransferOptions

        return self.images.resolve(self.pull(ref, TransferOptions()))

    @_operation("pull")
    def pull(self, reference: str, options: TransferOptions) -> str:
        """Bring ``reference`` into the store through its transport; return the image ID.
        When the source fails, the images it added are removed again."""
        with self.images.recording() as added:
            try:
                image_id = self.sources.fetch(reference, options)
            except BaseException:
                _run_undos([lambda i=i: self.remove_image(i, force=True) for i in added])
                raise
        self.plugins.broadcast("pinnace_image_pulled", image_id=image_id, reference=reference)
        return image_id

    # ------------------------------------------------------------ containers
    @_operation("create")
    def create(self, opts: RunOptions) -> str:
        """Create a container (row, rootfs, spec) and return its ID; nothing runs yet."""
        from pinnace.containers import build
        from pinnace.containers.record import ContainerConfig, RunPolicy
        from pinnace.runtime.policy import parse_log_opts, parse_restart, parse_signal

        storage = self.selected("storage", opts.storage)
        isolation = self.selected("isolation", opts.isolation)
        image = self.image_for_run(opts.image)
        for role, name in (("storage", storage), ("isolation", isolation)):
            self.plugins.load(role, name)
        image_config = image.config.get("config") or {}
        network, net = self.networks.run_options(opts, image_config)
        if opts.name is not None:
            names.validate(opts.name)
        run = RunPolicy(tty=opts.tty, interactive=opts.interactive,
                        auto_remove=opts.auto_remove, restart=parse_restart(opts.restart),
                        log=parse_log_opts(opts.log_opts),
                        stop_signal=parse_signal(opts.stop_signal
                                                 or image_config.get("StopSignal") or "TERM"),
                        stop_timeout=opts.stop_timeout, health=_health(opts, image_config))
        sharing = self._sharing(opts)
        if opts.auto_remove and run.restart.name != "no":
            raise InvalidConfig("conflicting options: --restart and --rm")
        cid = names.new_id()
        args = build.command(opts, image_config)
        wanted = self._mount_requests(opts, image_config)
        if self.config.rootless:
            from pinnace import rootless

            rootless.check_run(opts)
        with self.state.tx():  # rmi decides in one transaction: it sees this row or we its end
            if not self.images.has_image(image.id):
                raise NotFound(f"image {opts.image} was removed")
            mapping = self._user_mapping(opts)  # an auto block is chosen and noted at once
            name = self.containers.insert(cid, opts.name, image.id, opts.image, storage,
                                          network, isolation)
            self.containers.record_id_maps(cid, mapping.uids + mapping.gids)
        undo: list[Callable[[], None]] = [lambda: self.containers.delete(cid)]
        try:
            faults.point("create.row")
            parent, shifted = self.layers.base_for(
                storage, self.layers.ensure(image, storage), mapping)
            undo.append(lambda: self.layers.remove(storage, cid))
            mounts = self.plugins.call("storage", storage, "prepare", key=cid, parent=parent,
                                       labels={"pinnace.container": cid})
            faults.point("create.rootfs")
            points = self.volumes.attach(cid, wanted, opts.volume_driver, mounts,
                                         self.paths.run_root, undo) if wanted else []
            faults.point("create.volumes")
            spec = build.runtime_spec(
                cid, opts, image_config, args, mounts, self.paths.run_root, points, sharing,
                private_net=self._private_net(network) if opts.sysctls else True,
                init_path=self.config.engine["init_path"].value,
                default_ulimits=self.config.engine["default_ulimits"].value, mapping=mapping,
                rootfs_shifted=shifted)
            with self.state.tx():
                labels = {**(image_config.get("Labels") or {}), **opts.labels}
                self.containers.save_config(cid, ContainerConfig(args, spec, run, net, labels))
                self.state.event("container", "create", cid, image=opts.image, name=name)
        except BaseException:
            _run_undos(undo)
            raise
        self._announce("pinnace_container_created", cid)
        return cid

    def _private_net(self, network: str) -> bool:
        """Whether a container of network mode ``network`` has a network namespace of its
        own (not ``container:NAME``'s, not the host's)."""
        return not (network.startswith("container:")
                    or getattr(self.plugins.load("network", network), "host_netns", False))

    def _sharing(self, opts: RunOptions) -> Sharing | None:
        """The namespaces ``--pid/--ipc/--uts`` leave the container (None: all its own);
        nothing of the namespace flags is imported when none was given."""
        if not (opts.pid or opts.ipc or opts.uts):
            return None
        from pinnace.runtime.namespaces import sharing
        from pinnace.runtime.spec import NAMESPACES

        modes = {"pid": opts.pid, "ipc": opts.ipc, "uts": opts.uts}
        found = sharing(list(NAMESPACES), modes, self.resolve)
        self._joined(found.paths)  # a container to join must run now (and at each start)
        return found

    def _user_mapping(self, opts: RunOptions) -> Mapping:
        """The id maps of a new container's user namespace (none for ``--userns=host``);
        an ``auto`` block is one no other container's map uses (called in the transaction
        that records the new container's maps, so two runs never share a block).
        ``--privileged`` runs in the host's (as docker's): a configured default yields, an
        explicit one is refused."""
        from pinnace.runtime import userns

        explicit = opts.userns or opts.uidmap or opts.gidmap
        if opts.privileged and explicit and opts.userns != "host":
            raise InvalidConfig("--privileged runs in the host's user namespace: it excludes "
                                "--userns, --uidmap and --gidmap")
        mode = opts.userns or ("" if explicit or opts.privileged
                               else str(self.config.engine["userns"].value))
        if mode == "keep-id" and self.config.rootless:
            from pinnace import rootless

            return rootless.keep_id()
        taken = self.containers.mapped_host_ids() if mode == "auto" else []
        return userns.resolve(mode, opts.uidmap, opts.gidmap,
                              str(self.config.engine["userns_user"].value), taken)

    def _mount_requests(self, opts: RunOptions, image_config: dict[str, Any]
                        ) -> list[MountRequest]:
        """The mounts ``run`` asked for (flags and the image's ``VOLUME``s), checked;
        nothing of the volume machinery is imported when there are none."""
        if not (opts.volumes or opts.mounts or opts.tmpfs or opts.volumes_from
                or image_config.get("Volumes")):
            return []
        from pinnace.volumes.requests import for_run

        def mounts_of(ref: str) -> list[MountRequest]:
            return self.volumes.requests_of(self.container(ref).config.spec)

        return for_run(opts.volumes, opts.mounts, opts.tmpfs, opts.volumes_from,
                       image_config, mounts_of)

    @_operation("start")
    def start(self, cid: str, stdio: tuple[int, int, int] | None = None,
              console_socket: str = "", restart: bool = False) -> int:
        """Set up the network, create the container and start its process; return its PID.

        The calling process becomes the container's monitor: it is recorded
        in the state, made a child subreaper, and must wait for the container
        and call :meth:`finish`. ``stdio`` None gives the container the caller's
        own stdio, which nothing logs: to start one that logs, under a monitor of
        its own, use :meth:`pinnace.client.Client.start`. On failure everything
        set up here is undone and the container is marked exited (127/126 when
        the command cannot be executed). A ``restart`` by the container's policy is
        refused (``FailedPrecondition``) once a stop was asked for since it exited.
        """
        from pinnace import linux
        from pinnace.runtime.proc import start_time

        self.reconcile()  # what dead containers hold (leases, ports) is free again
        record = self.containers.get(cid)
        if not self.containers.claim_start(cid, os.getpid(), start_time(os.getpid()), restart):
            if restart and self.containers.get(cid).stop_requested:
                raise FailedPrecondition(f"container {record.label} was stopped: no restart")
            raise FailedPrecondition(f"container {record.label} is already {record.status}")
        config = record.config
        spec = config.spec
        spec.process.console_socket = console_socket
        linux.set_child_subreaper()
        bundle = self.paths.bundle(cid)
        bundle.mkdir(parents=True, exist_ok=True)
        undo: list[Callable[[], None]] = [lambda: remove_tree(bundle)]
        try:
            result = self.networks.setup(record, config, bundle, undo)
            faults.point("start.network")
            if _has_volumes(record):
                self.volumes.mount(cid, spec, undo)
            if spec.namespace_paths:
                spec.namespace_paths = self._joined(spec.namespace_paths)
            self.plugins.broadcast("pinnace_prepare_spec", spec=spec)
            undo.append(lambda: self.plugins.call("isolation", record.isolation, "delete",
                                                  container_id=cid, bundle=bundle))
            pid = self.plugins.call("isolation", record.isolation, "create", spec=spec,
                                    bundle=bundle, stdio=stdio)
            faults.point("start.created")
            self.containers.mark_running(cid, pid, start_time(pid),
                                         json.dumps(result.to_dict()))
            if config.run.health:  # each start begins as "starting"
                from pinnace.runtime import healthcheck

                self.paths.health(cid).parent.mkdir(parents=True, exist_ok=True)
                healthcheck.write(str(self.paths.health(cid)), healthcheck.HealthStatus())
            faults.point("start.recorded")
            self.plugins.call("isolation", record.isolation, "start", container_id=cid,
                              bundle=bundle)
        except BaseException as err:
            _run_undos(undo)
            code = getattr(err, "exit_code", 125) if isinstance(err, PinnaceError) else 125
            self.containers.record_exit(cid, code)
            raise
        self.state.event("container", "start", cid)
        self._announce("pinnace_container_started", cid, pid=pid)
        return int(pid)

    def _joined(self, paths: dict[str, str]) -> dict[str, str]:
        """The namespace paths of the containers ``--pid/--ipc container:`` named, now."""
        from pinnace.runtime.namespaces import resolve

        def running_pid(cid: str) -> tuple[str, int]:
            try:
                record = self.current(cid)
            except NotFound:
                return cid[:12], 0
            return record.label, record.pid if record.status == "running" else 0

        return resolve(paths, running_pid)

    def wait(self, cid: str) -> int:
        """Wait for a container this process started, tear its runtime down, return its
        exit code."""
        record = self.containers.get(cid)
        code: int | None = None
        try:
            code = self.plugins.call("isolation", record.isolation, "wait", container_id=cid,
                                     bundle=self.paths.bundle(cid))
        finally:  # a failed wait still ends the monitoring: the teardown kills what is left
            self.finish(cid, code)
        return int(code) if code is not None else -1

    @_operation("finish")
    def finish(self, cid: str, code: int | None) -> bool:
        """Record the exit of a container this process monitored and release its runtime.

        Returns True when its restart policy asks for another start. ``code``
        is None when it is unknown.
        """
        from pinnace.runtime import cgroups, limits
        from pinnace.runtime.policy import should_restart

        try:
            record = self.containers.get(cid)
        except NotFound:  # removed meanwhile (rm -f)
            return False
        oom = limits.oom_killed(cgroups.container_cgroup(cid))  # before teardown removes it
        failure: Exception | None = None
        try:
            self._teardown(record)
        except Exception as err:  # raised once --rm has had its go (which tears down again)
            failure = err
        with self.state.tx():
            self.containers.record_exit(cid, code, oom_killed=oom)
            self.state.event("container", "die", cid, exit_code=code)
        self._announce("pinnace_container_exited", cid, exit_code=code)
        run = record.config.run
        again = should_restart(run.restart, code, record.restart_count, record.stop_requested)
        if again:
            self.containers.count_restart(cid)
        elif run.auto_remove:
            exited = self.containers.get(cid)
            if failure is None and not exited.active:  # torn down above: no second teardown
                self._discard(exited)
            else:
                self.remove(cid, force=True)
        if failure is not None:
            raise failure
        return again

    def kill(self, cid: str, signal: int, by_user: bool = False) -> None:
        """Send ``signal`` to the container's first process. ``by_user`` with
        SIGKILL, SIGTERM or SIGINT counts as a stop: no restart follows."""
        import signal as signals

        record = self.current(cid)
        if record.status not in ("running", "paused"):
            raise FailedPrecondition(f"container {record.label} is not running")
        if by_user and signal in (signals.SIGKILL, signals.SIGTERM, signals.SIGINT):
            self.containers.set(cid, stop_requested=1)
        bundle = self.paths.bundle(cid)
        self.plugins.call("isolation", record.isolation, "kill", container_id=cid,
                          bundle=bundle, signal=signal)
        if record.status == "paused" and signal == signals.SIGKILL:
            self.plugins.call("isolation", record.isolation, "resume", container_id=cid,
                              bundle=bundle)

    def stop(self, cid: str, timeout: float | None = None) -> None:
        """The container's stop signal (SIGTERM unless ``--stop-signal`` or the image's
        STOPSIGNAL said otherwise), then SIGKILL after ``timeout`` seconds (None: its
        ``--stop-timeout``, or 10); return once it has exited.

        A stopped container is not restarted by its policy; stopping one
        that is not running is not an error (as with docker).
        """
        failure = self.stop_all([cid], timeout)[cid]
        if failure is not None:
            raise failure

    def stop_all(self, cids: Sequence[str],
                 timeout: float | None = None) -> dict[str, PinnaceError | None]:
        """:meth:`stop` several containers at once: they share the grace period (as
        ``docker stop a b`` does; each its own when ``timeout`` is None). Returns each
        one's error, or None."""
        import signal
        import time

        outcome: dict[str, PinnaceError | None] = {}
        running = []
        for cid in cids:
            try:
                record = self.current(cid)
                self.containers.set(cid, stop_requested=1)  # also stops a restart to come
                if record.status == "paused":
                    self.unpause(cid)
            except PinnaceError as err:
                outcome[cid] = err
                continue
            outcome[cid] = None
            if record.active:
                running.append(record)
        deadlines = {}
        for record in running:
            run = record.config.run
            grace = timeout if timeout is not None else (
                run.stop_timeout if run.stop_timeout is not None else 10)
            deadlines[record.id] = time.monotonic() + grace
            if grace > 0:
                with contextlib.suppress(FailedPrecondition, NotFound):
                    self.kill(record.id, run.stop_signal)
        while running:
            due = min(deadlines[r.id] for r in running)
            running = self._still_running(running, max(due - time.monotonic(), 0))
            now = time.monotonic()
            late = [r for r in running if deadlines[r.id] <= now]
            if not late:
                continue
            for record in late:
                with contextlib.suppress(FailedPrecondition, NotFound):
                    self.kill(record.id, signal.SIGKILL)
            killed = self._still_running(late, 30.0)
            for record in killed:
                outcome[record.id] = FailedPrecondition(
                    f"container {record.label} did not stop after SIGKILL")
            running = [r for r in running if r not in late]
        return outcome

    @_operation("update")
    def update(self, ref: str, changes: LimitChanges) -> str:
        """Change a container's limits (written into its cgroup at once when it runs, kept
        for its next starts) and restart policy; return its ID."""
        from pinnace.runtime import cgroups, limits
        from pinnace.runtime.policy import parse_restart

        if all(value is None for value in changes):
            raise InvalidConfig("you must provide one or more flags when using this command")
        cid = self.resolve(ref)
        with self.state.tx():  # read, change and store at once (network connect writes too)
            record = self.current(cid)
            config = record.config
            res, run = config.spec.resources, config.run
            memory = changes.memory or (str(res.memory) if changes.memory_swap and res.memory
                                        else None)
            given = limits.resources(memory, changes.memory_swap, changes.cpus,
                                     changes.cpu_shares, changes.cpuset_cpus,
                                     changes.pids_limit)
            changed = set()
            if memory:
                res.memory, res.memory_swap = given.memory, given.memory_swap
                changed.add("memory")
            if changes.cpus is not None:
                res.cpu_quota, res.cpu_period = given.cpu_quota, given.cpu_period
                changed.add("cpus")
            if changes.cpu_shares:
                res.cpu_shares = given.cpu_shares
                changed.add("cpu_shares")
            if changes.cpuset_cpus:
                res.cpuset_cpus = given.cpuset_cpus
                changed.add("cpuset")
            if changes.pids_limit is not None:
                res.pids_limit = given.pids_limit
                changed.add("pids")
            if changes.restart is not None:
                run = run._replace(restart=parse_restart(changes.restart))
                if run.auto_remove and run.restart.name != "no":
                    raise InvalidConfig("restart policy cannot be updated because AutoRemove "
                                        "is enabled for the container")
            if record.active and changed:
                limits.update(cgroups.container_cgroup(cid), res, changed)
            self.containers.save_config(cid, config._replace(run=run))
            self.state.event("container", "update", cid, name=record.name)
        return cid

    def _still_running(self, records: list[ContainerRecord],
                       timeout: float) -> list[ContainerRecord]:
        """Those of ``records`` still running after waiting up to ``timeout`` seconds."""
        import time

        deadline = time.monotonic() + timeout
        while True:
            left = []
            for record in records:
                with contextlib.suppress(NotFound):  # removed meanwhile: stopped
                    if self.current(record.id).active:
                        left.append(record)
            if not left or time.monotonic() >= deadline:
                return left
            records = left
            time.sleep(0.02)

    def wait_exit(self, cid: str, timeout: float | None = None) -> int | None:
        """Block until the container is no longer running; return its exit code
        (-1 when unknown), or None on timeout."""
        import time

        from pinnace.polling import Pauses

        deadline = None if timeout is None else time.monotonic() + timeout
        pauses = Pauses()
        try:
            while True:
                record = self.current(cid)
                if not record.active:
                    return -1 if record.exit_code is None else record.exit_code
                if deadline is not None and time.monotonic() >= deadline:
                    return None
                pauses.watch(record.monitor_pid)
                pauses.sleep()
        finally:
            pauses.close()

    def pause(self, cid: str) -> None:
        """Freeze every process of a running container."""
        self._freeze(cid, "running", "pause", "paused")

    def unpause(self, cid: str) -> None:
        """Thaw a paused container."""
        self._freeze(cid, "paused", "resume", "running")

    def _freeze(self, cid: str, before: str, verb: str, after: str) -> None:
        record = self.current(cid)
        if record.status != before:
            raise FailedPrecondition(f"container {record.label} is not {before}")
        self.plugins.call("isolation", record.isolation, verb, container_id=cid,
                          bundle=self.paths.bundle(cid))
        self.containers.set(cid, status=after)
        self.state.event("container", "pause" if verb == "pause" else "unpause", cid)

    def rename(self, cid: str, new_name: str) -> None:
        """Give the container another name (refused when taken)."""
        names.validate(new_name)
        self.containers.set(cid, name=new_name)
        self.state.event("container", "rename", cid, name=new_name)

    def prune(self, wanted: Callable[[ContainerRecord], bool] | None = None) -> list[str]:
        """Remove every container that is not running (of those ``wanted`` picks); return
        their IDs."""
        gone = []
        for c in self.list(all_=True):
            if c.status in ("exited", "created") and (wanted is None or wanted(c)):
                with contextlib.suppress(NotFound):
                    gone.append(self.remove(c.id))
        return gone

    def exec_process(self, cid: str, args: list[str], env: list[str], workdir: str | None,
                     user: str | None, tty: bool) -> Process:
        """The process ``exec`` runs: the container's env and user unless overridden."""
        from pinnace.containers import build

        record = self.current(cid)
        if record.status != "running":
            raise FailedPrecondition(
                f"container {record.label} is {record.status}: exec needs a running container")
        return build.exec_process(record.config.spec.process, record.pid, args, env, workdir,
                                  user, tty)

    def exec(self, cid: str, process: Process, stdio: tuple[int, int, int] | None) -> int:
        """Start ``process`` in the running container as a child of this process; its PID."""
        record = self.containers.get(cid)
        pid = self.plugins.call("isolation", record.isolation, "exec", container_id=cid,
                                bundle=self.paths.bundle(cid), process=process, stdio=stdio)
        self.state.event("container", "exec_start", cid, command=process.args)
        return int(pid)

    @_operation("rm")
    def remove(self, ref: str, force: bool = False, volumes: bool = False) -> str:
        """Remove a container: its process (with ``force``), runtime, rootfs and row; its
        anonymous volumes too with ``volumes`` (``rm -v``) or when it was run with ``--rm``."""
        cid = self.resolve(ref)
        record = self.current(cid)
        if record.active:
            if not force:
                raise FailedPrecondition(
                    f"container {record.label} is {record.status}: stop it first or use rm -f")
            self.containers.set(cid, stop_requested=1)
            self.kill(cid, 9)
            try:
                if self.wait_exit(cid, 30) is None:
                    raise FailedPrecondition(f"container {record.label} did not exit after "
                                             f"SIGKILL")
            except NotFound:  # its monitor removed it (run --rm)
                return cid
        self._teardown(record)
        faults.point("rm.torn-down")
        self._discard(record, volumes)
        return cid

    def _discard(self, record: ContainerRecord, volumes: bool = False) -> None:
        """Forget a container whose runtime is torn down: its rootfs, log, volume users
        (its anonymous volumes with ``volumes`` or ``--rm``) and row."""
        if _has_volumes(record):
            self.volumes.forget(record.id, volumes or record.config.run.auto_remove)
        self.layers.remove(record.storage, record.id)
        faults.point("rm.rootfs-removed")
        remove_tree(self.paths.log(record.id).parent)
        with self.state.tx():
            self.containers.delete(record.id)
            self.state.event("container", "destroy", record.id, name=record.name)
        self.plugins.broadcast("pinnace_container_removed", container=record)

    def _announce(self, hook: str, cid: str, **kwargs: Any) -> None:
        """Broadcast event ``hook`` with the container's current record, read from the
        state only when a plugin implements the hook."""
        if self.plugins.implemented(hook):
            self.plugins.broadcast(hook, container=self.containers.get(cid), **kwargs)

    # ------------------------------------------------------------ reconciling
    def current(self, cid: str) -> ContainerRecord:
        """The container's record, after reconciling it with the host."""
        record = self.containers.get(cid)
        return self._reconcile(record) if record.active else record

    def reconcile(self) -> None:
        """Release what containers whose monitor died (mid-setup too) left: processes,
        cgroups, veths, rules, leases."""
        for record in self.containers.active():
            with contextlib.suppress(Exception):  # a stale container must not fail this command
                self._reconcile(record)

    def _reconcile(self, record: ContainerRecord) -> ContainerRecord:
        """A running container whose monitor is gone (killed, or the host rebooted): mark
        it exited with an unknown code and release what its runtime left; one made with
        ``--rm`` is removed, as its monitor would have done (``NotFound`` then)."""
        from pinnace.runtime.proc import is_alive

        if is_alive(record.monitor_pid, record.monitor_start):
            return record
        try:
            lost = self.containers.claim_lost(record.id)
        except NoSpace:  # a full disk: shown as recorded until a command can write it
            return record
        if lost:
            self._teardown(record)
            self.state.event("container", "die", record.id, exit_code=None)
            if record.config.run.auto_remove:  # what its monitor would have done
                self._discard(record)
                raise NotFound(f"No such container: {record.id}")
        return self.containers.get(record.id)

    def _teardown(self, record: ContainerRecord) -> None:
        """Release the runtime side of a container: process, cgroup, network, netns, bundle."""
        from pinnace import netns

        cid, bundle, ns = record.id, self.paths.bundle(record.id), self.paths.netns(record.id)
        steps: list[Callable[[], None]] = [
            lambda: self.plugins.call("isolation", record.isolation, "delete",
                                      container_id=cid, bundle=bundle),
            lambda: self.networks.teardown(record),
            lambda: netns.delete(str(ns)),
            lambda: remove_tree(bundle),
        ]
        if _has_volumes(record):
            steps.insert(1, lambda: self.volumes.unmount(cid))
        _run_undos(list(reversed(steps)), raise_first=True)

    def check(self, repair: bool = False) -> list[str]:
        """Ask the owning plugins whether what the state records is on the host: every
        layer snapshot (storage ``stat``) and every running container (isolation
        ``state``, network ``check``); and, once no operation runs, collect what
        nothing names (:class:`pinnace.collector.Collector`). Return what is wrong;
        with ``repair``, forget the missing layers, remove what nothing names, finish
        what crashed operations began, and kill the broken containers (their monitors
        then tear them down), waiting for them to exit."""
        from pinnace.runtime.status import Status

        self.reconcile()
        problems: dict[str, list[str]] = {}
        for record in self.containers.active():
            found = []
            state = self.plugins.call("isolation", record.isolation, "state",
                                      container_id=record.id, bundle=self.paths.bundle(record.id))
            if state.status == Status.STOPPED:
                found.append(f"its {record.isolation} isolation sees it stopped")
            elif state.pid and record.pid and state.pid != record.pid:
                found.append(f"its process is {state.pid}, recorded as {record.pid}")
            if record.status == "running":
                found += self.networks.check(record)
            if found:
                problems[record.id] = found
        if repair:
            for cid in problems:
                with contextlib.suppress(NotFound, FailedPrecondition):
                    self.kill(cid, 9, by_user=True)
                    self.wait_exit(cid, 30)
        with self.operations.exclusive(forget_crashed=repair) as intents:
            collected = self._resume_paused(intents, repair) + \
                self._remove_build_containers(intents, repair) + self.layers.check(repair) + \
                self.volumes.check(repair) + self.collector.run(intents, repair)
        return collected + [
            f"container {self.containers.get(cid).label}: {line}"
            for cid, lines in problems.items() for line in lines]

    def storage_usage(self) -> list[StorageUsage]:
        """For each storage plugin holding snapshots: how many, and the space they use
        (asked of the plugin)."""
        from pinnace.storage_usage import storage_usage

        return storage_usage(self.state, self.containers, self.plugins)

    # ------------------------------------------------------------ queries
    def resolve(self, ref: str) -> str:
        """A container ID from a name, a full ID or a unique ID prefix."""
        return self.containers.find(ref)

    def list(self, all_: bool = False) -> list[ContainerRecord]:
        """Containers, newest first; only running (and paused) ones unless ``all_``."""
        out = []
        for record in self.containers.all():
            if record.active:
                try:
                    record = self._reconcile(record)
                except NotFound:  # a --rm container whose monitor died: removed now
                    continue
            if all_ or record.active:
                out.append(record)
        return out

    def container(self, ref: str) -> ContainerRecord:
        """One container, reconciled with the host."""
        return self.current(self.resolve(ref))

    @_operation("rmi")
    def remove_image(self, ref: str, force: bool = False) -> Any:
        """``rmi``: untag/delete an image, then drop layer snapshots no image needs any more."""
        result = self.state.with_room(lambda: self.images.remove(
            ref, force=force, in_use=self.containers.names_using_image))
        self.layers.drop(result.orphan_chain_ids)
        return result

    def prune_images(self, all_: bool = False,
                     wanted: Callable[[Image], bool] | None = None) -> list[Any]:
        """``image prune``: remove untagged images (every image with ``all_``) that no
        container uses (of those ``wanted`` picks); return the removal results."""
        results = []
        for image in self.images.list():
            if (image.tags and not all_) or self.containers.names_using_image(image.id) or \
                    (wanted is not None and not wanted(image)):
                continue
            results.append(self.remove_image(image.id, force=True))
        return results

    @_operation("commit")
    def commit(self, ref: str, reference: str | None, message: str = "", author: str = "",
               changes: Sequence[str] = (), pause: bool = True,
               step: Step | None = None) -> str:
        """A new image from container ``ref``'s changes, tagged ``reference``; its ID.

        A running container is paused while its files are read unless ``pause`` is false.
        ``step`` (``build``) gives the new image's whole container config and history line."""
        from pinnace.images import commit
        from pinnace.net.etcfiles import FILES

        record = self.container(ref)
        with self._frozen(record, "commit", pause):
            return commit.commit(self.plugins, self.images, record, self.paths.run_root,
                                 {f"etc/{name}" for name in FILES}, reference, message,
                                 author, changes, step)

    @_operation("cp")
    def copy(self, source: tuple[str | None, str], dest: tuple[str | None, str],
             options: CopyOptions, stream: BinaryIO) -> None:
        """``cp``: each end is (a container reference, or None for the host; a path), one of
        them a container's; the path ``-`` stands for ``stream``, a tar. A running
        container's files are read and written while it runs (through the resolver)."""
        from pinnace.images import copy

        with contextlib.ExitStack() as stack:
            ends = [stack.enter_context(self._copy_end(ref, path)) if path != "-" else stream
                    for ref, path in (source, dest)]
            owner = self._copy_owner(dest[0]) if dest[0] is not None else (os.geteuid(),
                                                                             os.getegid())
            copy.copy(ends[0], ends[1], options, owner)

    def _copy_owner(self, ref: str) -> tuple[int, int]:
        """Who owns what ``cp`` writes into container ``ref`` on disk: root, or the host
        ids container root is when the storage shifted the container's files."""
        spec = self.container(ref).config.spec
        if not spec.rootfs_shifted:
            return 0, 0
        from pinnace.runtime.userns import host_id

        return host_id(spec.uid_map, 0), host_id(spec.gid_map, 0)

    @contextlib.contextmanager
    def _copy_end(self, ref: str | None, path: str) -> Iterator[Side]:
        """One end of ``cp``: a container's rootfs (open for the block) or the host's root."""
        from pinnace import rootfs
        from pinnace.images.copy import Side

        if ref is None:
            with rootfs.opened_root("/") as root:
                yield Side(root, path if path.startswith("/") else f"{os.getcwd()}/{path}", path)
            return
        with self.container_path(ref, path) as (root, inner):
            yield Side(root, inner, f"{ref}:{path}")

    @contextlib.contextmanager
    def container_path(self, ref: str, path: str) -> Iterator[tuple[int, str]]:
        """Where ``path`` of container ``ref`` is, for the block: a descriptor of the root
        its lookups stay in and the path under it. That root is the container's root
        filesystem, or the host directory of the volume or bind mounted at or above
        ``path`` (the deepest), as ``cp`` sees files in volumes."""
        from pinnace import rootfs
        from pinnace.images import commit

        record = self.container(ref)
        normal = os.path.normpath("/" + path.lstrip("/"))
        under = [m for m in record.config.spec.mounts
                 if (m.type == "volume" or m.type == "bind" and os.path.isdir(m.source))
                 and (normal == m.destination or normal.startswith(m.destination.rstrip("/")
                                                                   + "/"))]
        if under:
            mount = max(under, key=lambda m: len(m.destination))
            inner = "/" + normal[len(mount.destination):].lstrip("/")
            if path.endswith("/") and inner != "/":
                inner += "/"
            with rootfs.opened_root(self._mount_source(mount)) as root:
                yield root, inner
            return
        with commit.container_rootfs(self.plugins, record, self.paths.run_root) as top, \
                rootfs.opened_root(top) as root:
            yield root, path

    def _mount_source(self, mount: MountPoint) -> str:
        """The host directory of a bind or volume mount."""
        if mount.type == "bind":
            return mount.source
        volume = self.volumes.get(mount.source)
        info, _ = self.volumes.details(volume)
        return info.mountpoint or volume.mountpoint

    @_operation("diff")  # a view of the image, which the collector must not take meanwhile
    def diff(self, ref: str) -> list[Change]:
        """What container ``ref`` changed in its image's files (``diff``), read while it runs."""
        from pinnace.images import commit
        from pinnace.net.etcfiles import FILES

        return commit.changes(self.plugins, self.images, self.container(ref),
                              self.paths.run_root, {f"etc/{name}" for name in FILES})

    def export(self, ref: str, fd: int) -> None:
        """Write container ``ref``'s root filesystem as a tar to ``fd`` (a running container
        is paused meanwhile)."""
        from pinnace.images import commit

        record = self.container(ref)
        with self._frozen(record, "export", True):
            commit.export(self.plugins, record, self.paths.run_root, fd)

    @contextlib.contextmanager
    def _frozen(self, record: ContainerRecord, verb: str, pause: bool) -> Iterator[None]:
        """Keep a running ``record`` paused for the block (when ``pause``), resumed after,
        also on failure; one already paused (or not running) is left as it is."""
        if not pause or record.status != "running":
            yield
            return
        if not self.plugins.implements("isolation", record.isolation, "pause"):
            hint = " (use --no-pause to read it while it runs)" if verb == "commit" else ""
            raise FailedPrecondition(f"cannot {verb} running container {record.label}: "
                                     f"isolation {record.isolation} cannot pause it{hint}")
        with self.operation(verb) as lease:
            lease.note(UNPAUSE, id=record.id)  # for the collector, should this process die
            self.pause(record.id)
            try:
                faults.point(f"{verb}.paused")
                yield
            finally:
                if self.current(record.id).status == "paused":
                    self.unpause(record.id)

    # ------------------------------------------------------------ networks
    def network_remove(self, name: str) -> str:
        """``network rm``: refused while a container (a live one) uses it."""
        self.reconcile()
        with self.operation("network-rm") as lease:
            return self.networks.remove(name, lease)

    def network_prune(self, wanted: Callable[[Network], bool] | None = None) -> list[str]:
        """Remove every network no container uses (of those ``wanted`` picks); return their
        names."""
        self.reconcile()
        removed = []
        with self.operation("network-rm") as lease:
            for network in self.networks.list():
                if wanted is not None and not wanted(network):
                    continue
                with contextlib.suppress(FailedPrecondition):  # in use (checked atomically)
                    removed.append(self.networks.remove(network.name, lease))
        return removed

    def network_connect(self, name: str, ref: str, ip: str | None = None,
                        aliases: Sequence[str] = ()) -> None:
        """Connect a container to a network (now, when it runs), found there by its name
        and ``aliases``."""
        self.reconcile()
        self.networks.connect(name, self.current(self.resolve(ref)), ip, aliases)

    def network_disconnect(self, name: str, ref: str) -> None:
        """Disconnect a container from a network (now, when it runs)."""
        self.networks.disconnect(name, self.current(self.resolve(ref)))

    def network(self, name: str) -> Network:
        """The network called ``name``."""
        return self.networks.get(name)


def _has_volumes(record: ContainerRecord) -> bool:
    """Whether the container mounts volumes, as its stored spec says (the spec is parsed
    only when its text names one: a container being made has none yet)."""
    if '"volume"' not in record.config_json:
        return False
    return any(point.type == "volume" for point in record.config.spec.mounts)


def _health(opts: RunOptions, image_config: dict[str, Any]) -> HealthConfig | None:
    """The health check of a new container; nothing of health checks is imported for a
    container without one."""
    flags = (opts.health_cmd, opts.health_interval, opts.health_timeout,
             opts.health_start_period, opts.health_retries)
    if all(f is None for f in flags) and not opts.no_healthcheck \
            and not image_config.get("Healthcheck"):
        return None
    from pinnace.runtime.healthcheck import HealthFlags, config

    return config(HealthFlags(*flags, disabled=opts.no_healthcheck),
                  image_config.get("Healthcheck"))


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
