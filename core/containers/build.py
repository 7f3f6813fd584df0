"""The one place a container's runtime spec (and an exec'd process) is built: from the
``run`` options, the image's config and the storage plugin's mounts."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from pinnace.errors import InvalidConfig

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    from pinnace.containers.options import RunOptions
    from pinnace.mounts import Mount
    from pinnace.runtime.namespaces import Sharing
    from pinnace.runtime.spec import ContainerSpec, MountPoint, Process
    from pinnace.runtime.userns import Mapping

INIT_TARGET = "/run/pinnace-init"
"""Where ``--init`` puts the init binary in the container (read-only bind mount)."""
INIT_CANDIDATES = ("/usr/bin/catatonit", "/usr/bin/tini-static")
"""Static init binaries from Debian (``catatonit``, ``tini``), the first found is used."""


def command(opts: RunOptions, image_config: dict[str, Any]) -> list[str]:
    """Docker's rule: ENTRYPOINT + CMD, where a given command replaces CMD and
    ``--entrypoint`` replaces ENTRYPOINT (and drops the image's CMD)."""
    if opts.entrypoint is not None:
        entry = [opts.entrypoint] if opts.entrypoint else []
        cmd = list(opts.command)
    else:
        entry = list(image_config.get("Entrypoint") or [])
        cmd = list(opts.command) or list(image_config.get("Cmd") or [])
    args = entry + cmd
    if not args:
        raise InvalidConfig(f"no command given and image {opts.image} has no CMD or ENTRYPOINT")
    return args


def merge_env(base: Sequence[str], extra: Sequence[str]) -> list[str]:
    """Image env overridden by ``-e KEY=VALUE``; a bare ``-e KEY`` copies the host's value."""
    env = dict(e.split("=", 1) if "=" in e else (e, "") for e in base)
    for item in extra:
        if "=" in item:
            key, value = item.split("=", 1)
        elif item in os.environ:
            key, value = item, os.environ[item]
        else:
            continue
        if not key:
            raise InvalidConfig(f"invalid environment variable {item!r}")
        env[key] = value
    return [f"{k}={v}" for k, v in env.items()]


def absolute_workdir(path: str) -> str:
    """``path`` when it is absolute; a relative working directory is an error, as with docker."""
    if not path.startswith("/"):
        raise InvalidConfig(f"the working directory '{path}' is invalid, it needs to be an "
                            "absolute path")
    return path


def default_env(hostname: str, tty: bool) -> list[str]:
    """What docker sets before the image's env and ``-e`` (both override it):
    ``HOSTNAME`` always, ``TERM=xterm`` with a terminal."""
    return [f"HOSTNAME={hostname}", *(["TERM=xterm"] if tty else [])]


def runtime_spec(cid: str, opts: RunOptions, image_config: dict[str, Any], args: list[str],
                 mounts: list[Mount], scratch: Path, volumes: Sequence[MountPoint] = (),
                 sharing: Sharing | None = None, private_net: bool = True,
                 init_path: str = "", default_ulimits: str = "",
                 mapping: Mapping | None = None, rootfs_shifted: bool = False
                 ) -> ContainerSpec:
    """The spec an isolation plugin gets: process, rootfs, hostname, cgroup, limits and
    security, the ``volumes`` (binds, volumes, tmpfs) on top of the rootfs and the user
    namespace's ``mapping`` (``rootfs_shifted``: the storage shifted the rootfs's owners
    through it); the user is looked up in the image's files (mounted under
    ``scratch``). ``sharing`` is what ``--pid/--ipc/--uts`` chose; ``init_path`` and
    ``default_ulimits`` come from the config."""
    from pinnace.mounts import mounted
    from pinnace.runtime import cgroups, limits, security, users
    from pinnace.runtime.spec import DEFAULT_PATH, NAMESPACES, ContainerSpec, MountPoint, Process

    namespaces, joined = (sharing.namespaces, sharing.paths) if sharing else (list(NAMESPACES), {})

    def private(ns: str) -> bool:
        return ns in namespaces and ns not in joined

    if opts.hostname and not private("uts"):
        raise InvalidConfig("conflicting options: --hostname and --uts=host")
    hostname = opts.hostname or (cid[:12] if private("uts") else os.uname().nodename)
    env = merge_env(default_env(hostname, opts.tty)
                    + list(image_config.get("Env") or [f"PATH={DEFAULT_PATH}"]), opts.env)
    user_spec = opts.user if opts.user is not None else (image_config.get("User") or "")
    keep = mapping.keep if mapping else None
    if keep is not None and opts.user is None:  # keep-id runs as the user, by default
        user_spec = f"{keep.uid}:{keep.gid}"
    with mounted(mounts, scratch=scratch) as rootfs:
        if keep is not None:
            users.add_user(rootfs, keep)
        user = users.resolve(rootfs, user_spec, opts.group_add)
    if not any(e.startswith("HOME=") for e in env):
        env.append(f"HOME={user.home_dir}")
    points = list(volumes)
    if opts.init:
        points.append(MountPoint(INIT_TARGET, init_binary(opts.init_path or init_path),
                                 "bind", ["bind", "ro"]))
        args = [INIT_TARGET, "--", *args]
    resources = limits.resources(opts.memory, opts.memory_swap, opts.cpus, opts.cpu_shares,
                                 opts.cpuset_cpus, opts.pids_limit, opts.privileged)
    devices = []
    if opts.devices:
        from pinnace.runtime import devices as device_flags

        for text in opts.devices:
            device, rule = device_flags.parse(text)
            devices.append(device)
            resources.devices.append(rule)
    sysctl = {}
    if opts.sysctls:
        from pinnace.runtime import sysctls

        sysctl = sysctls.parse(opts.sysctls, private("ipc"), private_net, private("uts"))
    rlimits = []
    if opts.ulimits or default_ulimits:
        from pinnace.runtime import ulimits

        rlimits = ulimits.rlimits(opts.ulimits, default_ulimits)
    return ContainerSpec(
        id=cid,
        process=Process(args=args, env=env,
                        cwd=absolute_workdir(opts.workdir or image_config.get("WorkingDir")
                                             or "/"),
                        user=user.user, terminal=opts.tty, rlimits=rlimits),
        rootfs=list(mounts),
        hostname=hostname,
        cgroup=cgroups.container_cgroup(cid).path,
        readonly_rootfs=opts.read_only,
        namespaces=namespaces,
        namespace_paths=joined,
        mounts=points,
        security=security.policy(opts.privileged, opts.cap_add, opts.cap_drop,
                                 opts.security_opt),
        resources=resources,
        sysctl=sysctl,
        devices=devices,
        shm_size=shm_size(opts.shm_size),
        uid_map=list(mapping.uids) if mapping else [],
        gid_map=list(mapping.gids) if mapping else [],
        idmapped_rootfs=not rootfs_shifted,
    )


def init_binary(path: str) -> str:
    """The init ``--init`` runs: ``path`` (``--init-path`` or the config's ``init_path``),
    else the first of :data:`INIT_CANDIDATES` installed."""
    candidates = [path] if path else list(INIT_CANDIDATES)
    for candidate in candidates:
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    if path:
        raise InvalidConfig(f"--init-path {path}: not an executable file")
    raise InvalidConfig("--init needs an init binary: install Debian's catatonit or tini "
                        "(tini-static), or give --init-path")


def shm_size(text: str | None) -> int:
    """``--shm-size`` in bytes (64 MiB when not given, as docker)."""
    from pinnace.runtime.spec import DEFAULT_SHM_SIZE

    if text is None:
        return DEFAULT_SHM_SIZE
    from pinnace.units import parse_bytes

    size = parse_bytes(text, "--shm-size")
    if size <= 0:
        raise InvalidConfig(f"invalid --shm-size {text!r}: it must be greater than 0")
    return size


def exec_process(base: Process, pid: int, args: list[str], env: list[str],
                 workdir: str | None, user: str | None, tty: bool) -> Process:
    """The process ``exec`` runs: the container's first process's env and user unless
    overridden (a user name is looked up in the running container's files, through
    ``/proc/PID/root``)."""
    from pathlib import Path

    from pinnace.runtime.spec import Process

    if not args:
        raise InvalidConfig("exec needs a command")
    who = base.user
    if user:
        from pinnace.runtime import users

        who = users.resolve(Path(f"/proc/{pid}/root"), user).user
    return Process(args=args, env=merge_env(base.env, env),
                   cwd=absolute_workdir(workdir or base.cwd), user=who, terminal=tty)
