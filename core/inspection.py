"""``pinnace inspect``: containers and networks as docker-shaped JSON, and ``top``'s process
list."""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pathlib import Path

    from pinnace.containers.record import ContainerRecord
    from pinnace.engine import Engine
    from pinnace.network import Network
    from pinnace.runtime.spec import ContainerSpec

ZERO_TIME = "0001-01-01T00:00:00Z"


def _time(ts: float | None) -> str:
    from pinnace.runtime.watch import timestamp

    return timestamp(ts) if ts else ZERO_TIME


def container(engine: Engine, cid: str) -> dict[str, Any]:
    """State, Config, HostConfig, Mounts, GraphDriver and NetworkSettings of a container."""
    c = engine.container(cid)
    config = c.config
    spec, run = config.spec, config.run
    process = spec.process
    running = c.active
    return {
        "Id": c.id,
        "Created": _time(c.created),
        "Path": c.command[0] if c.command else "",
        "Args": c.command[1:],
        "State": {
            "Status": c.status,
            "Running": running,
            "Paused": c.status == "paused",
            "Restarting": False,
            "OOMKilled": c.oom_killed,
            "Dead": False,
            "Pid": c.pid if running else 0,
            "ExitCode": -1 if c.exit_code is None and c.status == "exited" else (c.exit_code or 0),
            "Error": "",
            "StartedAt": _time(c.started),
            "FinishedAt": _time(c.finished),
            **_health_state(engine, c.id, run.health is not None),
        },
        "Image": c.image_id,
        "Name": "/" + c.name,
        "RestartCount": c.restart_count,
        "Driver": c.storage,
        "LogPath": str(engine.paths.log(c.id)),
        "Config": {
            "Hostname": spec.hostname,
            "User": f"{process.user.uid}:{process.user.gid}",
            "Tty": run.tty,
            "OpenStdin": run.interactive,
            "Env": process.env,
            "Cmd": c.command,
            "Image": c.image,
            "WorkingDir": process.cwd,
            "Labels": config.labels,
            "StopSignal": _signal_name(run.stop_signal),
            **({"StopTimeout": run.stop_timeout} if run.stop_timeout is not None else {}),
            **({"Healthcheck": run.health.to_image()} if run.health else {}),
        },
        "HostConfig": {
            "NetworkMode": c.network,
            "Isolation": c.isolation,
            "RestartPolicy": {"Name": run.restart.name, "MaximumRetryCount": run.restart.max},
            "AutoRemove": run.auto_remove,
            "ReadonlyRootfs": spec.readonly_rootfs,
            **_limits_and_security(asdict(spec)),
            **_process_flags(spec),
            "LogConfig": {"Type": "json-file", "Config": {
                k: str(v) for k, v in (("max-size", run.log.max_size),
                                       ("max-file", run.log.max_files)) if v
                and (k, v) != ("max-file", 1)}},
        },
        "Mounts": mounts(engine, spec),
        "GraphDriver": {"Name": c.storage, "Data": {
            "RootfsMounts": [{"Type": m.type, "Source": m.source,
                              "Options": list(m.options)} for m in spec.rootfs]}},
        "NetworkSettings": engine.networks.settings(c),
    }


PROPAGATIONS = ("shared", "slave", "private", "rshared", "rslave", "rprivate")
ETC_FILES = ("/etc/hosts", "/etc/hostname", "/etc/resolv.conf")


def mounts(engine: Engine, spec: ContainerSpec) -> list[dict[str, Any]]:
    """The container's binds, volumes and tmpfs mounts as docker's ``Mounts`` lists them
    (not the /etc files or the init binary pinnace adds)."""
    from pinnace.containers.build import INIT_TARGET
    from pinnace.errors import NotFound

    out = []
    for m in spec.mounts:
        if m.destination in (*ETC_FILES, INIT_TARGET):
            continue
        writable = "ro" not in m.options
        entry = {"Type": m.type, "Source": m.source, "Destination": m.destination,
                 "Mode": "" if writable else "ro", "RW": writable, "Propagation": ""}
        if m.type == "bind":
            entry["Propagation"] = next((o for o in m.options if o in PROPAGATIONS),
                                        "rprivate")
        elif m.type == "volume":
            try:
                vol = engine.volumes.get(m.source)
            except NotFound:  # removed by force since
                continue
            entry.update(Name=vol.name, Source=vol.mountpoint, Driver=vol.driver)
        elif m.type == "tmpfs":
            entry["Source"] = ""
        out.append(entry)
    return out


def network(engine: Engine, net: Network) -> dict[str, Any]:
    """A network as ``network inspect`` shows it, with the names of the containers on it."""
    return {"Name": net.name, "Id": net.id, "Created": _time(net.created), "Scope": "local",
            "Driver": net.driver, "EnableIPv6": False, "Internal": net.internal,
            "IPAM": {"Driver": "default", "Options": None,
                     "Config": [{"Subnet": net.subnet, "Gateway": net.gateway}]},
            "Attachable": False, "Ingress": False, "ConfigOnly": False,
            "Options": net.options, "Labels": net.labels,
            "Containers": engine.networks.users(net.name)}


def _limits_and_security(runtime: dict[str, Any]) -> dict[str, Any]:
    """HostConfig's resource and security fields, from the runtime spec."""
    res, sec = runtime.get("resources") or {}, runtime.get("security") or {}
    period = res.get("cpu_period") or 0
    seccomp = sec.get("seccomp", "default")
    return {
        "Privileged": sec.get("privileged", False),
        "Memory": res.get("memory", 0), "MemorySwap": res.get("memory_swap", 0),
        "NanoCpus": res.get("cpu_quota", 0) * 1_000_000_000 // period if period else 0,
        "CpuShares": res.get("cpu_shares", 0), "CpusetCpus": res.get("cpuset_cpus", ""),
        "PidsLimit": res.get("pids_limit") or None,
        "Capabilities": sec.get("capabilities"),
        "SecurityOpt": [*(["no-new-privileges"] if sec.get("no_new_privileges") else []),
                        *([f"seccomp={seccomp}"] if isinstance(seccomp, str) else
                          ["seccomp=<profile>"])],
    }


