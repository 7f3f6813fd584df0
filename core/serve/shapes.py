"""Docker's JSON shapes, to and from pinnace's records: a create request's body as
``run``'s options, containers, images, networks and volumes as docker lists them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pinnace.errors import InvalidConfig

if TYPE_CHECKING:
    from pinnace.containers.record import ContainerRecord
    from pinnace.engine import Engine
    from pinnace.images.store import Image

DEFAULT_MODES = ("", "default")
"""NetworkMode values that mean the configured network plugin."""
MODES = ("none", "host", "bridge")


HOST_CONFIG_DEFAULTS: dict[str, Any] = {
    "Binds": None, "ContainerIDFile": "", "PortBindings": {}, "VolumeDriver": "",
    "VolumesFrom": None, "CapAdd": None, "CapDrop": None, "CgroupnsMode": "private",
    "Dns": [], "DnsOptions": [], "DnsSearch": [], "ExtraHosts": None, "GroupAdd": None,
    "Cgroup": "", "Links": None, "OomScoreAdj": 0, "PublishAllPorts": False,
    "UsernsMode": "", "ConsoleSize": [0, 0], "CgroupParent": "", "BlkioWeight": 0,
    "BlkioWeightDevice": [], "BlkioDeviceReadBps": None, "BlkioDeviceWriteBps": None,
    "BlkioDeviceReadIOps": None, "BlkioDeviceWriteIOps": None, "CpuPeriod": 0,
    "CpuQuota": 0, "CpuRealtimePeriod": 0, "CpuRealtimeRuntime": 0, "CpusetMems": "",
    "DeviceCgroupRules": None, "DeviceRequests": None, "KernelMemory": 0,
    "KernelMemoryTCP": 0, "MemoryReservation": 0, "MemorySwappiness": None,
    "OomKillDisable": False, "CpuCount": 0, "CpuPercent": 0, "IOMaximumIOps": 0,
    "IOMaximumBandwidth": 0, "MaskedPaths": None, "ReadonlyPaths": None,
}
"""HostConfig fields docker always shows, at the value they have when not asked for
(the cgroup namespace is private: pinnace gives every container one)."""


def run_options(body: dict[str, Any], name: str | None) -> dict[str, Any]:
    """``POST /containers/create``'s body as :class:`~pinnace.containers.options.RunOptions`
    fields (what docker's fields have no counterpart for is refused, not ignored, when
    it would change what runs)."""
    host = body.get("HostConfig") or {}
    image = body.get("Image")
    if not image:
        raise InvalidConfig("config is missing the image")
    entrypoint = body.get("Entrypoint")
    if isinstance(entrypoint, str):
        entrypoint = [entrypoint]
    command = list(body.get("Cmd") or [])
    opts: dict[str, Any] = {"image": image, "name": name or None}
    if entrypoint:
        opts["entrypoint"] = entrypoint[0]
        command = list(entrypoint[1:]) + command
    opts["command"] = command
    opts["env"] = list(body.get("Env") or [])
    for field, key in (("workdir", "WorkingDir"), ("user", "User"), ("hostname", "Hostname")):
        if body.get(key):
            opts[field] = body[key]
    opts["labels"] = {str(k): str(v) for k, v in (body.get("Labels") or {}).items()}
    opts["tty"] = bool(body.get("Tty"))
    opts["interactive"] = bool(body.get("OpenStdin"))
    opts.update(_network_options(body, host))
    opts["ports"] = [_publish(port, b) for port, bindings in
                     (host.get("PortBindings") or {}).items() for b in (bindings or [{}])]
    opts["publish_all"] = bool(host.get("PublishAllPorts"))
    opts["dns"] = list(host.get("Dns") or [])
    opts["add_hosts"] = list(host.get("ExtraHosts") or [])
    opts["auto_remove"] = bool(host.get("AutoRemove"))
    restart = restart_policy(host.get("RestartPolicy") or {})
    if restart:
        opts["restart"] = restart
    log = host.get("LogConfig") or {}
    if log.get("Type") not in (None, "", "json-file"):
        raise InvalidConfig(f"logger: no log driver named '{log['Type']}' is registered")
    opts["log_opts"] = [f"{k}={v}" for k, v in (log.get("Config") or {}).items()]
    opts["privileged"] = bool(host.get("Privileged"))
    opts["cap_add"] = list(host.get("CapAdd") or [])
    opts["cap_drop"] = list(host.get("CapDrop") or [])
    opts["security_opt"] = list(host.get("SecurityOpt") or [])
    opts["read_only"] = bool(host.get("ReadonlyRootfs"))
    opts.update(limit_options(host))
    opts.update(_process_options(body, host))
    opts["volumes"] = list(host.get("Binds") or [])
    taken = {b.split(":")[1] for b in opts["volumes"] if ":" in b} | \
        {m.get("Target") for m in host.get("Mounts") or []}
    opts["volumes"] += [path for path in body.get("Volumes") or {} if path not in taken]
    opts["mounts"] = [_mount(m) for m in host.get("Mounts") or []]
    opts["tmpfs"] = [f"{path}:{options}" if options else path
                     for path, options in (host.get("Tmpfs") or {}).items()]
    opts["volumes_from"] = list(host.get("VolumesFrom") or [])
    if host.get("VolumeDriver"):
        opts["volume_driver"] = host["VolumeDriver"]
    return opts


def limit_options(fields: dict[str, Any]) -> dict[str, Any]:
    """A ``HostConfig``'s (or an update's) memory, swap, CPU (``NanoCpus``, or
    ``CpuQuota`` over ``CpuPeriod``), CPU shares, cpuset and PIDs limits as ``run``'s and
    ``update``'s options; unset and zero fields are left out."""
    out: dict[str, Any] = {}
    if fields.get("Memory"):
        out["memory"] = str(fields["Memory"])
    if fields.get("MemorySwap"):
        out["memory_swap"] = str(fields["MemorySwap"])
    if fields.get("NanoCpus"):
        out["cpus"] = fields["NanoCpus"] / 1e9
    elif fields.get("CpuQuota"):
        out["cpus"] = fields["CpuQuota"] / (fields.get("CpuPeriod") or 100000)
    if fields.get("CpuShares"):
        out["cpu_shares"] = int(fields["CpuShares"])
    if fields.get("CpusetCpus"):
        out["cpuset_cpus"] = fields["CpusetCpus"]
    if fields.get("PidsLimit"):
        out["pids_limit"] = int(fields["PidsLimit"])
    return out


