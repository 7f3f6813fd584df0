"""The OCI runtime spec's ``config.json`` mapped to pinnace's container spec and back.

:func:`bundle_spec` reads a bundle's config into a :class:`ContainerSpec` plus what
the runtime itself does around the container (hooks, the OOM score); a field that
pinnace cannot apply is refused by its name (``InvalidConfig``), never dropped, and a
property the spec does not define is ignored with a warning (its extensibility rule).
Values that ask for nothing (an empty list, a zero limit) are accepted whatever the
field. :func:`config_from_spec` writes a spec back as a ``config.json``.

What the isolation plugin makes itself (``/proc``, ``/dev`` with its usual nodes,
``/dev/pts``, ``/dev/shm``, ``/dev/mqueue``, ``/sys``) is not mounted a second time:
such a mount in the config is checked to be of the type the plugin makes.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from typing import Any

from pinnace.errors import InvalidConfig
from pinnace.mounts import Mount
from pinnace.runtime.spec import (
    DEFAULT_DEVICES,
    ContainerSpec,
    Device,
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
JOINABLE = ("pid", "ipc", "uts", "mount")
"""Namespaces a config may join by path, besides the network one (the rootfs and the
bundle's paths must be reachable in a joined mount namespace, whose root the container's
pivot_root changes, as runc's does)."""
RLIMITS = ("RLIMIT_AS", "RLIMIT_CORE", "RLIMIT_CPU", "RLIMIT_DATA", "RLIMIT_FSIZE",
           "RLIMIT_LOCKS", "RLIMIT_MEMLOCK", "RLIMIT_MSGQUEUE", "RLIMIT_NICE", "RLIMIT_NOFILE",
           "RLIMIT_NPROC", "RLIMIT_RSS", "RLIMIT_RTPRIO", "RLIMIT_RTTIME", "RLIMIT_SIGPENDING",
           "RLIMIT_STACK")
ROOTFS_PROPAGATION = ("", "private", "rprivate", "shared", "rshared", "slave", "rslave",
                      "unbindable", "runbindable")
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


SPEC_PROPERTIES = {
    "": "ociVersion process root hostname domainname mounts hooks annotations linux solaris "
        "windows vm zos",
    "root": "path readonly",
    "process": "terminal consoleSize user args commandLine env cwd capabilities rlimits "
               "noNewPrivileges apparmorProfile oomScoreAdj selinuxLabel ioPriority scheduler "
               "execCPUAffinity",
    "process.user": "uid gid umask additionalGids username",
    "process.capabilities": "bounding effective inheritable permitted ambient",
    "mounts[]": "destination type source options uidMappings gidMappings",
    "hooks": " ".join(HOOK_KINDS),
    "hooks.*[]": "path args env timeout",
    "linux": "namespaces uidMappings gidMappings timeOffsets devices netDevices cgroupsPath "
             "resources rootfsPropagation seccomp sysctl maskedPaths readonlyPaths mountLabel "
             "intelRdt personality memoryPolicy",
    "linux.devices[]": "type path major minor fileMode uid gid",
    "linux.uidMappings[]": "containerID hostID size",
    "linux.gidMappings[]": "containerID hostID size",
    "linux.resources": "devices memory cpu blockIO hugepageLimits network pids rdma unified",
    "linux.resources.memory": "limit reservation swap kernel kernelTCP swappiness "
                              "disableOOMKiller useHierarchy checkBeforeUpdate",
    "linux.resources.cpu": "shares quota burst period realtimeRuntime realtimePeriod cpus mems "
                           "idle",
    "linux.resources.pids": "limit",
    "linux.resources.blockIO": "weight leafWeight weightDevice throttleReadBpsDevice "
                               "throttleWriteBpsDevice throttleReadIOPSDevice "
                               "throttleWriteIOPSDevice",
    "linux.resources.network": "classID priorities",
    "linux.seccomp": "defaultAction defaultErrnoRet architectures flags listenerPath "
                     "listenerMetadata syscalls",
    "linux.seccomp.syscalls[]": "names action errnoRet args",
}
"""The properties the OCI runtime spec defines, by object. The spec's extensibility rule:
a property it does not define is ignored (with a warning); one it defines that pinnace
cannot apply is refused."""


def _spec_defines(where: str, key: str) -> bool:
    """True when the spec defines property ``key`` of the object at ``where`` (an
    object this table does not list counts as defining everything)."""
    shape = re.sub(r"\[\d+\]", "[]", where)
    shape = re.sub(r"^hooks\.\w+\[\]$", "hooks.*[]", shape)
    names = SPEC_PROPERTIES.get(shape)
    return names is None or key in names.split()


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
        import sys

        for key, value in self.data.items():
            if key not in self.taken and not _spec_defines(self.where, key):
                sys.stderr.write(f"warning: config.json: {self.name(key)} is not a property "
                                 "of the OCI runtime spec: ignored\n")
            elif key not in self.taken and not _asks_nothing(value):
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
    if umask is not None and not (isinstance(umask, int) and 0 <= umask <= 0o777):
        raise InvalidConfig(f"config.json: process.user.umask {umask!r} is not a mode")
    user.done()
    proc.ignore("consoleSize")  # the pty's size is the console socket holder's to set
    rlimits = []
    for item in proc.get("rlimits", []):
        if item.get("type") not in RLIMITS:
            raise InvalidConfig(f"config.json: process.rlimits: unknown type {item.get('type')!r}")
        rlimits.append(Rlimit(type=item["type"], soft=int(item["soft"]),
                              hard=int(item["hard"])))
    return Process(args=list(args), env=list(proc.get("env", [])), cwd=proc.get("cwd", "/"),
                   user=owner, terminal=bool(proc.get("terminal", False)), rlimits=rlimits,
                   umask=umask)


def _process_security(proc: _Fields) -> Security:
    from pinnace.runtime.capabilities import NUMBERS, current

    caps = proc.sub("capabilities")
    held = current("permitted")
    for name in ("bounding", "effective", "permitted", "inheritable", "ambient"):
        unknown = [c for c in caps.get(name, []) if c not in NUMBERS]
        if unknown:
            raise InvalidConfig(f"config.json: process.capabilities.{name}: unknown "
                                f"capability {unknown[0]!r}")
        missing = [c for c in caps.get(name, []) if not held >> NUMBERS[c] & 1]
        if missing:
            raise InvalidConfig(f"config.json: process.capabilities.{name}: {missing[0]} "
                                "is not held by the runtime, which cannot grant it")
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
        if kind == "user":
            if path:
                raise InvalidConfig(f"config.json: linux.namespaces[{index}].path (joining "
                                    "a user namespace) is not supported")
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
    _id_maps(linux, spec, any(ns.get("type") == "user" for ns in linux.get("namespaces", [])))
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
    spec.devices = [d for d in (_device(dev, index)
                                for index, dev in enumerate(linux.get("devices", [])))
                    if d.path not in PLUGIN_DEVICES]
    spec.resources = _resources(linux.sub("resources"))
    spec.rootfs_propagation = linux.get("rootfsPropagation", "")
    if spec.rootfs_propagation not in ROOTFS_PROPAGATION:
        raise InvalidConfig(f"config.json: linux.rootfsPropagation "
                            f"{spec.rootfs_propagation!r} is not one of "
                            f"{', '.join(ROOTFS_PROPAGATION[1:])}")
    if spec.rootfs_propagation and "mount" not in spec.namespaces:
        raise InvalidConfig("config.json: linux.rootfsPropagation needs a mount namespace "
                            "(without one the rootfs is mounted in the runtime's)")
    if not _lsm_enabled("selinux"):
        linux.ignore("mountLabel")


def _id_maps(linux: _Fields, spec: ContainerSpec, userns: bool) -> None:
    """``linux.uidMappings`` and ``gidMappings`` of a user namespace: the container's ids
    as host ids. The root filesystem is used as its ids are on disk (not idmapped)."""
    from pinnace.runtime.userns import IdMap, check_disjoint

    for name in ("uidMappings", "gidMappings"):
        maps = []
        for index, item in enumerate(linux.get(name, [])):
            m = _Fields(item, f"linux.{name}[{index}]")
            numbers = [m.get(k) for k in ("containerID", "hostID", "size")]
            m.done()
            if not all(isinstance(n, int) and n >= 0 for n in numbers) or numbers[2] < 1:
                raise InvalidConfig(f"config.json: {m.where} needs containerID, hostID and "
                                    "a size of at least 1")
            maps.append(IdMap(*numbers))
        if maps and not userns:
            raise InvalidConfig(f"config.json: linux.{name} without a user namespace in "
                                "linux.namespaces")
        if userns and not maps:
            raise InvalidConfig(f"config.json: a user namespace needs linux.{name}")
        check_disjoint(maps, f"config.json: linux.{name}")
        setattr(spec, "uid_map" if name == "uidMappings" else "gid_map", maps)
    spec.idmapped_rootfs = False


def _device(data: dict[str, Any], index: int) -> Device:
    """One of ``linux.devices``: a character (``c``, ``u``), block (``b``) node or a fifo
    (``p``) made in the container, mode 0666 and owned by 0:0 unless it says otherwise."""
    d = _Fields(data, f"linux.devices[{index}]")
    path = d.get("path", "")
    if not path.startswith("/"):
        raise InvalidConfig(f"config.json: {d.name('path')} must be absolute: {path!r}")
    kind = {"c": "c", "u": "c", "b": "b", "p": "p"}.get(d.get("type"))
    if kind is None:
        raise InvalidConfig(f"config.json: {d.name('type')} {d.get('type')!r} is not "
                            "c, u, b or p")
    major, minor = d.get("major"), d.get("minor")
    if kind != "p" and not (isinstance(major, int) and isinstance(minor, int)):
        raise InvalidConfig(f"config.json: {d.name('major')} and minor are needed for a "
                            f"{'character' if kind == 'c' else 'block'} device")
    mode = d.get("fileMode", 0o666)
    if not isinstance(mode, int) or not 0 <= mode <= 0o7777:
        raise InvalidConfig(f"config.json: {d.name('fileMode')} {mode!r} is not a mode")
    device = Device(os.path.normpath(path), kind, int(major or 0), int(minor or 0), mode,
                    int(d.get("uid", 0)), int(d.get("gid", 0)))
    d.done()
    return device


def _resources(res: _Fields) -> Resources:
    out = Resources()
    defaults, rules = list(DEFAULT_DEVICES), []  # the defaults always, after the config's
    for index, rule in enumerate(res.get("devices", [])):  # rules (in their order), as runc
        kind = {"c": "c", "b": "b", "a": "a", None: "a", "": "a"}.get(rule.get("type"))
        if kind is None:
            raise InvalidConfig(f"config.json: linux.resources.devices[{index}].type "
                                f"{rule.get('type')!r} is not c, b or a")
        major = "*" if rule.get("major") in (None, -1) else str(rule["major"])
        minor = "*" if rule.get("minor") in (None, -1) else str(rule["minor"])
        entry = f"{kind} {major}:{minor} {rule.get('access') or 'rwm'}"
        if rule.get("allow"):
            rules.append("a *:* rwm" if kind == "a" else entry)
        elif kind == "a":
            rules, defaults = [], list(DEFAULT_DEVICES)  # deny all: the list starts again
        elif entry in rules + defaults:
            rules = [r for r in rules if r != entry]
            defaults = [d for d in defaults if d != entry]
        elif any(_covers(rule, kind, major, minor) for rule in rules + defaults):
            raise InvalidConfig(f"config.json: linux.resources.devices[{index}]: denying "
                                f"{entry} inside an allowed range is not supported")
    out.devices = [*dict.fromkeys(rules), *(d for d in defaults if d not in rules)]
    memory = res.sub("memory")
    out.memory = int(memory.get("limit", 0))
    out.memory_swap = int(memory.get("swap", 0))
    out.memory_reservation = int(memory.get("reservation", 0))
    out.memory_kernel = int(memory.get("kernel", 0))
    out.memory_kernel_tcp = int(memory.get("kernelTCP", 0))
    swappiness = memory.get("swappiness")
    if swappiness is not None and not (isinstance(swappiness, int) and 0 <= swappiness <= 100):
        raise InvalidConfig(f"config.json: linux.resources.memory.swappiness {swappiness!r} "
                            "is not from 0 to 100")
    out.memory_swappiness = swappiness
    out.oom_kill_disable = bool(memory.get("disableOOMKiller", False))
    memory.done()
    cpu = res.sub("cpu")
    out.cpu_shares = int(cpu.get("shares", 0))
    out.cpu_quota = int(cpu.get("quota", 0))
    out.cpu_period = int(cpu.get("period", 0))
    out.cpuset_cpus = str(cpu.get("cpus", ""))
    out.cpuset_mems = str(cpu.get("mems", ""))
    out.cpu_rt_period = int(cpu.get("realtimePeriod", 0))
    out.cpu_rt_runtime = int(cpu.get("realtimeRuntime", 0))
    cpu.done()
    pids = res.sub("pids")
    out.pids_limit = int(pids.get("limit", 0))
    pids.done()
    _block_io(res.sub("blockIO"), out)
    for index, item in enumerate(res.get("hugepageLimits", [])):
        h = _Fields(item, f"linux.resources.hugepageLimits[{index}]")
        size, limit = h.get("pageSize", ""), h.get("limit")
        h.done()
        if not re.fullmatch(r"\d+[KMG]B", size) or not isinstance(limit, int):
            raise InvalidConfig(f"config.json: {h.where} needs a pageSize such as 2MB and "
                                "a limit in bytes")
        out.hugepage_limits[size] = limit
    network = res.sub("network")
    out.net_classid = int(network.get("classID", 0))
    for index, item in enumerate(network.get("priorities", [])):
        p = _Fields(item, f"linux.resources.network.priorities[{index}]")
        out.net_priorities[str(p.get("name", ""))] = int(p.get("priority", 0))
        p.done()
    network.done()
    res.done()
    return out


BLOCK_IO_DEVICES = {"weightDevice": "blkio.weight_device",
                    "throttleReadBpsDevice": "blkio.throttle.read_bps_device",
                    "throttleWriteBpsDevice": "blkio.throttle.write_bps_device",
                    "throttleReadIOPSDevice": "blkio.throttle.read_iops_device",
                    "throttleWriteIOPSDevice": "blkio.throttle.write_iops_device"}


def _block_io(blkio: _Fields, out: Resources) -> None:
    """``linux.resources.blockIO``: weights, per-device weights and throttles."""
    out.blkio_weight = int(blkio.get("weight", 0))
    out.blkio_leaf_weight = int(blkio.get("leafWeight", 0))
    for key, file in BLOCK_IO_DEVICES.items():
        for index, item in enumerate(blkio.get(key, [])):
            d = _Fields(item, f"linux.resources.blockIO.{key}[{index}]")
            device = f"{int(d.get('major', 0))}:{int(d.get('minor', 0))}"
            if key == "weightDevice":
                for name, target in (("weight", file), ("leafWeight", "blkio.leaf_weight_device")):
                    if d.get(name) is not None:
                        out.blkio_devices.append((target, f"{device} {int(d.get(name))}"))
            else:
                out.blkio_devices.append((file, f"{device} {int(d.get('rate', 0))}"))
            d.done()
    blkio.done()


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
                    "resources", "sysctl", "devices", "uid_map", "gid_map",
                    "rootfs_propagation", "idmapped_rootfs"},
    Process: {"args", "env", "cwd", "user", "terminal", "console_socket", "rlimits", "umask"},
    Security: {"privileged", "capabilities", "inheritable", "ambient", "no_new_privileges",
               "seccomp", "masked_paths", "readonly_paths"},
    Resources: {"memory", "memory_swap", "cpu_quota", "cpu_period", "cpu_shares",
                "cpuset_cpus", "pids_limit", "devices", "memory_reservation", "memory_kernel",
                "memory_kernel_tcp", "memory_swappiness", "oom_kill_disable", "cpuset_mems",
                "cpu_rt_period", "cpu_rt_runtime", "blkio_weight", "blkio_leaf_weight",
                "blkio_devices", "hugepage_limits", "net_classid", "net_priorities"},
}
"""The fields of each spec record :func:`config_from_spec` writes into a config (``id``,
``rootfs`` and ``console_socket`` are the runtime's command line and the root path; an
idmapped rootfs is refused apart, as a config's rootfs is used with its ids on disk)."""
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
               *(f"namespaces[{n}]" for n in spec.namespaces if n not in NAMESPACES),
               *(["an idmapped rootfs (uid_map)"] if spec.uid_map and spec.idmapped_rootfs
                 else [])]
    if refused:
        raise InvalidConfig(f"an OCI config cannot carry {', '.join(refused)}")
    sec = spec.security
    namespaces: list[dict[str, str]] = [
        {"type": NAMESPACES[n], **({"path": spec.namespace_paths[n]}
                                   if n in spec.namespace_paths else {})}
        for n in spec.namespaces]
    if spec.netns != "/proc/self/ns/net":
        namespaces.append({"type": "network", **({"path": spec.netns} if spec.netns else {})})
    linux: dict[str, Any] = {}
    if spec.uid_map:
        namespaces.append({"type": "user"})
        linux["uidMappings"], linux["gidMappings"] = (
            [{"containerID": m.container, "hostID": m.host, "size": m.size} for m in maps]
            for maps in (spec.uid_map, spec.gid_map))
    linux |= {
        "namespaces": namespaces,
        "maskedPaths": list(sec.masked_paths), "readonlyPaths": list(sec.readonly_paths),
        "resources": _resources_json(spec.resources),
    }
    if spec.cgroup:
        linux["cgroupsPath"] = "/" + spec.cgroup.strip("/")  # from each hierarchy's root
    if spec.sysctl:
        linux["sysctl"] = dict(spec.sysctl)
    if spec.rootfs_propagation:
        linux["rootfsPropagation"] = spec.rootfs_propagation
    if spec.devices:
        linux["devices"] = [{"path": d.path, "type": d.type, "fileMode": d.file_mode,
                             "uid": d.uid, "gid": d.gid,
                             **({} if d.type == "p" else {"major": d.major, "minor": d.minor})}
                            for d in spec.devices]
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
                 "additionalGids": list(process.user.additional_gids),
                 **({} if process.umask is None else {"umask": process.umask})},
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
    swap = res.memory_swap if res.memory_swap and _swap_accounting() else 0
    memory = {k: v for k, v in (("limit", res.memory), ("swap", swap),
                                ("reservation", res.memory_reservation),
                                ("kernel", res.memory_kernel),
                                ("kernelTCP", res.memory_kernel_tcp),
                                ("disableOOMKiller", res.oom_kill_disable)) if v}
    if res.memory_swappiness is not None:
        memory["swappiness"] = res.memory_swappiness
    if memory:
        out["memory"] = memory
    cpu = {k: v for k, v in (("shares", res.cpu_shares), ("quota", res.cpu_quota),
                             ("period", res.cpu_period), ("cpus", res.cpuset_cpus),
                             ("mems", res.cpuset_mems), ("realtimePeriod", res.cpu_rt_period),
                             ("realtimeRuntime", res.cpu_rt_runtime)) if v}
    if cpu:
        out["cpu"] = cpu
    if res.pids_limit:
        out["pids"] = {"limit": res.pids_limit}
    blkio: dict[str, Any] = {k: v for k, v in (("weight", res.blkio_weight),
                                                ("leafWeight", res.blkio_leaf_weight)) if v}
    keys = {file: key for key, file in BLOCK_IO_DEVICES.items()}
    for file, rule in res.blkio_devices:
        device, value = rule.split()
        major, minor = (int(n) for n in device.split(":"))
        entry = {"major": major, "minor": minor}
        if file in ("blkio.weight_device", "blkio.leaf_weight_device"):
            entry["weight" if file == "blkio.weight_device" else "leafWeight"] = int(value)
            blkio.setdefault("weightDevice", []).append(entry)
        else:
            blkio.setdefault(keys[file], []).append({**entry, "rate": int(value)})
    if blkio:
        out["blockIO"] = blkio
    if res.hugepage_limits:
        out["hugepageLimits"] = [{"pageSize": size, "limit": limit}
                                 for size, limit in res.hugepage_limits.items()]
    if res.net_classid or res.net_priorities:
        out["network"] = {"classID": res.net_classid,
                          "priorities": [{"name": n, "priority": p}
                                         for n, p in res.net_priorities.items()]}
    return out


def _swap_accounting() -> bool:
    """Whether the kernel accounts swap (otherwise pinnace skips the swap limit, and so
    must a runtime, which would fail on it)."""
    from pinnace.runtime import cgroups

    if cgroups.version() == "v2":
        return True
    return os.path.exists(f"{cgroups.CGROUP_ROOT}/memory/memory.memsw.limit_in_bytes")
