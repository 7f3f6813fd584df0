"""Container endpoints: create, start, stop, kill, restart, pause, unpause, wait, attach,
resize, logs, list, inspect, top, stats, changes, export, archive, rename, update,
prune, delete."""

from __future__ import annotations

import json
import os
import socket
import threading
from typing import TYPE_CHECKING, Any

from pinnace.errors import FailedPrecondition, InvalidConfig, NotFound
from pinnace.serve.http import NotModified
from pinnace.serve.streams import content_type, frame, quietly, shutdown

if TYPE_CHECKING:
    from pinnace.serve.http import Request

HOLD = 10.0
"""Seconds a container started after an attach request waits for that attach."""
TMPFS_IMPLIED = ("noexec", "nosuid", "nodev")
"""Options every ``--tmpfs`` mount gets, which docker's ``HostConfig.Tmpfs`` leaves out."""
KILL_WAIT = 10.0
"""Seconds a SIGKILL's answer waits for the container to stop."""


def create(req: Request) -> None:
    """``POST /containers/create?name=``."""
    from pinnace.serve.shapes import run_options

    options = run_options(req.json(), req.arg("name"))
    image, command = options.pop("image"), options.pop("command")
    cid = req.client.create(image, command, **options)
    req.reply(201, {"Id": cid, "Warnings": []})


def start(req: Request) -> None:
    """``POST /containers/{id}/start``: under a monitor of its own; when a client asked to
    attach to it first, the monitor waits for that attach before reading output."""
    client = req.client
    cid = client.engine.resolve(req.params["id"])
    if client.container(cid).active:
        raise NotModified("already running")
    execs = req.server.execs
    client.start(cid, hold=HOLD if execs.attach_pending(cid) else 0.0)
    execs.started()


def stop(req: Request) -> None:
    """``POST /containers/{id}/stop?t=``."""
    client = req.client
    record = client.container(req.params["id"])
    if not record.active:
        raise NotModified("not running")
    client.stop(record.id, req.number("t", 10))


def kill(req: Request) -> None:
    """``POST /containers/{id}/kill?signal=``: a SIGKILL (the default) answers once the
    container has stopped, as docker's does."""
    import signal

    from pinnace.runtime.policy import parse_signal

    client = req.client
    record = client.container(req.params["id"])
    if not record.active:
        raise FailedPrecondition(f"Container {record.id} is not running")
    number = parse_signal(req.arg("signal") or "KILL")
    client.kill(record.id, number)
    if number == signal.SIGKILL:
        client.wait(record.id, timeout=KILL_WAIT)


def restart(req: Request) -> None:
    """``POST /containers/{id}/restart?t=``."""
    req.client.restart(req.params["id"], req.number("t", 10))


def pause(req: Request) -> None:
    """``POST /containers/{id}/pause``."""
    req.client.pause(req.params["id"])


def unpause(req: Request) -> None:
    """``POST /containers/{id}/unpause``."""
    req.client.unpause(req.params["id"])


def wait(req: Request) -> None:
    """``POST /containers/{id}/wait?condition=``: headers at once, the exit code when it
    comes."""
    client = req.client
    cid = client.engine.resolve(req.params["id"])
    condition = req.arg("condition") or "not-running"
    client.container(cid)  # a missing one is a 404, before the headers
    stream = req.stream()
    try:
        code = client.wait(cid, condition)
        stream.json({"StatusCode": code, "Error": None})
    except NotFound:
        stream.json({"StatusCode": -1, "Error": {"Message": f"No such container: {cid}"}})
    stream.end()


def attach(req: Request) -> None:
    """``POST /containers/{id}/attach?stream=&stdin=&stdout=&stderr=&logs=``: hijacked;
    multiplexed frames without a tty, raw with one; the client's half-close closes the
    container's stdin."""
    client = req.client
    record = client.container(req.params["id"])
    tty = record.config.run.tty
    wanted = {s for s in ("stdout", "stderr") if req.flag(s)}
    stdin = req.flag("stdin") and record.config.run.interactive
    if req.flag("logs"):
        past = [frame(e.stream, e.log.encode(), tty)
                for e in client.logs(record.id) if e.stream in wanted]
    else:
        past = []
    if not req.flag("stream", True) or not (record.active or record.status == "created"):
        sock = req.hijack(content_type(tty))
        sock.sendall(b"".join(past))
        return
    execs = req.server.execs
    execs.expect_attach(record.id)
    try:
        sock = req.hijack(content_type(tty))
        sock.sendall(b"".join(past))
        monitor = _monitor_when_started(req, record.id)
    finally:
        execs.attached(record.id)
    if monitor is None:
        return
    try:
        _relay(req, sock, monitor, tty, wanted, stdin)
    finally:
        monitor.close()