def restart_policy(policy: dict[str, Any]) -> str | None:
    """A ``RestartPolicy`` as ``--restart``'s text (None when it names none)."""
    if not policy.get("Name"):
        return None
    count = policy.get("MaximumRetryCount") or 0
    return policy["Name"] + (f":{count}" if policy["Name"] == "on-failure" and count else "")


def _process_options(body: dict[str, Any], host: dict[str, Any]) -> dict[str, Any]:
    """What docker's create body says of the process and its namespaces: init, groups,
    ``--pid/--ipc/--uts``, stop signal and timeout, shm, sysctls, ulimits, devices and
    the health check, as ``run``'s flags."""
    out: dict[str, Any] = {"init": bool(host.get("Init")),
                           "group_add": [str(g) for g in host.get("GroupAdd") or []]}
    for field, key in (("pid", "PidMode"), ("ipc", "IpcMode"), ("uts", "UTSMode")):
        if host.get(key):
            out[field] = host[key]
    if body.get("StopSignal"):
        out["stop_signal"] = str(body["StopSignal"])
    if body.get("StopTimeout") is not None:
        out["stop_timeout"] = int(body["StopTimeout"])
    if host.get("ShmSize"):
        out["shm_size"] = str(host["ShmSize"])
    out["sysctls"] = [f"{k}={v}" for k, v in (host.get("Sysctls") or {}).items()]
    out["ulimits"] = [f"{u['Name']}={u['Soft']}:{u['Hard']}" for u in host.get("Ulimits") or []]
    out["devices"] = [":".join((d.get("PathOnHost") or "", d.get("PathInContainer") or "",
                                d.get("CgroupPermissions") or "rwm"))
                      for d in host.get("Devices") or []]
    out.update(_health_options(body.get("Healthcheck")))
    return out


def _health_options(check: dict[str, Any] | None) -> dict[str, Any]:
    """A ``Healthcheck`` (``Test``, durations in nanoseconds) as ``--health-*`` flags; an
    exec-form ``CMD`` test runs as the shell-quoted command line."""
    import shlex

    if not check:
        return {}
    test = list(check.get("Test") or [])
    out: dict[str, Any] = {}
    if test[:1] == ["NONE"]:
        return {"no_healthcheck": True}
    if test[:1] == ["CMD-SHELL"] and len(test) == 2:
        out["health_cmd"] = test[1]
    elif test[:1] == ["CMD"] and len(test) > 1:
        out["health_cmd"] = shlex.join(test[1:])
    elif test:
        raise InvalidConfig(f"invalid health check test {test!r}")
    for field, key in (("health_interval", "Interval"), ("health_timeout", "Timeout"),
                       ("health_start_period", "StartPeriod")):
        if check.get(key):
            out[field] = f"{int(check[key])}ns"
    if check.get("Retries"):
        out["health_retries"] = int(check["Retries"])
    return out


