"""The container spec handed to isolation plugins: OCI-runtime-like dataclasses."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pinnace.mounts import Mount
from pinnace.runtime.userns import IdMap

DEFAULT_SHM_SIZE = 64 * 1024 * 1024
"""The size of a container's ``/dev/shm`` unless ``--shm-size`` says otherwise."""
NAMESPACES = ("pid", "mount", "uts", "ipc", "cgroup")
"""The namespaces a container has of its own by default (the network's is set apart)."""
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass
class User:
    """Who the process runs as inside the container."""

    uid: int = 0
    gid: int = 0
    additional_gids: list[int] = field(default_factory=list)


@dataclass
class Rlimit:
    """One ``setrlimit`` (OCI ``process.rlimits``): ``type`` as ``RLIMIT_NOFILE``."""

    type: str
    soft: int
    hard: int


@dataclass
class Device:
    """A device node made in the container (OCI ``linux.devices``)."""

    path: str
    type: str
    """``c`` (character), ``b`` (block) or ``p`` (a fifo, without major and minor)."""
    major: int
    minor: int
    file_mode: int = 0o666
    uid: int = 0
    gid: int = 0


@dataclass
class Process:
    """The container's first process (OCI ``process``)."""

    args: list[str]
    env: list[str] = field(default_factory=lambda: [f"PATH={DEFAULT_PATH}"])
    cwd: str = "/"
    user: User = field(default_factory=User)
    terminal: bool = False
    rlimits: list[Rlimit] = field(default_factory=list)
    """Resource limits set before exec (OCI ``process.rlimits``, docker's ``--ulimit``)."""
    console_socket: str = ""
    """With ``terminal``: a unix socket path to which the runtime sends the pty master
    (SCM_RIGHTS), allocated inside the container's own devpts; stdio is then the pty."""
    umask: int | None = None
    """The file mode creation mask set before exec (OCI ``process.user.umask``); None
    keeps the creator's."""


@dataclass
class MountPoint:
    """A mount at ``destination`` inside the container (OCI ``mounts``), made
    after the root filesystem; a bind mount's ``source`` is a host path."""

    destination: str
    source: str
    type: str = "bind"
    options: list[str] = field(default_factory=list)


@dataclass
class Security:
    """What the container may do (OCI ``process.capabilities``, ``noNewPrivileges``,
    ``linux.seccomp``, ``maskedPaths``, ``readonlyPaths``), filled by the core from
    docker's defaults and the flags (:mod:`pinnace.runtime.security`), applied by the
    isolation plugin. The defaults are docker's hardening."""

    privileged: bool = False
    capabilities: list[str] = field(default_factory=lambda: list(DEFAULT_CAPABILITIES))
    """The bounding, effective and permitted sets."""
    inheritable: list[str] = field(default_factory=list)
    ambient: list[str] = field(default_factory=list)
    """Kept across exec by a user other than root (each must also be inheritable)."""
    no_new_privileges: bool = False
    seccomp: str | dict[str, Any] = "default"
    """``default`` (the built-in profile), ``unconfined``, or a docker-format profile."""
    masked_paths: list[str] = field(default_factory=lambda: list(MASKED_PATHS))
    readonly_paths: list[str] = field(default_factory=lambda: list(READONLY_PATHS))


@dataclass
class Resources:
    """cgroup limits (OCI ``linux.resources``); 0 or empty means no limit."""

    memory: int = 0
    memory_swap: int = 0
    """Memory plus swap in bytes; -1 unlimited swap; 0 unset."""
    cpu_quota: int = 0
    cpu_period: int = 0
    cpu_shares: int = 0
    cpuset_cpus: str = ""
    pids_limit: int = 0
    devices: list[str] = field(default_factory=lambda: list(DEFAULT_DEVICES))
    """The device allowlist in cgroup v1 syntax (``c 1:3 rwm``)."""
    memory_reservation: int = 0
    """The soft limit (v1 ``memory.soft_limit_in_bytes``, v2 ``memory.low``)."""
    memory_kernel: int = 0
    memory_kernel_tcp: int = 0
    """v1 only: kernel memory and TCP buffer limits (recent kernels take the first
    without enforcing it)."""
    memory_swappiness: int | None = None
    oom_kill_disable: bool = False
    cpuset_mems: str = ""
    cpu_rt_period: int = 0
    cpu_rt_runtime: int = 0
    """v1 only: real-time scheduling budget (``cpu.rt_period_us``, ``cpu.rt_runtime_us``)."""
    blkio_weight: int = 0
    blkio_leaf_weight: int = 0
    blkio_devices: list[tuple[str, str]] = field(default_factory=list)
    """v1 only: per-device block I/O rules, (file, ``MAJOR:MINOR VALUE``) with the file
    one of ``blkio.weight_device``, ``blkio.leaf_weight_device``,
    ``blkio.throttle.{read,write}_{bps,iops}_device``."""
    hugepage_limits: dict[str, int] = field(default_factory=dict)
    """v1 only: bytes of huge pages by page size (``2MB``: ``hugetlb.2MB.limit_in_bytes``)."""
    net_classid: int = 0
    net_priorities: dict[str, int] = field(default_factory=dict)
    """v1 only: the net_cls class id and net_prio priority by interface name."""


