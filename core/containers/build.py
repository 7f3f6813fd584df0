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
    from pinnace.runtime.spec import ContainerSpec, MountPoint, Process


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
                 mounts: list[Mount], scratch: Path,
                 volumes: Sequence[MountPoint] = ()) -> ContainerSpec:
    """The spec an isolation plugin gets: process, rootfs, hostname, cgroup, limits and
    security, and the ``volumes`` (binds, volumes, tmpfs) on top of the rootfs; the user
    is looked up in the image's files (mounted under ``scratch``)."""
    from pinnace.mounts import mounted
    from pinnace.runtime import cgroups, limits, security, users
    from pinnace.runtime.spec import DEFAULT_PATH, ContainerSpec, Process

    hostname = opts.hostname or cid[:12]
    env = merge_env(default_env(hostname, opts.tty)
                    + list(image_config.get("Env") or [f"PATH={DEFAULT_PATH}"]), opts.env)
    user_spec = opts.user if opts.user is not None else (image_config.get("User") or "")
    with mounted(mounts, scratch=scratch) as rootfs:
        user = users.resolve(rootfs, user_spec)
    if not any(e.startswith("HOME=") for e in env):
        env.append(f"HOME={user.home_dir}")
    return ContainerSpec(
        id=cid,
        process=Process(args=args, env=env,
                        cwd=absolute_workdir(opts.workdir or image_config.get("WorkingDir")
                                             or "/"),
                        user=user.user, terminal=opts.tty),
        rootfs=list(mounts),
        hostname=hostname,
        cgroup=cgroups.container_cgroup(cid).path,
        readonly_rootfs=opts.read_only,
        mounts=list(volumes),
        security=security.policy(opts.privileged, opts.cap_add, opts.cap_drop,
                                 opts.security_opt),
        resources=limits.resources(opts.memory, opts.memory_swap, opts.cpus, opts.cpu_shares,
                                   opts.cpuset_cpus, opts.pids_limit, opts.privileged),
    )



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
