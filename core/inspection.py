"""``pinnace inspect``: containers and networks as docker-shaped JSON, and ``top``'s process
list."""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pinnace.engine import Engine
    from pinnace.network import Network

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
        },
        "HostConfig": {
            "NetworkMode": c.network,
            "Isolation": c.isolation,
            "RestartPolicy": {"Name": run.restart.name, "MaximumRetryCount": run.restart.max},
            "AutoRemove": run.auto_remove,
            "ReadonlyRootfs": spec.readonly_rootfs,
            **_limits_and_security(asdict(spec)),
            "LogConfig": {"Type": "json-file", "Config": {
                k: str(v) for k, v in (("max-size", run.log.max_size),
                                       ("max-file", run.log.max_files)) if v}},
        },
        "Mounts": [],
        "GraphDriver": {"Name": c.storage, "Data": {
            "RootfsMounts": [{"Type": m.type, "Source": m.source,
                              "Options": list(m.options)} for m in spec.rootfs]}},
        "NetworkSettings": engine.networks.settings(c),
    }


def network(engine: Engine, net: Network) -> dict[str, Any]:
    """A network as ``network inspect`` shows it, with the names of the containers on it."""
    return {"Name": net.name, "Id": net.id, "Created": _time(net.created), "Scope": "local",
            "Driver": net.driver, "EnableIPv6": False, "Internal": net.internal,
            "IPAM": {"Config": [{"Subnet": net.subnet, "Gateway": net.gateway}]},
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
