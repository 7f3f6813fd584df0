"""The OCI runtime spec's ``config.json`` mapped to pinnace's container spec and back.

:func:`bundle_spec` reads a bundle's config into a :class:`ContainerSpec` plus what
the runtime itself does around the container (hooks, the OOM score); a field that
pinnace cannot apply is refused by its name (``InvalidConfig``), never dropped.
Values that ask for nothing (an empty list, a zero limit) are accepted whatever the
field. :func:`config_from_spec` writes a spec back as a ``config.json``.

What the isolation plugin makes itself (``/proc``, ``/dev`` with its usual nodes,
``/dev/pts``, ``/dev/shm``, ``/dev/mqueue``, ``/sys``) is not mounted a second time:
such a mount in the config is checked to be of the type the plugin makes.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

from pinnace.errors import InvalidConfig
from pinnace.mounts import Mount
from pinnace.runtime.spec import (
    DEFAULT_DEVICES,
    ContainerSpec,
    MountPoint,
    Process,
    Resources,
    Rlimit,
    Security,
    User,
)

OCI_VERSION = "1.0.2"
HOOK_KINDS = ("prestart", "createRuntime", "createContainer", "startContainer",
              "poststart", "poststop")
PLUGIN_MOUNTS = {"/proc": "proc", "/dev": "tmpfs", "/dev/pts": "devpts", "/dev/shm": "tmpfs",
                 "/dev/mqueue": "mqueue", "/sys": "sysfs", "/sys/fs/cgroup": "cgroup"}
"""Made by the isolation plugin (the cgroup hierarchy is seen through /sys)."""
PLUGIN_DEVICES = {"/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom",
                  "/dev/tty", "/dev/console", "/dev/ptmx"}
NAMESPACES = {"pid": "pid", "mount": "mount", "uts": "uts", "ipc": "ipc", "cgroup": "cgroup"}
JOINABLE = ("pid", "ipc", "uts")
"""Namespaces a config may join by path, besides the network one."""
RLIMITS = ("RLIMIT_AS", "RLIMIT_CORE", "RLIMIT_CPU", "RLIMIT_DATA", "RLIMIT_FSIZE",
           "RLIMIT_LOCKS", "RLIMIT_MEMLOCK", "RLIMIT_MSGQUEUE", "RLIMIT_NICE", "RLIMIT_NOFILE",
           "RLIMIT_NPROC", "RLIMIT_RSS", "RLIMIT_RTPRIO", "RLIMIT_RTTIME", "RLIMIT_SIGPENDING",
           "RLIMIT_STACK")
DEFAULT_NAMESPACES = ("pid", "network", "ipc", "uts", "mount", "cgroup")


@dataclass
class Hook:
    """A program the runtime runs at a point of the lifecycle with the state on stdin."""

    path: str
    args: list[str] = field(default_factory=list)
    env: list[str] = field(default_factory=list)
    timeout: int = 0


@dataclass
class BundleSpec:
    """A bundle's config: the container spec and what the runtime does around it."""

    spec: ContainerSpec
    rootfs: str
    hooks: dict[str, list[Hook]] = field(default_factory=dict)
    oom_score_adj: int | None = None


class _Fields:
    """One JSON object being read: each field taken is marked; :meth:`done` refuses
    the rest by name unless it asks for nothing."""

    def __init__(self, data: Any, where: str) -> None:
        if not isinstance(data, dict):
            raise InvalidConfig(f"config.json: {where or 'the document'} is not an object")
        self.data, self.where, self.taken = data, where, set()

    def get(self, name: str, default: Any = None) -> Any:
        self.taken.add(name)
        value = self.data.get(name)
        return default if value is None else value

    def sub(self, name: str) -> _Fields:
        return _Fields(self.get(name, {}), self.name(name))

    def name(self, name: str) -> str:
        return f"{self.where}.{name}" if self.where else name

    def ignore(self, *names: str) -> None:
        """Fields with no effect here (an LSM label where that LSM is not enabled)."""
        self.taken.update(names)

    def done(self) -> None:
        for key, value in self.data.items():
            if key not in self.taken and not _asks_nothing(value):
                shown = json.dumps(value)
                shown = shown if len(shown) <= 60 else shown[:57] + "..."
                raise InvalidConfig(f"config.json: {self.name(key)} ({shown}) is not supported")


