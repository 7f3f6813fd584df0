"""A pinnace ContainerSpec written as an OCI runtime ``config.json``.

Everything the spec says is mapped, or the container is refused before
anything is made (:func:`oci_config` raises InvalidConfig naming the fields).
The root filesystem is ``rootfs`` in the bundle, where the plugin has
performed the storage plugin's mounts.
"""

from __future__ import annotations

import os
from dataclasses import fields
from typing import Any

from pinnace.plugin import (
    ContainerSpec,
    InvalidConfig,
    MountPoint,
    Process,
    Resources,
    Security,
    cgroups,
)

OCI_VERSION = "1.0.2"
NAMESPACES = {"pid": "pid", "mount": "mount", "uts": "uts", "ipc": "ipc", "cgroup": "cgroup"}
"""pinnace's namespace names -> OCI's; the network namespace is always there."""
OCI_SECCOMP = ("defaultAction", "defaultErrnoRet", "architectures", "flags")
OCI_SYSCALL = ("names", "action", "errnoRet", "args")
"""The keys of OCI's ``linux.seccomp`` and of its rules (docker's others are dropped)."""
NOSUID_NOEXEC_NODEV = ["nosuid", "noexec", "nodev"]
API_MOUNTS = [  # /proc, a minimal /dev and read-only /sys, as docker gives every container
    {"destination": "/proc", "type": "proc", "source": "proc", "options": NOSUID_NOEXEC_NODEV},
    {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
     "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
    {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
     "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
    {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
     "options": [*NOSUID_NOEXEC_NODEV, "mode=1777", "size=65536k"]},
    {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
     "options": NOSUID_NOEXEC_NODEV},
    {"destination": "/sys", "type": "sysfs", "source": "sysfs",
     "options": [*NOSUID_NOEXEC_NODEV, "ro"]},
]
MAPPED = {
    ContainerSpec: {"id", "process", "rootfs", "hostname", "netns", "cgroup", "readonly_rootfs",
                    "namespaces", "annotations", "mounts", "security", "resources", "sysctl"},
    Process: {"args", "env", "cwd", "user", "terminal", "console_socket", "rlimits"},
    Security: {"privileged", "capabilities", "inheritable", "ambient", "no_new_privileges",
               "seccomp", "masked_paths", "readonly_paths"},
    Resources: {"memory", "memory_swap", "cpu_quota", "cpu_period", "cpu_shares",
                "cpuset_cpus", "pids_limit", "devices"},
}
"""The fields of each spec record this module writes into config.json."""


def _unmapped(record: Any, prefix: str) -> list[str]:
    """Fields of ``record`` this module does not know that differ from their default:
    a newer pinnace asking for something the runtime would silently not do."""
    blank = {f.name: f for f in fields(record)}
    known = MAPPED[type(record)]
    found = []
    for name, f in blank.items():
        if name in known:
            continue
        default = f.default_factory() if callable(f.default_factory) else f.default
        if getattr(record, name) != default:
            found.append(f"{prefix}{name}")
    return found


def oci_config(spec: ContainerSpec) -> dict[str, Any]:
    """``config.json`` for ``spec``; InvalidConfig naming every field an OCI runtime cannot
    be given."""
    refused = _unmapped(spec, "") + _unmapped(spec.process, "process.") \
        + _unmapped(spec.security, "security.") + _unmapped(spec.resources, "resources.")
    refused += [f"namespaces[{ns}]" for ns in spec.namespaces if ns not in NAMESPACES]
    seccomp = None
    if spec.security.seccomp != "unconfined":
        seccomp = _seccomp(spec.security)
    if refused:
        raise InvalidConfig(f"the oci isolation cannot map {', '.join(refused)}")
    namespaces = [{"type": NAMESPACES[ns]} for ns in spec.namespaces]
    namespaces.append({"type": "network", "path": spec.netns} if spec.netns
                      else {"type": "network"})
    linux: dict[str, Any] = {
        "namespaces": namespaces,
        "cgroupsPath": "/" + spec.cgroup.strip("/"),  # from each hierarchy's root, as pinnace's
        "resources": _resources(spec.resources),
        "maskedPaths": list(spec.security.masked_paths),
        "readonlyPaths": list(spec.security.readonly_paths),
    }
    if seccomp is not None:
        linux["seccomp"] = seccomp
    if spec.sysctl:
        linux["sysctl"] = dict(spec.sysctl)
    return {
        "ociVersion": OCI_VERSION,
        "process": oci_process(spec.process, spec.security),
        "root": {"path": "rootfs", "readonly": spec.readonly_rootfs},
        "hostname": spec.hostname,
        "mounts": API_MOUNTS + [_mount(m) for m in spec.mounts],
        "annotations": dict(spec.annotations),
        "linux": linux,
    }


def oci_process(process: Process, security: Security) -> dict[str, Any]:
    """The OCI ``process`` of a container's first process, or of an exec in it. Only
    capabilities this process holds are asked for (``--privileged`` names every one the
    kernel knows; the runtime would refuse those outside its bounding set)."""
    from pinnace.plugin import capabilities

    held = int(_own_status()["CapBnd"], 16)
    caps = [c for c in security.capabilities if capabilities.mask([c]) & held]
    return {
        "terminal": process.terminal,
        "user": {"uid": process.user.uid, "gid": process.user.gid,
                 "additionalGids": list(process.user.additional_gids)},
        "args": list(process.args),
        "env": list(process.env),
        "cwd": process.cwd or "/",
        "capabilities": {"bounding": caps, "effective": caps, "permitted": caps,
                         "inheritable": [c for c in security.inheritable if c in caps],
                         "ambient": [c for c in security.ambient if c in caps]},
        "rlimits": [{"type": r.type, "hard": r.hard, "soft": r.soft} for r in process.rlimits],
        "noNewPrivileges": security.no_new_privileges,
    }


def _own_status() -> dict[str, str]:
    """This process's /proc/self/status fields."""
    with open("/proc/self/status") as f:
        return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)


def _mount(m: MountPoint) -> dict[str, Any]:
    """A ``spec.mounts`` entry; OCI runtimes bind-mount only with ``bind`` or ``rbind``
    in the options."""
    options = list(m.options)
    if m.type == "bind" and not {"bind", "rbind"} & set(options):
        options.append("rbind")
    return {"destination": m.destination, "type": m.type, "source": m.source, "options": options}


def _resources(res: Resources) -> dict[str, Any]:
    """OCI ``linux.resources``: memory, CPU, pids and the device allowlist."""
    out: dict[str, Any] = {"devices": [{"allow": False, "access": "rwm"},
                                       *(_device(rule) for rule in res.devices)]}
    if res.memory:
        memory: dict[str, int] = {"limit": res.memory}
        if res.memory_swap and _swap_accounting():
            memory["swap"] = res.memory_swap
        out["memory"] = memory
    cpu = {key: value for key, value in (("shares", res.cpu_shares), ("quota", res.cpu_quota),
                                         ("period", res.cpu_period), ("cpus", res.cpuset_cpus))
           if value}
    if cpu:
        out["cpu"] = cpu
    if res.pids_limit:
        out["pids"] = {"limit": res.pids_limit}
    return out


def _swap_accounting() -> bool:
    """Whether the kernel accounts swap (otherwise pinnace skips the swap limit, and so
    must the runtime, which would fail on it)."""
    if cgroups.version() == "v2":
        return True
    return os.path.exists(f"{cgroups.CGROUP_ROOT}/memory/memory.memsw.limit_in_bytes")


def _device(rule: str) -> dict[str, Any]:
    """``c 1:3 rwm`` (cgroup v1 syntax, ``*`` for any number) as an OCI device rule."""
    kind, numbers, access = rule.split()
    major, minor = numbers.split(":")
    entry: dict[str, Any] = {"allow": True, "type": kind, "access": access}
    if major != "*":
        entry["major"] = int(major)
    if minor != "*":
        entry["minor"] = int(minor)
    return entry


def _seccomp(security: Security) -> dict[str, Any]:
    """The container's seccomp profile, resolved for its capabilities and this machine
    (:func:`pinnace.runtime.seccomp.resolve`), in OCI ``linux.seccomp`` form."""
    from pinnace.plugin import seccomp

    profile = seccomp.default_profile() if security.seccomp == "default" else security.seccomp
    assert isinstance(profile, dict)
    resolved = seccomp.resolve(profile, list(security.capabilities), seccomp.native_arch())
    out = {key: resolved[key] for key in OCI_SECCOMP if resolved.get(key) is not None}
    out["syscalls"] = [{key: rule[key] for key in OCI_SYSCALL if rule.get(key) is not None}
                       for rule in resolved["syscalls"]]
    return out
