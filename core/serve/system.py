"""System endpoints: ``/_ping``, ``/version``, ``/info``, ``/events``, ``/auth``,
``/system/df``."""

from __future__ import annotations

import os
import platform
import time
from typing import TYPE_CHECKING, Any

from pinnace.serve import API_VERSION, MIN_API_VERSION

if TYPE_CHECKING:
    from pinnace.events import Event
    from pinnace.serve.http import Request

_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}


def ping(req: Request) -> None:
    """``GET``/``HEAD /_ping``: ``OK`` with the API version in the headers."""
    req.reply(200, raw=b"OK", content_type="text/plain; charset=utf-8",
              headers={"Cache-Control": "no-cache, no-store, must-revalidate",
                       "Pragma": "no-cache", "Builder-Version": "1"})


def version(req: Request) -> None:
    """``GET /version``."""
    from pinnace import __version__

    kernel = platform.release()
    arch = _ARCH.get(platform.machine(), platform.machine())
    req.reply(200, {
        "Platform": {"Name": "pinnace"},
        "Components": [{"Name": "Engine", "Version": __version__, "Details": {
            "ApiVersion": API_VERSION, "MinAPIVersion": MIN_API_VERSION, "Os": "linux",
            "Arch": arch, "KernelVersion": kernel}}],
        "Version": __version__, "ApiVersion": API_VERSION, "MinAPIVersion": MIN_API_VERSION,
        "GitCommit": "", "GoVersion": f"python{platform.python_version()}", "Os": "linux",
        "Arch": arch, "KernelVersion": kernel, "BuildTime": "",
    })


def info(req: Request) -> None:
    """``GET /info``: counts, the selected plugins, the host."""
    from pinnace import __version__

    client = req.client
    containers = client.containers(all_=True)
    engine = client.engine
    states = [c.status for c in containers]
    with open("/proc/meminfo", encoding="ascii") as f:
        mem = int(f.readline().split()[1]) * 1024
    req.reply(200, {
        "ID": "pinnace", "Name": platform.node(), "ServerVersion": __version__,
        "Containers": len(states), "ContainersRunning": states.count("running"),
        "ContainersPaused": states.count("paused"),
        "ContainersStopped": len(states) - states.count("running") - states.count("paused"),
        "Images": len(client.images()), "Driver": engine.selected("storage"),
        "DriverStatus": [], "DockerRootDir": str(engine.config.root),
        "Plugins": {"Volume": [engine.selected("volume")],
                    "Network": [engine.selected("network")], "Log": ["json-file"]},
        "MemoryLimit": True, "SwapLimit": True, "CpuCfsPeriod": True, "CpuCfsQuota": True,
        "CPUShares": True, "CPUSet": True, "PidsLimit": True, "IPv4Forwarding": True,
        "OomKillDisable": False, "Debug": False, "NFd": 0, "NGoroutines": 0,
        "SystemTime": _rfc3339(time.time()), "LoggingDriver": "json-file",
        "CgroupDriver": "cgroupfs", "CgroupVersion": "2", "NEventsListener": 0,
        "KernelVersion": platform.release(), "OperatingSystem": "pinnace",
        "OSVersion": "", "OSType": "linux",
        "Architecture": platform.machine(), "IndexServerAddress": "https://index.docker.io/v1/",
        "RegistryConfig": {"AllowNondistributableArtifactsCIDRs": [],
                           "AllowNondistributableArtifactsHostnames": [],
                           "InsecureRegistryCIDRs": ["127.0.0.0/8"], "IndexConfigs": {},
                           "Mirrors": []},
        "NCPU": os.cpu_count() or 1, "MemTotal": mem, "GenericResources": None,
        "HttpProxy": "", "HttpsProxy": "", "NoProxy": "", "Labels": [],
        "ExperimentalBuild": False, "Runtimes": {}, "DefaultRuntime": "",
        "Swarm": {"LocalNodeState": "inactive", "NodeID": "", "NodeAddr": "",
                  "ControlAvailable": False, "Error": "", "RemoteManagers": None},
        "LiveRestoreEnabled": True, "Isolation": "", "InitBinary": "",
        "ContainerdCommit": {"ID": "", "Expected": ""}, "RuncCommit": {"ID": "", "Expected": ""},
        "InitCommit": {"ID": "", "Expected": ""}, "SecurityOptions": [], "Warnings": None,
    })