DEFAULT_CAPABILITIES = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
)
"""docker's default capability set."""

MASKED_PATHS = (
    "/proc/asound", "/proc/acpi", "/proc/interrupts", "/proc/kcore", "/proc/keys",
    "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug",
    "/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap",
)
"""Hidden from the container: an empty read-only tmpfs over a directory, /dev/null over a file."""

READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")
"""Visible to the container but read-only."""

DEFAULT_DEVICES = (
    "c *:* m", "b *:* m",  # mknod of any node; using one needs the entries below
    "c 1:3 rwm", "c 1:5 rwm", "c 1:7 rwm", "c 1:8 rwm", "c 1:9 rwm",  # null zero full (u)random
    "c 5:0 rwm", "c 5:1 rwm", "c 5:2 rwm", "c 136:* rwm",  # tty console ptmx pts/*
)
"""The devices a container may read, write and create (as docker allows them)."""


@dataclass
class ContainerSpec:
    """Everything an isolation plugin needs to create one container.

    ``rootfs`` lists the storage mounts that make the root filesystem (the
    isolation plugin performs them in the container's mount namespace);
    ``netns`` is the network namespace to join (made by the core, configured
    by the network plugin); ``mounts`` go on top of the root filesystem; ``cgroup``
    is the cgroup path relative to each hierarchy's root. With ``uid_map`` and
    ``gid_map`` the container gets a user namespace of its own, and its root filesystem
    (unless ``rootfs_shifted``) and volumes (mount points with the ``idmap`` option) are
    mounted idmapped.
    """

    id: str
    process: Process
    rootfs: list[Mount]
    hostname: str = ""
    """Set in the container's own UTS namespace (only there: with ``uts`` shared it is
    the host's name, for /etc/hostname and ``HOSTNAME``)."""
    netns: str | None = None
    cgroup: str = ""
    readonly_rootfs: bool = False
    namespaces: list[str] = field(default_factory=lambda: list(NAMESPACES))
    annotations: dict[str, str] = field(default_factory=dict)
    mounts: list[MountPoint] = field(default_factory=list)
    security: Security = field(default_factory=Security)
    resources: Resources = field(default_factory=Resources)
    namespace_paths: dict[str, str] = field(default_factory=dict)
    """Namespaces of ``namespaces`` to join rather than make: ``pid``, ``ipc``, ``uts`` or
    ``mount`` to a ``/proc/PID/ns/...`` path (OCI ``linux.namespaces[].path``). A namespace
    missing from ``namespaces`` is the host's."""
    sysctl: dict[str, str] = field(default_factory=dict)
    """Namespaced kernel parameters written in the container (OCI ``linux.sysctl``)."""
    devices: list[Device] = field(default_factory=list)
    """Device nodes made in the container besides the default ones (OCI ``linux.devices``)."""
    shm_size: int = DEFAULT_SHM_SIZE
    """The size of the container's ``/dev/shm`` tmpfs in bytes."""
    uid_map: list[IdMap] = field(default_factory=list)
    gid_map: list[IdMap] = field(default_factory=list)
    rootfs_propagation: str = ""
    """The propagation of the container's root mount (OCI ``linux.rootfsPropagation``:
    ``shared``, ``slave``, ``unbindable``, ``r...`` for its submounts too; "" private).
    Mounts never propagate from the container to the host: a shared root is shared
    within the container; a slave one receives the host's mounts."""
    idmapped_rootfs: bool = True
    """With ``uid_map``: the root filesystem is mounted idmapped (an image's files, owned
    by 0 on disk, belong to container root); False uses it with the ids it has on disk
    (the storage shifted its owners through the maps, chown-on-snapshot, or an OCI
    bundle's rootfs prepared for the mapping by its caller)."""

    @property
    def rootfs_shifted(self) -> bool:
        """The rootfs's files are stored with host ids through the maps (not idmapped)."""
        return bool(self.uid_map) and not self.idmapped_rootfs


def spec_from_dict(data: dict[str, Any]) -> ContainerSpec:
    """A spec from the JSON shape ``dataclasses.asdict`` gave it (as the state keeps it)."""
    proc = dict(data["process"])
    proc["user"] = User(**proc["user"])
    proc["rlimits"] = [Rlimit(**r) for r in proc.get("rlimits", [])]
    return ContainerSpec(**dict(
        data, process=Process(**proc),
        rootfs=[Mount(m["type"], m["source"], tuple(m["options"])) for m in data["rootfs"]],
        mounts=[MountPoint(**m) for m in data.get("mounts", [])],
        security=Security(**data.get("security", {})),
        resources=Resources(**data.get("resources", {})),
        devices=[Device(**d) for d in data.get("devices", [])],
        uid_map=[IdMap(**m) for m in data.get("uid_map", [])],
        gid_map=[IdMap(**m) for m in data.get("gid_map", [])]))
