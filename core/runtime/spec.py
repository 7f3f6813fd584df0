"""The container spec handed to isolation plugins: OCI-runtime-like dataclasses."""

from __future__ import annotations

from dataclasses import dataclass, field

from pinnace.mounts import Mount

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass
class User:
    """Who the process runs as inside the container."""

    uid: int = 0
    gid: int = 0
    additional_gids: list[int] = field(default_factory=list)


@dataclass
class Process:
    """The container's first process (OCI ``process``)."""

    args: list[str]
    env: list[str] = field(default_factory=lambda: [f"PATH={DEFAULT_PATH}"])
    cwd: str = "/"
    user: User = field(default_factory=User)
    terminal: bool = False
    console_socket: str = ""
    """With ``terminal``: a unix socket path to which the runtime sends the pty master
    (SCM_RIGHTS), allocated inside the container's own devpts; stdio is then the pty."""


@dataclass
class MountPoint:
    """A mount at ``destination`` inside the container (OCI ``mounts``), made
    after the root filesystem; a bind mount's ``source`` is a host path."""

    destination: str
    source: str
    type: str = "bind"
    options: list[str] = field(default_factory=list)


@dataclass
class ContainerSpec:
    """Everything an isolation plugin needs to create one container.

    ``rootfs`` lists the storage mounts that make the root filesystem (the
    isolation plugin performs them in the container's mount namespace);
    ``netns`` is the network namespace to join (made by the core, configured
    by the network plugin); ``mounts`` go on top of the root filesystem; ``cgroup`` is the cgroup path relative to each
    hierarchy's root.
    """

    id: str
    process: Process
    rootfs: list[Mount]
    hostname: str = ""
    netns: str | None = None
    cgroup: str = ""
    readonly_rootfs: bool = False
    namespaces: list[str] = field(
        default_factory=lambda: ["pid", "mount", "uts", "ipc", "cgroup"]
    )
    annotations: dict[str, str] = field(default_factory=dict)
    mounts: list[MountPoint] = field(default_factory=list)