def _network_options(body: dict[str, Any], host: dict[str, Any]) -> dict[str, Any]:
    mode = host.get("NetworkMode") or ""
    endpoints = (body.get("NetworkingConfig") or {}).get("EndpointsConfig") or {}
    out: dict[str, Any] = {}
    named = [n for n in endpoints if n not in MODES and n not in DEFAULT_MODES]
    if mode in DEFAULT_MODES:
        pass
    elif mode in MODES or mode.startswith("container:"):
        out["network"] = mode
    elif mode not in named:
        named.insert(0, mode)
    if named:
        out["networks"] = named
        out["network_aliases"] = {name: list((endpoints.get(name) or {}).get("Aliases") or [])
                                  for name in named}
        ipam = (endpoints.get(named[0]) or {}).get("IPAMConfig") or {}
        if ipam.get("IPv4Address"):
            out["ip"] = ipam["IPv4Address"]
    return out


def _publish(port: str, binding: dict[str, str]) -> str:
    """A ``PortBindings`` entry as ``-p``'s text: ``[IP:][HOSTPORT:]PORT[/PROTO]``."""
    host_ip, host_port = binding.get("HostIp") or "", binding.get("HostPort") or ""
    if host_ip:
        return f"{host_ip}:{host_port}:{port}"
    return f"{host_port}:{port}" if host_port else port


def _mount(m: dict[str, Any]) -> str:
    """A ``HostConfig.Mounts`` entry as ``--mount``'s text."""
    parts = [f"type={m.get('Type') or 'volume'}"]
    if m.get("Source"):
        parts.append(f"source={m['Source']}")
    parts.append(f"target={m.get('Target', '')}")
    if m.get("ReadOnly"):
        parts.append("readonly")
    propagation = (m.get("BindOptions") or {}).get("Propagation")
    if propagation:
        parts.append(f"bind-propagation={propagation}")
    tmpfs = m.get("TmpfsOptions") or {}
    if tmpfs.get("SizeBytes"):
        parts.append(f"tmpfs-size={tmpfs['SizeBytes']}")
    if tmpfs.get("Mode"):
        parts.append(f"tmpfs-mode={tmpfs['Mode']:o}")
    volume = m.get("VolumeOptions") or {}
    if volume.get("NoCopy"):
        parts.append("volume-nocopy")
    return ",".join(parts)


def container_summary(engine: Engine, c: ContainerRecord) -> dict[str, Any]:
    """A container as ``GET /containers/json`` lists it."""
    from pinnace import inspection

    settings = engine.networks.settings(c) if c.config_json != "{}" else \
        {"Ports": {}, "Networks": {}}
    ports = []
    for target, mapped in settings["Ports"].items():
        number, _, proto = target.partition("/")
        for p in mapped:
            ports.append({"IP": p["HostIp"], "PrivatePort": int(number),
                          "PublicPort": int(p["HostPort"]), "Type": proto})
    labels = c.config.labels if c.config_json != "{}" else {}
    return {
        "Id": c.id, "Names": [f"/{c.name}"], "Image": c.image, "ImageID": c.image_id,
        "Command": " ".join(c.command), "Created": int(c.created), "Ports": ports,
        "Labels": labels, "State": c.status,
        "Status": inspection.status(c, engine.paths.health(c.id)),
        "HostConfig": {"NetworkMode": c.network},
        "NetworkSettings": {"Networks": settings["Networks"]}, "Mounts": [],
    }


def image_summary(image: Image) -> dict[str, Any]:
    """An image as ``GET /images/json`` lists it."""
    config = image.config.get("config") or {}
    return {
        "Id": image.id, "ParentId": "", "RepoTags": list(image.tags),
        "RepoDigests": list(image.repo_digests), "Created": int(image.created),
        "Size": image.size, "VirtualSize": image.size, "SharedSize": -1,
        "Labels": config.get("Labels") or {}, "Containers": -1,
    }


def matches(values: dict[str, list[str]], filters: dict[str, list[str]],
            prefix_keys: tuple[str, ...] = ("id",)) -> bool:
    """Whether a thing whose filterable ``values`` are these passes ``filters`` (each key:
    any of its values, ``label``: all; unknown keys refused)."""
    for key, wanted in filters.items():
        if key not in values:
            raise InvalidConfig(f"invalid filter {key!r}")
        have = values[key]
        if key == "label":  # every label asked for, as docker's filter
            if not all(w in have for w in wanted):
                return False
            continue
        if not any(w in have or (key in prefix_keys and any(h.startswith(w) for h in have))
                   or (key == "name" and any(w in h for h in have)) for w in wanted):
            return False
    return True