def _rfc3339(ts: float) -> str:
    from pinnace.runtime.watch import timestamp

    return timestamp(ts)


def event_message(event: Event, names: dict[str, str]) -> dict[str, Any]:
    """One event as docker's ``/events`` stream writes it."""
    attributes = {k: str(v) for k, v in event.attributes.items() if v is not None}
    if event.type == "container" and event.actor in names:
        attributes.setdefault("name", names[event.actor])
    if "exit_code" in event.attributes:
        attributes["exitCode"] = str(event.attributes["exit_code"])
    message: dict[str, Any] = {
        "Type": event.type, "Action": event.action,
        "Actor": {"ID": event.actor, "Attributes": attributes},
        "scope": "local", "time": int(event.time), "timeNano": int(event.time * 1e9),
    }
    if event.type == "container":
        message.update(status=event.action, id=event.actor, **(
            {"from": attributes["image"]} if "image" in attributes else {}))
    return message


def events(req: Request) -> None:
    """``GET /events``: recorded events from ``since``, then new ones until ``until``
    (or the client leaves); filters on type, event, container, image, network, volume."""
    from pinnace import events as recorded

    since = req.arg("since")
    until = req.arg("until")
    filters = req.filters()
    lo = float(since) if since else None
    hi = float(until) if until else None
    stream = req.stream()
    names = recorded.container_names(req.client.engine.state)
    for event in req.client.events(lo, hi, follow=True):
        if event.type == "container" and event.actor not in names:
            names = recorded.container_names(req.client.engine.state)
        message = event_message(event, names)
        if _wanted(message, filters):
            stream.json(message)
    stream.end()


def _wanted(message: dict[str, Any], filters: dict[str, list[str]]) -> bool:
    actor = message["Actor"]
    checks = {
        "type": [message["Type"]], "event": [message["Action"]],
        "container": [actor["ID"], actor["Attributes"].get("name", "")]
        if message["Type"] == "container" else None,
        "image": [actor["Attributes"].get("image", "")]
        if message["Type"] == "container" else [actor["ID"]],
        "network": [actor["ID"], actor["Attributes"].get("name", "")]
        if message["Type"] == "network" else None,
        "volume": [actor["ID"]] if message["Type"] == "volume" else None,
        "label": None,
    }
    for key, wanted in filters.items():
        have = checks.get(key)
        if have is None or not any(value in have or any(h.startswith(value) for h in have
                                                        if h and key == "container")
                                   for value in wanted):
            return False
    return True


def disk_usage(req: Request) -> None:
    """``GET /system/df``: images, containers and volumes with the space each uses."""
    from pinnace.disk_usage import disk_usage as measure
    from pinnace.serve.shapes import container_summary, image_summary

    client = req.client
    usage = measure(client.engine)
    req.reply(200, {
        "LayersSize": usage.summary()[0].size,
        "Images": [dict(image_summary(u.image), SharedSize=u.shared, Containers=u.containers)
                   for u in usage.images],
        "Containers": [dict(container_summary(client.engine, u.container), SizeRw=u.size,
                            SizeRootFs=0) for u in usage.containers],
        "Volumes": [dict(client.volume_inspect(u.volume.name),
                         UsageData={"Size": u.size, "RefCount": u.links})
                    for u in usage.volumes],
        "BuildCache": [],
    })


def swarm(req: Request) -> None:
    """``/swarm`` and ``/swarm/leave``: pinnace is never part of a swarm (docker's 503,
    which clients take as "not a swarm node")."""
    from pinnace.errors import Unavailable

    raise Unavailable("This node is not part of a swarm")


def auth(req: Request) -> None:
    """``POST /auth``: check and store credentials for a registry."""
    body = req.json()
    req.client.login(body.get("serveraddress") or "docker.io", body.get("username", ""),
                     body.get("password", ""))
    req.reply(200, {"Status": "Login Succeeded", "IdentityToken": ""})