def _monitor_when_started(req: Request, cid: str) -> socket.socket | None:
    """A connection to the container's monitor once it runs (it may start later); None
    when it ends or goes first."""
    import time

    from pinnace.polling import LONGEST

    client = req.client
    deadline = time.monotonic() + 24 * 3600
    while time.monotonic() < deadline:
        try:
            record = client.container(cid)
        except NotFound:
            return None
        if record.active:
            try:
                return client.attach(cid, wait=HOLD)
            except FailedPrecondition:
                return None
        if record.status == "exited" and record.started:
            return None
        req.server.execs.pause(LONGEST)  # started by another client or the CLI: polled
    return None


def _relay(req: Request, sock: socket.socket, monitor: socket.socket, tty: bool,
           wanted: set[str], stdin: bool) -> None:
    """Copy the monitor's output frames to the client and, with ``stdin``, the client's
    bytes to the container's stdin, until the output ends or, with a tty, the client
    types the detach keys (``detachKeys``; the container runs on)."""
    from pinnace.runtime.watch import CLOSE_STDIN, FRAME, STDIN, STREAM_FRAMES, frames
    from pinnace.serve.streams import DetachScanner, detach_sequence

    kinds = {v: k for k, v in STREAM_FRAMES.items()}
    scanner = DetachScanner(detach_sequence(req.arg("detachKeys"))) if tty else None

    def forward_input() -> None:
        while data := req.read_hijacked():
            detached = False
            if scanner is not None:
                data, detached = scanner.feed(data)
            if data:
                monitor.sendall(FRAME.pack(STDIN, len(data)) + data)
            if detached:  # the output loop ends with the monitor's connection
                monitor.shutdown(socket.SHUT_RDWR)
                return
        monitor.sendall(FRAME.pack(CLOSE_STDIN, 0))

    if stdin:
        threading.Thread(target=quietly, args=(forward_input,), daemon=True).start()
    buf = b""
    while chunk := _receive(monitor):
        complete, buf = frames(buf + chunk)
        out = b"".join(frame(kinds[kind], payload, tty) for kind, payload in complete
                       if kinds.get(kind) in wanted)
        if out:
            sock.sendall(out)
    shutdown(sock)


def _receive(conn: socket.socket) -> bytes:
    """What comes next from ``conn``; b"" at its end or once it was shut down."""
    try:
        return conn.recv(65536)
    except OSError:
        return b""


def resize(req: Request) -> None:
    """``POST /containers/{id}/resize?h=&w=``: the pty's size, through its monitor."""
    from pinnace.runtime.watch import FRAME, RESIZE

    client = req.client
    record = client.container(req.params["id"])
    if not record.config.run.tty:
        return
    monitor = client.attach(record.id)
    try:
        payload = f"{req.number('h', 24)} {req.number('w', 80)}".encode()
        monitor.sendall(FRAME.pack(RESIZE, len(payload)) + payload)
    finally:
        monitor.close()


def logs(req: Request) -> None:
    """``GET /containers/{id}/logs?follow=&stdout=&stderr=&since=&until=&timestamps=&tail=``."""
    client = req.client
    record = client.container(req.params["id"])
    tty = record.config.run.tty
    wanted = {s for s in ("stdout", "stderr") if req.flag(s)}
    if not wanted:
        raise InvalidConfig("you must choose at least one stream")
    tail = req.arg("tail") or "all"
    if tail != "all" and not tail.lstrip("-").isdigit():
        raise InvalidConfig(f"invalid tail {tail!r}")
    since = req.arg("since")
    until = req.arg("until")
    entries = client.logs(record.id, req.flag("follow"),
                          None if tail == "all" or int(tail) < 0 else int(tail),
                          since if since not in (None, "", "0") else None,
                          until if until not in (None, "", "0") else None)
    stream = req.stream(content_type(tty))
    stamps = req.flag("timestamps")
    for entry in entries:
        if entry.stream in wanted:
            text = f"{entry.time} {entry.log}" if stamps else entry.log
            stream.write(frame(entry.stream, text.encode(), tty))
    stream.end()