def _asks_nothing(value: Any) -> bool:
    """An empty or zero value, or an object of nothing but such values."""
    if isinstance(value, dict):
        return all(_asks_nothing(v) for v in value.values())
    return value in (None, "", 0, [], False)


def _lsm_enabled(name: str) -> bool:
    if name == "apparmor":
        return os.path.exists("/sys/kernel/security/apparmor")
    return os.path.exists("/sys/fs/selinux/enforce")


def bundle_spec(container_id: str, bundle: str, config: dict[str, Any]) -> BundleSpec:
    """Map a bundle's ``config.json`` (already parsed) to a spec; refuse what cannot apply."""
    top = _Fields(config, "")
    top.ignore("ociVersion")
    root = top.sub("root")
    path = root.get("path", "rootfs")
    rootfs = os.path.normpath(os.path.join(bundle, path))
    readonly = bool(root.get("readonly", False))
    root.done()
    proc = top.sub("process")
    process = _process(proc)
    security = _process_security(proc)
    oom = proc.get("oomScoreAdj")
    proc.done()
    spec = ContainerSpec(id=container_id, process=process,
                         rootfs=[Mount("bind", rootfs, ("rbind",))],
                         hostname=top.get("hostname", ""), readonly_rootfs=readonly,
                         annotations=dict(top.get("annotations", {})), security=security,
                         namespaces=[])
    spec.mounts = [m for m in (_mount(m, bundle, i) for i, m in enumerate(top.get("mounts", [])))
                   if m is not None]
    linux = top.sub("linux")
    _linux(linux, spec)
    linux.done()
    hooks = _hooks(top.sub("hooks"))
    top.done()
    return BundleSpec(spec, rootfs, hooks, oom)


def _process(proc: _Fields) -> Process:
    args = proc.get("args", [])
    if not args or not all(isinstance(a, str) for a in args):
        raise InvalidConfig("config.json: process.args must name a program")
    user = proc.sub("user")
    owner = User(int(user.get("uid", 0)), int(user.get("gid", 0)),
                 [int(g) for g in user.get("additionalGids", [])])
    umask = user.get("umask")
    if umask not in (None, 0o22):
        raise InvalidConfig("config.json: process.user.umask is not supported (0022 only)")
    user.done()
    proc.ignore("consoleSize")  # the pty's size is the console socket holder's to set
    rlimits = []
    for item in proc.get("rlimits", []):
        if item.get("type") not in RLIMITS:
            raise InvalidConfig(f"config.json: process.rlimits: unknown type {item.get('type')!r}")
        rlimits.append(Rlimit(type=item["type"], soft=int(item["soft"]),
                              hard=int(item["hard"])))
    return Process(args=list(args), env=list(proc.get("env", [])), cwd=proc.get("cwd", "/"),
                   user=owner, terminal=bool(proc.get("terminal", False)), rlimits=rlimits)


def _process_security(proc: _Fields) -> Security:
    caps = proc.sub("capabilities")
    bounding = list(caps.get("bounding", []))
    for name in ("effective", "permitted"):
        extra = set(caps.get(name, [])) - set(bounding)
        if extra:
            raise InvalidConfig(f"config.json: process.capabilities.{name} holds "
                                f"{sorted(extra)[0]}, which is not in the bounding set")
    inheritable, ambient = list(caps.get("inheritable", [])), list(caps.get("ambient", []))
    caps.done()
    if not _lsm_enabled("apparmor"):
        proc.ignore("apparmorProfile")
    if not _lsm_enabled("selinux"):
        proc.ignore("selinuxLabel")
    return Security(capabilities=bounding, inheritable=inheritable, ambient=ambient,
                    no_new_privileges=bool(proc.get("noNewPrivileges", False)),
                    seccomp="unconfined", masked_paths=[], readonly_paths=[])


