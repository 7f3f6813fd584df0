"""A container's monitor: the process that starts it, carries its streams and finishes it.

pinnace has no daemon. In the foreground the ``pinnace`` process itself is
the monitor (:mod:`pinnace.monitor.foreground`). For ``run -d``, ``start``
and restarts, :func:`pinnace.monitor.starter.start_detached` forks one: it starts the container
with its streams on pipes (or a pty), tells the CLI it started (or why
not) and watches it for :data:`FIRST_WATCH` seconds: a container done by
then is finished right there. Otherwise it execs :mod:`pinnace.runtime.watch`
as a bare script to keep its memory small while it logs and waits. When the
container exits, the watcher execs ``python -m pinnace.monitor.detached``
which records the exit, tears the runtime down and applies the restart
policy, going round again.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NoReturn

from pinnace.errors import NotFound, PinnaceError

FIRST_WATCH = 1.0
"""Seconds the monitor watches a container it started itself before it execs the slim
watcher: a short run (``run --rm ... true``) is finished without two more interpreters."""

if TYPE_CHECKING:
    from pinnace.engine import Engine
    from pinnace.runtime.console import ConsoleSocket
    from pinnace.runtime.healthcheck import HealthConfig


@dataclass
class Streams:
    """The monitor's ends of a container's stdio, and the container's ends until it starts."""

    stdio: tuple[int, int, int] | None
    outputs: dict[int, str] = field(default_factory=dict)
    stdin: int | None = None
    console: ConsoleSocket | None = None
    interactive: bool = False
    directory: str = ""
    _theirs: list[int] = field(default_factory=list)

    @property
    def console_path(self) -> str:
        """The console socket the runtime sends the pty master to ("" without a tty)."""
        return self.console.path if self.console else ""

    def started(self) -> None:
        """The container holds its ends now: close ours of theirs, take the pty master."""
        for fd in self._theirs:
            os.close(fd)
        self._theirs.clear()
        if self.console is not None:
            try:
                master = self.console.receive()
            finally:
                self.console.close()
            self.outputs = {master: "stdout"}
            self.stdin = master if self.interactive else None

    def close(self) -> None:
        """Close everything (after a failed start)."""
        for fd in {*self._theirs, *self.outputs, *([self.stdin] if self.stdin else [])}:
            os.close(fd)
        if self.console is not None:
            self.console.close()


def open_streams(bundle: str, tty: bool, interactive: bool, stdin: int | None = None) -> Streams:
    """Pipes for stdout and stderr (or a console socket for a pty), and stdin:
    ``stdin`` passed straight through when given, else a pipe with
    ``interactive``, else /dev/null."""
    os.makedirs(bundle, exist_ok=True)
    if tty:
        from pinnace.runtime.console import ConsoleSocket

        return Streams(None, console=ConsoleSocket(os.path.join(bundle, "console.sock")),
                       interactive=interactive, directory=bundle)
    out_r, out_w = os.pipe2(os.O_CLOEXEC)
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    theirs = [out_w, err_w]
    mine_stdin = None
    if stdin is None:
        if interactive:
            stdin, mine_stdin = os.pipe2(os.O_CLOEXEC)
        else:
            stdin = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
        theirs.append(stdin)
    return Streams((stdin, out_w, err_w), {out_r: "stdout", err_r: "stderr"}, mine_stdin,
                   interactive=interactive, directory=bundle, _theirs=theirs)


def fork_monitor(engine: Engine, cid: str, report: int, hold: float) -> None:
    """In the monitor's parent: fork the monitor, which starts the container and reports
    on ``report``."""
    if os.fork() == 0:
        _detach(engine, cid)
        serve(engine, cid, report, hold)


def open_engine(settings: dict[str, str | None]) -> Engine:
    """The engine of :func:`settings`' output."""
    from pinnace import config
    from pinnace.engine import Engine

    return Engine(config.load(settings["config"], {"root": settings["root"],
                                                   "run_root": settings["run_root"]}))


