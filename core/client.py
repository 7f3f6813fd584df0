"""The Python API: :class:`Client`, what ``pinnace``'s CLI and ``pinnace serve`` call.

A client is one front-end over a root's state, like the CLI: there is no
daemon. Containers started through it run under a monitor of their own (as
``pinnace run -d`` does), log their output, and keep running when the
program that started them exits. See docs/api.md for examples.

A :class:`Client` (like the :class:`~pinnace.engine.Engine` it wraps) belongs
to one thread: its state connection is SQLite's. Make one per thread.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, TextIO

from pinnace.errors import InvalidConfig, NotFound

if TYPE_CHECKING:
    import socket

    from pinnace.build.builder import BuildOptions
    from pinnace.containers.options import RunOptions
    from pinnace.containers.record import ContainerRecord
    from pinnace.engine import Engine
    from pinnace.events import Event
    from pinnace.images.store import Image
    from pinnace.monitor.detached import Streams
    from pinnace.network import Network
    from pinnace.runtime.logs import Entry
    from pinnace.volumes.service import Volume

WAIT_CONDITIONS = ("not-running", "next-exit", "removed")


@dataclass
class Exec:
    """A process started in a container by :meth:`Client.exec_start`: its PID and our
    ends of its streams (``streams.outputs`` fd -> ``stdout``/``stderr``, a pty master
    for both with a terminal; ``streams.stdin`` when it reads input)."""

    container: str
    pid: int
    streams: Streams
    closing: threading.Lock = field(default_factory=threading.Lock, repr=False,
                                    compare=False)
    """Held while stdin is closed: a thread that forwards input and one that waits may
    both close it, and a descriptor closed twice may by then be another one's."""

    def wait(self) -> int:
        """Wait for it to exit; its exit code (128 + N when killed by signal N)."""
        from pinnace.monitor.execution import end_exec
        from pinnace.runtime.watch import exit_code

        _, status = os.waitpid(self.pid, 0)
        self.close_stdin()
        end_exec(self.streams)
        return exit_code(status)

    def write_stdin(self, data: bytes) -> bool:
        """Write ``data`` to its stdin; False when that is closed (it ended, or input was
        closed): a number no longer ours is never written to."""
        with self.closing:
            fd = self.streams.stdin
            if fd is None:
                return False
            while data:
                data = data[os.write(fd, data):]
            return True

    def close_stdin(self) -> None:
        """Close its stdin (its end of input; with a pty, the pty itself)."""
        with self.closing:
            fd, self.streams.stdin = self.streams.stdin, None
            if fd is not None:
                os.close(fd)

    def read(self, handle: Callable[[str, bytes], None]) -> None:
        """Hand each piece of its output to ``handle(stream, data)`` until it ends (both
        streams closed), then close our ends of them."""
        import select

        outputs = dict(self.streams.outputs)
        poller = select.poll()  # not select(): a server's descriptors may pass 1024
        for fd in outputs:
            poller.register(fd, select.POLLIN)
        try:
            while outputs:
                for fd, _ in poller.poll():
                    try:
                        data = os.read(fd, 65536)
                    except OSError:  # EIO: a pty whose last process ended
                        data = b""
                    if data:
                        handle(outputs[fd], data)
                    else:
                        del outputs[fd]
                        poller.unregister(fd)
        finally:
            for fd in self.streams.outputs:
                if fd != self.streams.stdin:
                    os.close(fd)
            self.streams.outputs = {}


@dataclass(frozen=True)
class ExecResult:
    """What :meth:`Client.exec_run` returns: the exit code and the collected output."""

    exit_code: int
    stdout: bytes
    stderr: bytes


@dataclass(frozen=True)
class PathStat:
    """A path in a container: its name, size, mode (``st_mode``), mtime, symlink target."""

    name: str
    size: int
    mode: int
    mtime: float
    link_target: str