def listing(req: Request) -> None:
    """``GET /containers/json?all=&limit=&filters=``."""
    from pinnace.serve.shapes import container_summary, matches

    client = req.client
    filters = req.filters()
    wanted_all = req.flag("all") or any(k in filters for k in ("status", "exited"))
    out = []
    for c in client.containers(all_=wanted_all):
        summary = container_summary(client.engine, c)
        values = {"id": [c.id], "name": [c.name], "status": [c.status],
                  "ancestor": [c.image, c.image_id], "label": _labels(summary["Labels"]),
                  "exited": [str(c.exit_code)] if c.status == "exited" else [],
                  "network": list(summary["NetworkSettings"]["Networks"]) or [c.network],
                  "volume": [], "before": [], "since": [], "health": ["none"],
                  "is-task": ["false"]}
        if matches(values, filters):
            out.append(summary)
    limit = req.number("limit", -1)
    req.reply(200, out[:limit] if limit > 0 else out)


def _labels(labels: dict[str, str]) -> list[str]:
    return [*labels, *(f"{k}={v}" for k, v in labels.items())]


def inspect(req: Request) -> None:
    """``GET /containers/{id}/json``."""
    from pinnace.serve.shapes import HOST_CONFIG_DEFAULTS

    details = req.client.inspect(req.params["id"])
    record = req.client.container(details["Id"])
    run = record.config.run
    details["Config"].update(AttachStdin=run.interactive, AttachStdout=not run.interactive,
                             AttachStderr=not run.interactive, StdinOnce=False,
                             Labels=record.config.labels, Entrypoint=None,
                             ExposedPorts={}, Volumes=None)
    host = details["HostConfig"]
    binds = [f"{m['Source']}:{m['Destination']}" + (":ro" if not m["RW"] else "")
             for m in details["Mounts"] if m["Type"] == "bind"]
    tmpfs = {m.destination: ",".join(o for o in m.options if o not in TMPFS_IMPLIED)
             for m in record.config.spec.mounts if m.type == "tmpfs"}
    host.update(Binds=binds or None, Tmpfs=tmpfs or None, Runtime=record.isolation)
    for key, value in HOST_CONFIG_DEFAULTS.items():
        host.setdefault(key, value)
    graph = details["GraphDriver"]  # docker's Data maps names to strings
    graph["Data"] = {k: v if isinstance(v, str) else json.dumps(v)
                     for k, v in graph["Data"].items()}
    details["State"].setdefault("Health", None)
    req.reply(200, details)


def top(req: Request) -> None:
    """``GET /containers/{id}/top?ps_args=``."""
    from pinnace import inspection

    client = req.client
    record = client.container(req.params["id"])
    if not record.active:
        raise FailedPrecondition(f"Container {record.id} is not running")
    args = (req.arg("ps_args") or "").split()
    titles, rows = inspection.processes(client.engine, record.id, args)
    req.reply(200, {"Titles": titles, "Processes": rows})


def stats(req: Request) -> None:
    """``GET /containers/{id}/stats?stream=``: cgroup counters, docker's shape."""
    import time

    from pinnace.runtime import cgroups

    client = req.client
    record = client.container(req.params["id"])
    cgroup = cgroups.container_cgroup(record.id)

    def sample() -> dict[str, Any]:
        values = _cgroup_values(cgroup.path) if record.active else {}
        return {"id": record.id, "name": f"/{record.name}", "read": _now(),
                "pids_stats": {"current": values.get("pids", 0)},
                "cpu_stats": {"cpu_usage": {"total_usage": values.get("cpu", 0) * 1000},
                              "system_cpu_usage": int(time.monotonic() * 1e9),
                              "online_cpus": os.cpu_count() or 1},
                "memory_stats": {"usage": values.get("memory", 0),
                                 "limit": values.get("memory_max", 0)},
                "precpu_stats": {}, "blkio_stats": {}, "networks": {}}

    if not req.flag("stream", True):
        req.reply(200, sample())
        return
    stream = req.stream()
    while True:
        stream.json(sample())
        if not client.container(record.id).active:
            break
        time.sleep(1)
    stream.end()


def _cgroup_values(path: Any) -> dict[str, int]:
    from pathlib import Path

    values: dict[str, int] = {}
    base = Path(path)
    for name, key in (("memory.current", "memory"), ("pids.current", "pids")):
        try:
            values[key] = int((base / name).read_text())
        except (OSError, ValueError):
            pass
    try:
        text = (base / "memory.max").read_text().strip()
        values["memory_max"] = int(text) if text.isdigit() else _mem_total()
    except OSError:
        pass
    try:
        for line in (base / "cpu.stat").read_text().splitlines():
            key, _, value = line.partition(" ")
            if key == "usage_usec":
                values["cpu"] = int(value)
    except OSError:
        pass
    return values


def _mem_total() -> int:
    with open("/proc/meminfo", encoding="ascii") as f:
        return int(f.readline().split()[1]) * 1024


def _now() -> str:
    from pinnace.runtime.watch import timestamp

    return timestamp()