def _mount(data: dict[str, Any], bundle: str, index: int) -> MountPoint | None:
    m = _Fields(data, f"mounts[{index}]")
    dest = m.get("destination", "")
    if not dest.startswith("/"):
        raise InvalidConfig(f"config.json: {m.name('destination')} must be absolute: {dest!r}")
    dest = os.path.normpath(dest)
    options = list(m.get("options", []))
    fstype = m.get("type", "")
    source = m.get("source", "")
    m.done()
    if "bind" in options or "rbind" in options or fstype == "bind":
        source = os.path.normpath(os.path.join(bundle, source))
        if not os.path.exists(source):
            raise InvalidConfig(f"config.json: {m.name('source')} {source} does not exist")
        return MountPoint(dest, source, "bind", options)
    if dest in PLUGIN_MOUNTS:
        if fstype != PLUGIN_MOUNTS[dest]:
            raise InvalidConfig(f"config.json: {dest} of type {fstype!r} is not supported "
                                f"(the runtime mounts {PLUGIN_MOUNTS[dest]} there)")
        return None
    if not fstype:
        raise InvalidConfig(f"config.json: {m.name('type')} is missing")
    return MountPoint(dest, source or fstype, fstype, options)


def _linux(linux: _Fields, spec: ContainerSpec) -> None:
    for index, ns in enumerate(linux.get("namespaces", [])):
        kind, path = ns.get("type"), ns.get("path", "")
        if kind == "network":
            spec.netns = path or None
            continue
        if kind not in NAMESPACES:
            raise InvalidConfig(f"config.json: linux.namespaces[{index}]: a {kind} namespace "
                                "is not supported")
        if path and kind not in JOINABLE:
            raise InvalidConfig(f"config.json: linux.namespaces[{index}].path (joining a "
                                f"{kind} namespace) is not supported")
        if path:
            spec.namespace_paths[kind] = path
        spec.namespaces.append(NAMESPACES[kind])
    if not any(ns.get("type") == "network" for ns in linux.get("namespaces", [])):
        spec.netns = "/proc/self/ns/net"  # the runtime's own: opened before any unshare
    for kind in ("pid", "mount"):
        if kind not in spec.namespaces:
            raise InvalidConfig(f"config.json: linux.namespaces needs a {kind} namespace")
    spec.cgroup = linux.get("cgroupsPath", "") or f"pinnace-runtime/{spec.id}"
    if ":" in spec.cgroup:
        raise InvalidConfig(f"config.json: linux.cgroupsPath {spec.cgroup!r} is a systemd "
                            "slice:prefix:name path; only cgroupfs paths are supported")
    spec.cgroup = spec.cgroup.strip("/")
    spec.sysctl = {str(k): str(v) for k, v in linux.get("sysctl", {}).items()}
    spec.security.masked_paths = list(linux.get("maskedPaths", []))
    spec.security.readonly_paths = list(linux.get("readonlyPaths", []))
    seccomp = linux.get("seccomp")
    spec.security.seccomp = seccomp_profile(seccomp) if seccomp else "unconfined"
    for index, dev in enumerate(linux.get("devices", [])):
        if dev.get("path") not in PLUGIN_DEVICES:
            raise InvalidConfig(f"config.json: linux.devices[{index}] ({dev.get('path')}) "
                                "is not supported")
    spec.resources = _resources(linux.sub("resources"))
    rootfs_propagation = linux.get("rootfsPropagation", "")
    if rootfs_propagation not in ("", "private", "rprivate"):
        raise InvalidConfig(f"config.json: linux.rootfsPropagation {rootfs_propagation!r} "
                            "is not supported (private only)")
    if not _lsm_enabled("selinux"):
        linux.ignore("mountLabel")