class Client:
    """Containers, images, networks and volumes of one root (``/var/lib/pinnace`` by
    default, as the CLI's ``--root``)."""

    def __init__(self, root: str | os.PathLike[str] | None = None,
                 config_file: str | os.PathLike[str] | None = None,
                 engine: Engine | None = None) -> None:
        if engine is None:
            from pinnace import config
            from pinnace.engine import Engine

            overrides = {"root": str(root)} if root is not None else {}
            engine = Engine(config.load(str(config_file) if config_file else None, overrides))
        self.engine = engine

    def close(self) -> None:
        """Close the state's connection (a long-lived program making a client per thread
        closes each when its thread is done)."""
        self.engine.close()

    # ------------------------------------------------------------ containers
    def create(self, image: str, command: Sequence[str] = (), **options: Any) -> str:
        """Create a container from ``image``; its ID. ``options`` are ``run``'s, by the
        names of :class:`pinnace.containers.options.RunOptions` (``name``, ``env``,
        ``ports``, ``volumes``, ``labels``, ``tty``, ``interactive``, ``auto_remove`` ...)."""
        return self.engine.create(self._options(image, command, options))

    @staticmethod
    def _options(image: str, command: Sequence[str], options: dict[str, Any]) -> RunOptions:
        from pinnace.containers.options import RunOptions

        unknown = set(options) - set(RunOptions._fields)
        if unknown:
            raise InvalidConfig(f"unknown container options: {', '.join(sorted(unknown))}")
        return RunOptions(image=image, command=tuple(command), **options)

    def start(self, ref: str, hold: float = 0.0) -> str:
        """Start a created or exited container under a monitor of its own, logging its
        output; return once it runs. With ``hold`` the monitor reads no output until a
        first :meth:`attach` (or ``hold`` seconds), so an attach made just before the
        start misses nothing."""
        from pinnace.monitor.starter import start_detached

        cid = self.engine.resolve(ref)
        start_detached(self.engine, cid, hold)
        return cid

    def run(self, image: str, command: Sequence[str] = (), **options: Any) -> str:
        """:meth:`create` then :meth:`start` (``run -d``); its ID."""
        return self.run_with(self._options(image, command, options))

    def run_with(self, opts: RunOptions) -> str:
        """Create a container from ``opts`` and start it; its ID. One made with
        ``auto_remove`` that fails to start is removed."""
        cid = self.engine.create(opts)
        try:
            self.start(cid)
        except Exception:
            if opts.auto_remove:
                self.engine.remove(cid, force=True)
            raise
        return cid

    def wait(self, ref: str, condition: str = "not-running",
             timeout: float | None = None) -> int | None:
        """Block until the container is no longer running (``not-running``), has exited
        once more from now on (``next-exit``: a created one, after its start) or is gone
        (``removed``); its exit code (-1 unknown), or None on timeout."""
        import time

        from pinnace import events
        from pinnace.polling import Pauses

        if condition not in WAIT_CONDITIONS:
            raise InvalidConfig(f"invalid wait condition {condition!r}: "
                                f"one of {', '.join(WAIT_CONDITIONS)}")
        cid = self.engine.resolve(ref)
        deadline = None if timeout is None else time.monotonic() + timeout
        finished = self.engine.current(cid).finished
        pauses = Pauses()
        try:
            while True:
                try:
                    record = self.engine.current(cid)
                except NotFound:  # removed (--rm, rm -f): its last exit is in the events
                    code = events.last_exit_code(self.engine.state, cid)
                    return -1 if code is None else code
                done = not record.active and (
                    condition == "not-running"
                    or (condition == "next-exit" and record.finished != finished))
                if done:
                    return -1 if record.exit_code is None else record.exit_code
                if deadline is not None and time.monotonic() >= deadline:
                    return None
                if record.active:
                    pauses.watch(record.monitor_pid)
                pauses.sleep()
        finally:
            pauses.close()

    def stop(self, ref: str, timeout: float = 10.0) -> None:
        """SIGTERM, SIGKILL after ``timeout`` seconds; returns once it has exited."""
        self.engine.stop(self.engine.resolve(ref), timeout)

    def kill(self, ref: str, signal: int = 9) -> None:
        """Send ``signal`` to the container's first process (a user's stop: no restart)."""
        self.engine.kill(self.engine.resolve(ref), signal, by_user=True)

    def restart(self, ref: str, timeout: float = 10.0) -> None:
        """Stop (if running) and start again."""
        cid = self.engine.resolve(ref)
        self.engine.stop(cid, timeout)
        self.start(cid)

    def pause(self, ref: str) -> None:
        """Freeze the container's processes."""
        self.engine.pause(self.engine.resolve(ref))

    def unpause(self, ref: str) -> None:
        """Thaw a paused container."""
        self.engine.unpause(self.engine.resolve(ref))

    def rename(self, ref: str, name: str) -> None:
        """Give the container another name."""
        self.engine.rename(self.engine.resolve(ref), name)

    def update(self, ref: str, **changes: Any) -> str:
        """Change the container's limits (at once when it runs) and restart policy;
        ``changes`` by the names of :class:`pinnace.containers.options.LimitChanges`
        (``memory``, ``memory_swap``, ``cpus``, ``cpu_shares``, ``cpuset_cpus``,
        ``pids_limit``, ``restart``). Its ID."""
        from pinnace.containers.options import LimitChanges

        unknown = set(changes) - set(LimitChanges._fields)
        if unknown:
            raise InvalidConfig(f"unknown update options: {', '.join(sorted(unknown))}")
        return self.engine.update(ref, LimitChanges(**changes))

    def commit(self, ref: str, reference: str | None = None, message: str = "",
               author: str = "", changes: Sequence[str] = (), pause: bool = True) -> str:
        """A new image from the container's changes, tagged ``reference``; its ID.
        ``changes``: Dockerfile instructions (CMD, ENTRYPOINT, ENV, WORKDIR, USER, LABEL,
        EXPOSE...); a running container is paused while it is read unless ``pause`` is
        false."""
        return self.engine.commit(ref, reference, message, author, changes, pause)

    def remove(self, ref: str, force: bool = False, volumes: bool = False) -> str:
        """Remove a container (``force``: a running one too; ``volumes``: its anonymous
        volumes); its ID."""
        return self.engine.remove(ref, force=force, volumes=volumes)

    def prune(self) -> list[str]:
        """Remove every stopped container; their IDs."""
        return self.engine.prune()

    def containers(self, all_: bool = False) -> list[ContainerRecord]:
        """Containers, newest first: running ones, or every one with ``all_``."""
        return self.engine.list(all_=all_)

    def container(self, ref: str) -> ContainerRecord:
        """One container's record (reconciled with the host)."""
        return self.engine.container(ref)

    def inspect(self, ref: str) -> dict[str, Any]:
        """A container as ``docker inspect`` shows it."""
        from pinnace import inspection

        return inspection.container(self.engine, self.engine.resolve(ref))

    # ------------------------------------------------------------ streams
    def logs(self, ref: str, follow: bool = False, tail: int | None = None,
             since: str | None = None, until: str | None = None) -> Iterator[Entry]:
        """The container's log entries (stream, text, RFC 3339 time); with ``follow``
        the new ones too, until it stops. ``since``/``until``: RFC 3339, Unix time or
        a duration before now (``10m``)."""
        from pinnace.runtime import logs as log_files

        cid = self.engine.resolve(ref)
        lo = log_files.parse_time(since) if since else None
        hi = log_files.parse_time(until) if until else None
        path = self.engine.paths.log(cid)
        if not follow:
            yield from log_files.read(path, tail, lo, hi)
            return
        yield from log_files.read_and_follow(
            path, lambda: self._active(cid), tail, lo, hi)

    def _active(self, cid: str) -> bool:
        try:
            return self.engine.container(cid).active
        except NotFound:
            return False

    def attach(self, ref: str, wait: float = 5.0) -> socket.socket:
        """A connection to a running container's monitor, in the framed protocol of
        :mod:`pinnace.runtime.watch`: its output arrives as ``1``/``2`` frames; send
        ``0`` frames for its stdin, ``e`` to close it, ``r`` ``"ROWS COLS"`` to resize
        its pty. ``wait``: seconds for a container just started to have one."""
        from pinnace.monitor.attach import connect

        return connect(self.engine, self.engine.resolve(ref), wait)

    def exec_start(self, ref: str, command: Sequence[str], env: Sequence[str] = (),
                   workdir: str | None = None, user: str | None = None, tty: bool = False,
                   stdin: bool = False) -> Exec:
        """Start ``command`` in the running container with its streams on pipes (a pty
        with ``tty``); read and write them, then :meth:`Exec.wait`."""
        from pinnace.monitor.execution import start_exec

        cid = self.engine.resolve(ref)
        process = self.engine.exec_process(cid, list(command), list(env), workdir, user, tty)
        pid, streams = start_exec(self.engine, cid, process, stdin)
        return Exec(cid, pid, streams)

    def exec_run(self, ref: str, command: Sequence[str], **options: Any) -> ExecResult:
        """Run ``command`` in the running container to its end; its exit code and output
        (``options`` as :meth:`exec_start`'s, without ``stdin``)."""
        process = self.exec_start(ref, command, **options)
        chunks: dict[str, list[bytes]] = {"stdout": [], "stderr": []}
        process.read(lambda stream, data: chunks[stream].append(data))
        return ExecResult(process.wait(), b"".join(chunks["stdout"]), b"".join(chunks["stderr"]))

    def events(self, since: float | None = None, until: float | None = None,
               follow: bool = False) -> Iterator[Event]:
        """Recorded events, oldest first, from ``since`` (Unix time; with ``follow`` and
        no ``since``, from now) to ``until``; with ``follow`` new ones as they come."""
        import time

        from pinnace import events

        state = self.engine.state
        after = events.last_id(state) if follow and since is None else 0
        while True:
            found = events.read(state, after, since, until)
            yield from found
            if found:
                after = found[-1].id
            if not follow or (until is not None and time.time() > until):
                return
            time.sleep(0.1)

    # ------------------------------------------------------------ images
    def images(self) -> list[Image]:
        """Every image in the store."""
        return self.engine.images.list()

    def image(self, ref: str) -> Image:
        """One image, by name, ID or ID prefix."""
        return self.engine.images.resolve(ref)

    def image_inspect(self, ref: str) -> dict[str, Any]:
        """An image as ``docker image inspect`` shows it."""
        return self.engine.images.inspect(ref)

    def pull(self, reference: str, progress: Any = None, tls_verify: bool | None = None,
             platform: str | None = None) -> str:
        """Pull ``reference`` (``NAME[:TAG]``, or ``TRANSPORT:REF``); the image ID.
        ``progress``: a :class:`pinnace.progress.Progress`-like sink, or None."""
        from pinnace.images.sources import TransferOptions

        return self.engine.pull(reference, TransferOptions(
            platform=platform, tls_verify=tls_verify, progress=progress))

    def push(self, image: str, destination: str | None = None, progress: Any = None,
             tls_verify: bool | None = None) -> str:
        """Push ``image`` to ``destination`` (default: its own name); the digest pushed."""
        from pinnace.images.sources import TransferOptions

        return self.engine.sources.push(image, destination or image, TransferOptions(
            tls_verify=tls_verify, progress=progress))

    def login(self, server: str, username: str, password: str,
              tls_verify: bool | None = None) -> None:
        """Check and store credentials for a registry."""
        from pinnace.images.sources import TransferOptions

        self.engine.sources.login(server, username, password,
                                  TransferOptions(tls_verify=tls_verify))

    def tag(self, source: str, target: str) -> None:
        """Tag image ``source`` as ``target``."""
        self.engine.images.tag(source, target)

    def remove_image(self, ref: str, force: bool = False) -> Any:
        """Untag, and delete when no tag is left (``rmi``); the removal's result."""
        return self.engine.remove_image(ref, force=force)

    def prune_images(self, all_: bool = False) -> list[Any]:
        """Remove unused untagged images (every unused one with ``all_``)."""
        return self.engine.prune_images(all_=all_)

    def load(self, archive: BinaryIO, label: str = "stdin") -> list[Image]:
        """Load the images of a docker-archive, OCI archive read from ``archive`` (a
        binary file, read to its end); the images loaded."""
        import shutil

        from pinnace.errors import writing
        from pinnace.images.archive import load as load_archive

        engine = self.engine
        with engine.operation("load"), engine.images.scratch_file(label) as tmp:
            with writing(f"the archive read from {label}", tmp, engine.images.root), \
                    open(tmp, "xb") as f:
                shutil.copyfileobj(archive, f, 1 << 20)
            return load_archive(engine.images, tmp, label=label)

    def import_image(self, source: Path | BinaryIO, reference: str | None = None,
                     changes: Sequence[str] = (), message: str = "") -> str:
        """A one-layer image from a rootfs: a tar (plain or compressed) or directory at
        ``source``, or a binary stream of a tar; tagged ``reference``; its ID."""
        if isinstance(source, Path) and not source.exists():
            raise NotFound(f"import source {source} does not exist")
        with self.engine.operation("import"):
            return self.engine.images.import_rootfs(source, reference, changes, message)

    def build(self, context: str | BinaryIO, options: BuildOptions,
              dockerfile: str | None = None, out: TextIO | None = None,
              echo: dict[str, int] | None = None) -> str:
        """Build an image from a Dockerfile; its ID. ``context``: a directory, or a binary
        stream of a tar (or of a Dockerfile alone); ``dockerfile``: a path relative to
        the working directory for a directory context, inside the tar for a stream
        (default ``Dockerfile`` in the context). Progress lines go to ``out`` (standard
        output by default), the output of RUN steps to the descriptors of ``echo``
        (``stdout``/``stderr`` -> fd; 1 and 2 by default)."""
        import sys

        from pinnace.build import context as contexts
        from pinnace.build.builder import Builder
        from pinnace.build.dockerfile import parse

        for tag in options.tags:
            self.engine.images.tag_reference(tag)  # a bad name fails before anything is built
        name, stream = (context, sys.stdin.buffer) if isinstance(context, str) else \
            ("-", context)
        with contexts.opened(name, dockerfile, stream) as opened:
            parsed = parse(opened.dockerfile)
            return Builder(self.engine, options, out or sys.stdout, parsed, opened.tree,
                           echo).build()

    def save(self, refs: Sequence[str], fd: int, fmt: str = "docker-archive") -> None:
        """Write the images ``refs`` name as one archive (``docker-archive`` or
        ``oci-archive``) to ``fd``."""
        from pinnace.images.archive import save as save_archive

        for ref in refs:  # an unknown name fails before anything is written
            self.engine.images.find(ref)
        save_archive(self.engine.images, list(refs), fd, fmt)

    def history(self, ref: str) -> list[dict[str, Any]]:
        """The image's history rows, newest first (``Id``, ``Created``, ``CreatedBy``,
        ``Size``, ``Comment``)."""
        from pinnace.images.store import history

        return history(self.engine.images.resolve(ref))

    # ------------------------------------------------------------ networks
    def networks(self) -> list[Network]:
        """Every named network."""
        return self.engine.networks.list()

    def network(self, name: str) -> Network:
        """One network, by name or ID."""
        return self.engine.network(name)

    def network_inspect(self, name: str) -> dict[str, Any]:
        """A network as ``docker network inspect`` shows it."""
        from pinnace import inspection

        return inspection.network(self.engine, self.engine.network(name))

    def network_create(self, name: str, driver: str = "bridge", subnet: str = "",
                       gateway: str = "", internal: bool = False,
                       options: dict[str, str] | None = None,
                       labels: dict[str, str] | None = None) -> Network:
        """Create a network of ``driver`` (a network plugin with named networks)."""
        return self.engine.networks.create(name, driver, subnet, gateway, internal,
                                           options or {}, labels or {})

    def network_remove(self, name: str) -> str:
        """Remove a network no container uses; its name."""
        return self.engine.network_remove(name)

    def network_prune(self) -> list[str]:
        """Remove every network no container uses; their names."""
        return self.engine.network_prune()

    def network_connect(self, name: str, ref: str, ip: str | None = None,
                        aliases: Sequence[str] = ()) -> None:
        """Connect a container to a network; the other containers there reach it by its
        name and ``aliases``."""
        self.engine.network_connect(name, ref, ip, aliases)

    def network_disconnect(self, name: str, ref: str) -> None:
        """Disconnect a container from a network."""
        self.engine.network_disconnect(name, ref)

    # ------------------------------------------------------------ volumes
    def volumes(self) -> list[Volume]:
        """Every volume."""
        return self.engine.volumes.list()

    def volume_create(self, name: str | None = None, driver: str | None = None,
                      options: dict[str, str] | None = None,
                      labels: dict[str, str] | None = None) -> Volume:
        """Create a volume (a random name without ``name``)."""
        return self.engine.volumes.create(name, driver, options or {}, labels or {})

    def volume_inspect(self, name: str) -> dict[str, Any]:
        """A volume as ``docker volume inspect`` shows it."""
        from pinnace import inspection

        return inspection.volume(self.engine, name)

    def volume_remove(self, name: str, force: bool = False) -> str:
        """Remove a volume no container uses."""
        return self.engine.volumes.remove(name, force=force)

    def volume_prune(self, all_: bool = False) -> list[str]:
        """Remove unused anonymous volumes (named ones too with ``all_``)."""
        return self.engine.volumes.prune(all_)

    # ------------------------------------------------------------ files
    def copy_from(self, ref: str, path: str, out: Any) -> None:
        """Write ``path`` of the container as a tar to the binary file ``out``."""
        from pinnace.images.copy import CopyOptions

        self.engine.copy((self.engine.resolve(ref), path), (None, "-"), CopyOptions(), out)

    def copy_to(self, ref: str, path: str, tar: Any) -> None:
        """Unpack the tar read from the binary file ``tar`` into directory ``path`` of the
        container."""
        from pinnace.images.copy import CopyOptions

        self.engine.copy((None, "-"), (self.engine.resolve(ref), path), CopyOptions(), tar)

    def export(self, ref: str, fd: int) -> None:
        """Write the container's root filesystem as a tar to ``fd``."""
        self.engine.export(ref, fd)

    def stat(self, ref: str, path: str) -> PathStat:
        """What ``path`` is in the container (a final symlink not followed), looked up
        inside its root filesystem (or the volume or bind mounted there)."""
        import stat as stats

        from pinnace import rootfs

        with self.engine.container_path(ref, path) as (root, inner):
            try:
                parent, name = rootfs.open_parent(root, inner, False)
            except FileNotFoundError:
                raise NotFound(f"no such file or directory: {ref}:{path}") from None
            try:
                st = os.stat(name, dir_fd=parent, follow_symlinks=False)
                target = os.readlink(name, dir_fd=parent) if stats.S_ISLNK(st.st_mode) else ""
            except FileNotFoundError:
                raise NotFound(f"no such file or directory: {ref}:{path}") from None
            finally:
                os.close(parent)
        return PathStat(os.path.basename(path.rstrip("/")) or "/", st.st_size, st.st_mode,
                        st.st_mtime, target)

    @property
    def root(self) -> Path:
        """The root directory this client works on."""
        return Path(self.engine.config.root)
