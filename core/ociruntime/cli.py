"""The command line of ``pinnace-runtime``: runc's grammar (global flags, then a command).

Errors go to stderr and, with ``--log``, to the log file as runc writes them (``--log-format
json``: one ``{"level": "error", "msg": ..., "time": ...}`` object a line, which containerd
reads back); the exit status is then 1.
"""

from __future__ import annotations

import json
import os
import sys
from types import SimpleNamespace
from typing import Any, NoReturn

SPEC_VERSION = "1.0.2"


class Log:
    """Where ``--log`` and ``--log-format`` send messages."""

    def __init__(self, path: str, fmt: str, debug: bool) -> None:
        self.path, self.fmt, self.debug_on = path, fmt, debug

    def write(self, level: str, msg: str) -> None:
        """Append one line at ``level`` to the log file (stderr without one, for debug)."""
        import time

        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        line = (json.dumps({"level": level, "msg": msg, "time": stamp}) if self.fmt == "json"
                else f'time="{stamp}" level={level} msg="{msg}"')
        if self.path:
            with open(self.path, "a") as f:
                f.write(line + "\n")
        elif level == "debug":
            sys.stderr.write(line + "\n")

    def debug(self, msg: str) -> None:
        """A debug line, with ``--debug`` only."""
        if self.debug_on:
            self.write("debug", msg)


def signal_number(text: str) -> int:
    """A signal by number or name (``9``, ``KILL``, ``SIGKILL``)."""
    import signal

    from pinnace.errors import InvalidConfig

    if text.isdigit():
        return int(text)
    name = text.upper()
    try:
        return int(signal.Signals[name if name.startswith("SIG") else "SIG" + name])
    except KeyError:
        raise InvalidConfig(f"unknown signal {text!r}") from None


def _preserve(count: int) -> None:
    """Close on exec every descriptor above 2 + ``count`` (those below reach the process)."""
    from pinnace.errors import InvalidConfig

    if count:
        raise InvalidConfig("--preserve-fds is not supported (the container's process "
                            "gets stdin, stdout and stderr only)")
    for name in os.listdir("/proc/self/fd"):
        if int(name) > 2:
            try:
                os.set_inheritable(int(name), False)
            except OSError:
                continue


def run_command(args: SimpleNamespace) -> int:
    """Carry out one parsed command; return the exit status."""
    from pinnace.errors import InvalidConfig
    from pinnace.ociruntime.containers import Runtime

    rt = Runtime(args.root, args.isolation)
    cmd = args.command
    if cmd in ("create", "run"):
        if args.systemd_cgroup:
            raise InvalidConfig("--systemd-cgroup is not supported: pinnace-runtime manages "
                                "cgroups through cgroupfs (give cgroupsPath as a path)")
        _preserve(args.preserve_fds)
        bundle = args.bundle if os.path.isabs(args.bundle) or args.bundle != "." else os.getcwd()
        rt.create(args.id, bundle, args.console_socket, args.pid_file if cmd == "create" else "")
        if cmd == "create":
            return 0
        return _run(rt, args)
    if cmd == "start":
        rt.start(args.id)
    elif cmd == "state":
        print(json.dumps(rt.state(args.id), indent=2))
    elif cmd == "kill":
        rt.kill(args.id, signal_number(args.signal or "SIGTERM"), args.all)
    elif cmd == "delete":
        rt.delete(args.id, args.force)
    elif cmd == "exec":
        return _exec(rt, args)
    elif cmd in ("pause", "resume"):
        rt.pause(args.id, cmd == "pause")
    elif cmd == "ps":
        pids = rt.pids(args.id)
        print(json.dumps(pids) if args.format == "json"
              else "\n".join(["PID", *(str(p) for p in pids)]))
    elif cmd == "update":
        text = sys.stdin.read() if args.resources == "-" else open(args.resources).read()
        rt.update(args.id, json.loads(text))
    elif cmd == "list":
        _list(rt, args)
    elif cmd == "features":
        from pinnace.ociruntime.info import features

        print(json.dumps(features(), indent=2))
    elif cmd == "spec":
        from pinnace.ociruntime.info import write_spec

        if args.rootless:
            raise InvalidConfig("--rootless is not supported")
        write_spec(args.bundle)
    return 0


def _run(rt: Any, args: SimpleNamespace) -> int:
    """``run``: start the created container; without --detach forward signals, wait and
    delete it, exiting with its status."""
    import signal

    from pinnace.ociruntime.containers import write_pid_file

    if args.detach:
        if args.pid_file:
            write_pid_file(args.pid_file, rt.state(args.id)["pid"])
        rt.start(args.id)
        return 0
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT,
                signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(sig, lambda n, _f: rt.kill(args.id, n))
    try:
        rt.start(args.id)
        return rt.wait(args.id)
    finally:
        rt.delete(args.id, force=True)


def _exec(rt: Any, args: SimpleNamespace) -> int:
    from pinnace.errors import InvalidConfig
    from pinnace.ociruntime.containers import write_pid_file
    from pinnace.runtime.oci import process_from_json
    from pinnace.runtime.watch import exit_code

    _preserve(args.preserve_fds)
    if args.process:
        with open(args.process) as f:
            process = process_from_json(json.load(f))
    elif args.args:
        process = process_from_json({"args": args.args, "cwd": args.cwd or "/",
                                     "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:"
                                             "/usr/bin:/sbin:/bin", *args.env]})
    else:
        raise InvalidConfig("exec needs --process FILE or a command")
    if args.tty:
        process.terminal = True
    pid = rt.exec(args.id, process, args.console_socket)
    if args.pid_file:
        write_pid_file(args.pid_file, pid)
    if args.detach:
        return 0
    _, status = os.waitpid(pid, 0)
    return exit_code(status)


def _list(rt: Any, args: SimpleNamespace) -> None:
    states = [rt.state(i) for i in rt.ids()]
    if args.quiet:
        print("\n".join(s["id"] for s in states))
    elif args.format == "json":
        print(json.dumps(states))
    else:
        print(f"{'ID':<24}{'PID':<10}{'STATUS':<10}{'BUNDLE':<40}CREATED")
        for s in states:
            print(f"{s['id']:<24}{s['pid']:<10}{s['status']:<10}{s['bundle']:<40}{s['created']}")


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``pinnace-runtime``."""
    from pinnace.errors import PinnaceError
    from pinnace.ociruntime.grammar import parse, usage

    try:
        args = parse(sys.argv[1:] if argv is None else argv)
    except PinnaceError as err:
        sys.stderr.write(f"pinnace-runtime: {err} (see pinnace-runtime --help)\n")
        _exit(2)
    if args.help:
        print(usage(args.command), end="")
        _exit(0)
    if args.version:
        from pinnace import __version__

        print(f"pinnace-runtime version {__version__}\nspec: {SPEC_VERSION}")
        _exit(0)
    if not args.command:
        sys.stderr.write(usage())
        _exit(1)
    log = Log(args.log, args.log_format, args.debug)
    log.debug(f"{args.command} {args.id}")
    try:
        code = run_command(args)
    except (PinnaceError, OSError) as err:
        message = str(err) if isinstance(err, PinnaceError) else f"{err.strerror}: {err}"
        log.write("error", message)
        sys.stderr.write(f"pinnace-runtime: {message}\n")
        code = 1
    _exit(code)


def _exit(code: int) -> NoReturn:
    """Flush stdout and stderr and leave at once: the interpreter's own exit, which tears
    down every module, costs more than some whole commands."""
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except OSError:  # a reader that went away
        code = code or 1
    os._exit(code)