def _detach(engine: Engine, cid: str) -> None:
    """Leave the CLI's session and terminal; the monitor's own errors go to a file."""
    os.setsid()
    log_dir = engine.paths.log(cid).parent
    log_dir.mkdir(parents=True, exist_ok=True)
    null = os.open("/dev/null", os.O_RDWR)
    errors = os.open(log_dir / "monitor.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(null, 0)
    os.dup2(null, 1)
    os.dup2(errors, 2)
    os.close(null)
    os.close(errors)


def serve(engine: Engine, cid: str, report: int | None, hold: float = 0.0) -> NoReturn:
    """In the monitor: start the container, report on ``report``, watch it; finish it
    and start it again as its restart policy says. Only the watcher carries on past
    :data:`FIRST_WATCH` seconds of a run (this process execs it)."""
    try:
        while True:
            code = _start_and_watch(engine, cid, report, hold)
            report, hold = None, 0.0
            if not _finish(engine, cid, code):
                break
    except BaseException:
        import traceback

        traceback.print_exc()
        os._exit(1)
    os._exit(0)


def _start_and_watch(engine: Engine, cid: str, report: int | None, hold: float) -> int:
    """Start the container, report on ``report``, watch it for :data:`FIRST_WATCH`
    seconds: its exit code when it ended by then; otherwise exec the watcher, which
    goes on with the same session."""
    from pinnace.runtime import watch

    run = engine.containers.get(cid).config.run
    streams = open_streams(str(engine.paths.bundle(cid)), run.tty, run.interactive)
    try:
        pid = engine.start(cid, stdio=streams.stdio, console_socket=streams.console_path,
                           restart=report is None)
        streams.started()
    except BaseException as err:
        streams.close()
        if report is not None:
            code = err.exit_code if isinstance(err, PinnaceError) else 125
            os.write(report, json.dumps({"error": str(err) or type(err).__name__,
                                         "code": code}).encode())
        elif isinstance(err, PinnaceError):  # a restart: the monitor's log keeps why not
            print(f"no restart: {err}", file=sys.stderr)
        else:
            import traceback

            traceback.print_exc()
        os._exit(1)
    log = engine.paths.log(cid)
    log.parent.mkdir(parents=True, exist_ok=True)
    log.touch()  # before the start is reported: a client following the log opens it now
    if report is not None:
        os.write(report, b"ok")
        os.close(report)
    finish = [sys.executable, "-m", "pinnace.monitor.detached", settings(engine), cid]
    args = {"pid": pid, "outputs": {str(fd): s for fd, s in streams.outputs.items()},
            "stdin": streams.stdin, "tty": run.tty,
            "log": str(engine.paths.log(cid)), "max_size": run.log.max_size,
            "max_files": run.log.max_files,
            "attach": str(engine.paths.bundle(cid) / "attach.sock"), "finish": finish,
            "health": health_timer(engine, cid, run.health), "hold": hold}
    session = watch.open_session(args)
    first = 0.0 if run.health else FIRST_WATCH  # health checks are the watcher's alone
    code = watch.watch(args, session, time.monotonic() + first)
    if code is not None:
        if session.stdin is not None:  # the pty master, or the pipe nobody closed
            os.close(session.stdin)
        return code
    args.update(session.handover(), hold=0.0)
    os.execv(sys.executable, [sys.executable, "-I", "-S", watch.__file__, json.dumps(args)])


def settings(engine: Engine) -> str:
    """What a process the monitor starts needs to open the same engine (config, roots)."""
    cfg = engine.config
    return json.dumps({"config": str(cfg.file) if cfg.file else None, "root": str(cfg.root),
                       "run_root": str(cfg.run_root)})


def health_timer(engine: Engine, cid: str, health: HealthConfig | None) -> dict | None:
    """The watcher's health check: its interval and the command of one check (None: none)."""
    if health is None:
        return None
    return {"interval": health.interval,
            "command": [sys.executable, "-m", "pinnace.monitor.health", settings(engine), cid]}


def _finish(engine: Engine, cid: str, code: int) -> bool:
    """The container exited with ``code`` (-1 unknown): record it and tear down; True
    when its restart policy starts it again (after the policy's back-off)."""
    from pinnace.runtime.policy import backoff

    if not engine.finish(cid, None if code < 0 else code):
        return False
    try:
        time.sleep(backoff(engine.containers.get(cid).restart_count - 1))
        record = engine.containers.get(cid)
    except NotFound:  # removed meanwhile
        return False
    return not record.stop_requested and record.status == "exited"


def finish_main(argv: list[str]) -> None:
    """``python -m pinnace.monitor.detached SETTINGS CID CODE``: the watcher saw the
    container exit; record it, tear down, and restart it when its policy says so."""
    settings, cid, code_text = json.loads(argv[0]), argv[1], argv[2]
    engine = open_engine(settings)
    if _finish(engine, cid, int(code_text)):
        serve(engine, cid, None)


if __name__ == "__main__":
    finish_main(sys.argv[1:])
    os._exit(0)  # without the interpreter's teardown (a checkpoint of the state's WAL)