def changes(req: Request) -> None:
    """``GET /containers/{id}/changes``: Kind 0 modified, 1 added, 2 deleted."""
    kinds = {"C": 0, "A": 1, "D": 2}
    found = req.client.engine.diff(req.params["id"])
    req.reply(200, [{"Path": c.path, "Kind": kinds[c.kind]} for c in found])


def export(req: Request) -> None:
    """``GET /containers/{id}/export``: the root filesystem as a tar."""
    client = req.client
    record = client.container(req.params["id"])
    req.stream_from(lambda other, fd: other.export(record.id, fd))


def archive_get(req: Request) -> None:
    """``GET``/``HEAD /containers/{id}/archive?path=``: a tar of ``path``, its stat in the
    ``X-Docker-Container-Path-Stat`` header."""
    import base64
    import tempfile

    client = req.client
    path = req.arg("path")
    if not path:
        raise InvalidConfig("path is required")
    record = client.container(req.params["id"])
    stat = _path_stat(client, record.id, path)
    header = {"X-Docker-Container-Path-Stat": base64.b64encode(
        json.dumps(stat).encode()).decode()}
    if req.method == "HEAD":
        req.reply(200, headers=header, raw=b"", content_type="application/x-tar")
        return
    with tempfile.TemporaryFile() as tar:
        client.copy_from(record.id, path, tar)
        tar.seek(0)
        req.reply(200, headers=header, raw=tar.read(), content_type="application/x-tar")


def _path_stat(client: Any, cid: str, path: str) -> dict[str, Any]:
    """docker's stat of a path in the container: Go's mode bits."""
    import stat as stats

    from pinnace.runtime.watch import timestamp

    found = client.stat(cid, path)
    mode = stats.S_IMODE(found.mode)
    if stats.S_ISDIR(found.mode):
        mode |= 1 << 31
    elif stats.S_ISLNK(found.mode):
        mode |= 1 << 27
    return {"name": found.name, "size": found.size, "mode": mode,
            "mtime": timestamp(found.mtime), "linkTarget": found.link_target}


def archive_put(req: Request) -> None:
    """``PUT /containers/{id}/archive?path=``: unpack the tar in the body into ``path``."""
    client = req.client
    path = req.arg("path")
    if not path:
        raise InvalidConfig("path is required")
    record = client.container(req.params["id"])
    with req.body_file() as tar:
        client.copy_to(record.id, path, tar)
    req.reply(200)


def rename(req: Request) -> None:
    """``POST /containers/{id}/rename?name=``."""
    name = req.arg("name")
    if not name:
        raise InvalidConfig("name is required")
    req.client.rename(req.params["id"], name)


UNSUPPORTED_UPDATES = ("BlkioWeight", "CpuRealtimePeriod", "CpuRealtimeRuntime",
                       "CpusetMems", "KernelMemory", "MemoryReservation")
"""Fields of an update body pinnace has no limit for (refused when set)."""


def update(req: Request) -> None:
    """``POST /containers/{id}/update``: memory, swap, CPU quota (``NanoCpus`` or
    ``CpuQuota``/``CpuPeriod``), CPU shares, cpuset, PIDs limit and restart policy;
    unset and zero fields are left as they are."""
    body = req.json()
    from pinnace.serve.shapes import limit_options, restart_policy

    refused = [key for key in UNSUPPORTED_UPDATES if body.get(key)]
    if refused:
        raise InvalidConfig(f"pinnace does not update {', '.join(refused)}")
    changes = limit_options(body)
    if body.get("PidsLimit") == 0:  # 0 lifts the limit
        changes["pids_limit"] = -1
    restart = restart_policy(body.get("RestartPolicy") or {})
    if restart:
        changes["restart"] = restart
    req.client.update(req.params["id"], **changes)
    req.reply(200, {"Warnings": []})


def prune(req: Request) -> None:
    """``POST /containers/prune``: the space reclaimed is what their snapshots held."""
    from pinnace.disk_usage import container_size

    client = req.client
    sizes = {c.id: container_size(client.engine, c) for c in client.containers(all_=True)
             if not c.active}
    gone = client.prune()
    req.reply(200, {"ContainersDeleted": gone,
                    "SpaceReclaimed": sum(sizes.get(cid, 0) for cid in gone)})


def delete(req: Request) -> None:
    """``DELETE /containers/{id}?force=&v=``."""
    client = req.client
    record = client.container(req.params["id"])
    if record.active and not req.flag("force"):
        raise FailedPrecondition(
            f"You cannot remove a running container {record.id}. Stop the container "
            "before attempting removal or force remove")
    client.remove(record.id, force=req.flag("force"), volumes=req.flag("v"))