def _resources(res: _Fields) -> Resources:
    out = Resources(devices=list(DEFAULT_DEVICES))  # always allowed, as runc does
    for index, rule in enumerate(res.get("devices", [])):
        kind = {"c": "c", "b": "b", "a": "a", None: "a", "": "a"}.get(rule.get("type"))
        if kind is None:
            raise InvalidConfig(f"config.json: linux.resources.devices[{index}].type "
                                f"{rule.get('type')!r} is not c, b or a")
        major = "*" if rule.get("major") in (None, -1) else str(rule["major"])
        minor = "*" if rule.get("minor") in (None, -1) else str(rule["minor"])
        entry = f"{kind} {major}:{minor} {rule.get('access') or 'rwm'}"
        if rule.get("allow"):
            out.devices.append("a *:* rwm" if kind == "a" else entry)
        elif kind == "a":
            out.devices = list(DEFAULT_DEVICES)  # deny all: the allowlist starts again
        elif entry in out.devices:
            out.devices.remove(entry)
        elif any(_covers(rule, kind, major, minor) for rule in out.devices):
            raise InvalidConfig(f"config.json: linux.resources.devices[{index}]: denying "
                                f"{entry} inside an allowed range is not supported")
    memory = res.sub("memory")
    out.memory = int(memory.get("limit", 0))
    swap = int(memory.get("swap", 0))
    out.memory_swap = swap
    memory.get("disableOOMKiller")
    if memory.data.get("disableOOMKiller"):
        raise InvalidConfig("config.json: linux.resources.memory.disableOOMKiller "
                            "is not supported")
    memory.done()
    cpu = res.sub("cpu")
    out.cpu_shares = int(cpu.get("shares", 0))
    out.cpu_quota = int(cpu.get("quota", 0))
    out.cpu_period = int(cpu.get("period", 0))
    out.cpuset_cpus = str(cpu.get("cpus", ""))
    cpu.done()
    pids = res.sub("pids")
    out.pids_limit = int(pids.get("limit", 0))
    pids.done()
    res.done()
    return out


def _covers(rule: str, kind: str, major: str, minor: str) -> bool:
    """True when allowlist ``rule`` lets the device be read or written (the mknod-only
    wildcards do not: a node made without access is harmless)."""
    rkind, numbers, access = rule.split()
    rmajor, rminor = numbers.split(":")
    return (rkind in (kind, "a") and rmajor in (major, "*") and rminor in (minor, "*")
            and bool(set(access) & {"r", "w"}))


def resources_from_json(data: dict[str, Any]) -> Resources:
    """OCI ``linux.resources`` (as ``update --resources`` reads them) as pinnace's limits."""
    return _resources(_Fields(data, "resources"))


def seccomp_profile(oci: dict[str, Any]) -> dict[str, Any]:
    """An OCI ``linux.seccomp`` as a docker-format profile (the same rule shape, without
    the docker-only conditions); ``flags`` and a notify ``listenerPath`` are refused."""
    s = _Fields(oci, "linux.seccomp")
    profile: dict[str, Any] = {"defaultAction": s.get("defaultAction"),
                               "architectures": list(s.get("architectures", [])),
                               "syscalls": []}
    if s.get("defaultErrnoRet") is not None:
        profile["defaultErrnoRet"] = s.get("defaultErrnoRet")
    for index, rule in enumerate(s.get("syscalls", [])):
        r = _Fields(rule, f"linux.seccomp.syscalls[{index}]")
        out = {"names": list(r.get("names", [])), "action": r.get("action"),
               "args": [dict(a) for a in r.get("args", [])]}
        if "errnoRet" in rule:
            out["errnoRet"] = r.get("errnoRet")
        r.done()
        profile["syscalls"].append(out)
    s.done()
    from pinnace.runtime.seccomp import parse_profile

    return parse_profile(json.dumps(profile), "config.json linux.seccomp")


def _hooks(hooks: _Fields) -> dict[str, list[Hook]]:
    out: dict[str, list[Hook]] = {}
    for kind in HOOK_KINDS:
        items = []
        for index, item in enumerate(hooks.get(kind, [])):
            h = _Fields(item, f"hooks.{kind}[{index}]")
            path = h.get("path", "")
            if not os.path.isabs(path):
                raise InvalidConfig(f"config.json: {h.name('path')} must be absolute")
            items.append(Hook(path, list(h.get("args", [])), list(h.get("env", [])),
                              int(h.get("timeout", 0))))
            h.done()
        if items:
            out[kind] = items
    hooks.done()
    return out