def _health_state(engine: Engine, cid: str, checked: bool) -> dict[str, Any]:
    """``Health`` of a container with a check: its status and last results."""
    if not checked:
        return {}
    from pinnace.runtime import healthcheck

    found = healthcheck.read(str(engine.paths.health(cid))) or healthcheck.HealthStatus()
    return {"Health": found.to_docker()}


def _signal_name(number: int) -> str:
    import signal

    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)


def _process_flags(spec: ContainerSpec) -> dict[str, Any]:
    """HostConfig's fields of ``--init``, ``--ulimit``, ``--shm-size``, ``--sysctl``,
    ``--device`` and ``--pid/--ipc/--uts``, from the runtime spec."""
    from pinnace.containers.build import INIT_TARGET
    from pinnace.runtime.ulimits import NAMES

    names = {kernel: name for name, kernel in NAMES.items()}

    def mode(ns: str) -> str:
        if ns not in spec.namespaces:
            return "host"
        return spec.namespace_paths.get(ns, "private" if ns == "ipc" else "")

    return {
        "Init": spec.process.args[:1] == [INIT_TARGET],
        "Ulimits": [{"Name": names.get(r.type, r.type), "Soft": r.soft, "Hard": r.hard}
                    for r in spec.process.rlimits],
        "ShmSize": spec.shm_size,
        "Sysctls": dict(spec.sysctl),
        "Devices": [{"PathInContainer": d.path, "CgroupPermissions": rule.split()[-1]}
                    for d, rule in zip(spec.devices, _device_rules(spec), strict=True)],
        "PidMode": mode("pid"), "IpcMode": mode("ipc"), "UTSMode": mode("uts"),
    }


def _device_rules(spec: ContainerSpec) -> list[str]:
    """The allowlist rules ``--device`` added, in order (those naming each device's node)."""
    rules = {r.rsplit(" ", 1)[0]: r for r in spec.resources.devices}
    return [rules.get(f"{d.type} {d.major}:{d.minor}", "rwm") for d in spec.devices]


def processes(engine: Engine, cid: str, ps_args: list[str]) -> tuple[list[str], list[list[str]]]:
    """``top``: the host's ``ps`` output (``-ef`` unless other options are given)
    restricted to the container's processes, as headers and rows."""
    import subprocess

    from pinnace.errors import FailedPrecondition, Unavailable
    from pinnace.runtime import cgroups

    c = engine.container(cid)
    if not c.active:
        raise FailedPrecondition(f"container {c.name} is not running")
    pids = cgroups.container_cgroup(cid).pids()
    try:
        out = subprocess.run(["ps", *(ps_args or ["-ef"])], capture_output=True, text=True,
                             check=True).stdout
    except FileNotFoundError:
        raise Unavailable("top needs ps (Debian package procps)") from None
    except subprocess.CalledProcessError as err:
        raise FailedPrecondition(f"ps {' '.join(ps_args)} failed: {err.stderr.strip()}") from None
    lines = out.splitlines()
    headers = lines[0].split()
    if "PID" not in headers:
        raise FailedPrecondition("ps output has no PID column: include pid in the options")
    col = headers.index("PID")
    rows = []
    for line in lines[1:]:
        fields = line.split(None, len(headers) - 1)
        if len(fields) > col and fields[col].isdigit() and int(fields[col]) in pids:
            rows.append(fields)
    return headers, rows


def status(c: ContainerRecord, health: Path | None = None) -> str:
    """``Up 2 minutes (healthy)``, ``Exited (0) 3 seconds ago``: docker's STATUS column
    (``health`` is where the container's health check status would be)."""
    import time

    from pinnace.units import ago, duration

    if c.status == "running":
        return f"Up {duration(time.time() - (c.started or c.created))}{_health(health)}"
    if c.status == "paused":
        return f"Up {duration(time.time() - (c.started or c.created))} (Paused)"
    if c.status == "exited":
        code = "unknown" if c.exit_code is None else c.exit_code
        return f"Exited ({code}) {ago(c.finished)}".rstrip()
    return c.status.capitalize()


def _health(path: Path | None) -> str:
    """`` (healthy)``, `` (unhealthy)``, `` (health: starting)``, or nothing without a check."""
    if path is None or not path.exists():
        return ""
    from pinnace.runtime import healthcheck

    found = healthcheck.read(str(path))
    if found is None:
        return ""
    return " (health: starting)" if found.status == "starting" else f" ({found.status})"


def volume(engine: Engine, name: str) -> dict[str, Any]:
    """A volume as ``docker volume inspect`` shows it."""
    import datetime

    volumes = engine.volumes
    vol = volumes.get(name)
    info, scope = volumes.details(vol)
    created = datetime.datetime.fromtimestamp(vol.created, datetime.UTC).isoformat(
        timespec="seconds").replace("+00:00", "Z")
    entry: dict[str, Any] = {
        "CreatedAt": created, "Driver": vol.driver,
        "Labels": vol.labels or None, "Mountpoint": info.mountpoint or vol.mountpoint,
        "Name": vol.name, "Options": vol.options or None, "Scope": scope,
    }
    if info.status:
        entry["Status"] = info.status
    return entry