def process_from_json(data: dict[str, Any]) -> Process:
    """The process of ``exec --process FILE`` (OCI ``process``); its capabilities may
    only narrow nothing: exec runs with the container's own security."""
    proc = _Fields(data, "process")
    process = _process(proc)
    proc.ignore("capabilities", "noNewPrivileges", "apparmorProfile", "selinuxLabel",
                "oomScoreAdj")
    proc.done()
    return process


MAPPED = {
    ContainerSpec: {"id", "process", "rootfs", "hostname", "netns", "cgroup", "readonly_rootfs",
                    "namespaces", "namespace_paths", "annotations", "mounts", "security",
                    "resources", "sysctl"},
    Process: {"args", "env", "cwd", "user", "terminal", "console_socket", "rlimits"},
    Security: {"privileged", "capabilities", "inheritable", "ambient", "no_new_privileges",
               "seccomp", "masked_paths", "readonly_paths"},
    Resources: {"memory", "memory_swap", "cpu_quota", "cpu_period", "cpu_shares",
                "cpuset_cpus", "pids_limit", "devices"},
}
"""The fields of each spec record :func:`config_from_spec` writes into a config (``id``,
``rootfs`` and ``console_socket`` are the runtime's command line and the root path)."""
OCI_SECCOMP = ("defaultAction", "defaultErrnoRet", "architectures", "flags")
OCI_SYSCALL = ("names", "action", "errnoRet", "args")
"""The keys of OCI's ``linux.seccomp`` and of its rules (docker's others are dropped)."""


def config_from_spec(spec: ContainerSpec, rootfs: str = "rootfs") -> dict[str, Any]:
    """``spec`` as an OCI ``config.json`` with its root at ``rootfs``: the reverse of
    :func:`bundle_spec` (the mounts the isolation plugin makes itself included), for any
    OCI runtime on this host (capabilities outside this process's bounding set are left
    out, and a swap limit where the kernel does not account swap). InvalidConfig names
    every field that differs from its default and that a config cannot carry."""
    refused = [*_unmapped(spec, ""), *_unmapped(spec.process, "process."),
               *_unmapped(spec.security, "security."), *_unmapped(spec.resources, "resources."),
               *(f"namespaces[{n}]" for n in spec.namespaces if n not in NAMESPACES)]
    if refused:
        raise InvalidConfig(f"an OCI config cannot carry {', '.join(refused)}")
    sec = spec.security
    namespaces: list[dict[str, str]] = [
        {"type": NAMESPACES[n], **({"path": spec.namespace_paths[n]}
                                   if n in spec.namespace_paths else {})}
        for n in spec.namespaces]
    if spec.netns != "/proc/self/ns/net":
        namespaces.append({"type": "network", **({"path": spec.netns} if spec.netns else {})})
    linux: dict[str, Any] = {
        "namespaces": namespaces,
        "maskedPaths": list(sec.masked_paths), "readonlyPaths": list(sec.readonly_paths),
        "resources": _resources_json(spec.resources),
    }
    if spec.cgroup:
        linux["cgroupsPath"] = "/" + spec.cgroup.strip("/")  # from each hierarchy's root
    if spec.sysctl:
        linux["sysctl"] = dict(spec.sysctl)
    if sec.seccomp != "unconfined":
        linux["seccomp"] = _seccomp_json(sec)
    config: dict[str, Any] = {
        "ociVersion": OCI_VERSION,
        "process": process_config(spec.process, sec),
        "root": {"path": rootfs, "readonly": spec.readonly_rootfs},
        "mounts": [*({**m, "options": list(m["options"])} for m in PLUGIN_MOUNTS_JSON),
                   *(_mount_json(m) for m in spec.mounts)],
        "linux": linux,
    }
    if "uts" in spec.namespaces and "uts" not in spec.namespace_paths:
        config["hostname"] = spec.hostname  # set only in a UTS namespace of its own
    if spec.annotations:
        config["annotations"] = dict(spec.annotations)
    return config


def _unmapped(record: Any, prefix: str) -> list[str]:
    """Fields of ``record`` that :data:`MAPPED` lacks and that differ from their default."""
    from dataclasses import MISSING, fields

    found = []
    for f in fields(record):
        if f.name in MAPPED[type(record)]:
            continue
        default = f.default_factory() if f.default_factory is not MISSING else f.default
        if getattr(record, f.name) != default:
            found.append(f"{prefix}{f.name}")
    return found


def process_config(process: Process, security: Security) -> dict[str, Any]:
    """The OCI ``process`` of a container's first process, or of an exec in it (``exec
    --process``). Only capabilities this process holds are asked for (``--privileged``
    names every one the kernel knows; a runtime refuses those outside its bounding set)."""
    from pinnace.runtime import capabilities

    with open("/proc/self/status") as f:
        held = int(next(line.split()[1] for line in f if line.startswith("CapBnd:")), 16)
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


NOSUID_NOEXEC_NODEV = ["nosuid", "noexec", "nodev"]
PLUGIN_MOUNTS_JSON = [
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
"""/proc, a minimal /dev and read-only /sys, as docker gives every container (and the
isolation plugin makes them under pinnace-runtime)."""


def _mount_json(m: MountPoint) -> dict[str, Any]:
    """A ``spec.mounts`` entry; OCI runtimes bind-mount only with ``bind`` or ``rbind``
    among the options."""
    options = list(m.options)
    if m.type == "bind" and not {"bind", "rbind"} & set(options):
        options.append("rbind")
    return {"destination": m.destination, "type": m.type, "source": m.source, "options": options}


def _seccomp_json(security: Security) -> dict[str, Any]:
    """The container's seccomp profile, resolved for its capabilities and this machine
    (:func:`pinnace.runtime.seccomp.resolve`), in OCI ``linux.seccomp`` form."""
    from pinnace.runtime import seccomp

    profile = seccomp.default_profile() if security.seccomp == "default" else security.seccomp
    assert isinstance(profile, dict)
    resolved = seccomp.resolve(profile, list(security.capabilities), seccomp.native_arch())
    out = {key: resolved[key] for key in OCI_SECCOMP if resolved.get(key) is not None}
    out["syscalls"] = [{key: rule[key] for key in OCI_SYSCALL if rule.get(key) is not None}
                       for rule in resolved["syscalls"]]
    return out


def _resources_json(res: Resources) -> dict[str, Any]:
    """OCI ``linux.resources``: memory, CPU, pids and the device allowlist."""
    devices = []
    for rule in res.devices:
        kind, numbers, access = rule.split()
        major, minor = numbers.split(":")
        entry: dict[str, Any] = {"allow": True, "type": kind, "access": access}
        if major != "*":
            entry["major"] = int(major)
        if minor != "*":
            entry["minor"] = int(minor)
        devices.append(entry)
    out: dict[str, Any] = {"devices": [{"allow": False, "access": "rwm"}, *devices]}
    if res.memory:
        out["memory"] = {"limit": res.memory}
        if res.memory_swap and _swap_accounting():
            out["memory"]["swap"] = res.memory_swap
    cpu = {k: v for k, v in (("shares", res.cpu_shares), ("quota", res.cpu_quota),
                             ("period", res.cpu_period), ("cpus", res.cpuset_cpus)) if v}
    if cpu:
        out["cpu"] = cpu
    if res.pids_limit:
        out["pids"] = {"limit": res.pids_limit}
    return out


def _swap_accounting() -> bool:
    """Whether the kernel accounts swap (otherwise pinnace skips the swap limit, and so
    must a runtime, which would fail on it)."""
    from pinnace.runtime import cgroups

    if cgroups.version() == "v2":
        return True
    return os.path.exists(f"{cgroups.CGROUP_ROOT}/memory/memory.memsw.limit_in_bytes")
