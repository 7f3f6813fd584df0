"""What ``pinnace run`` (and ``create``) ask for, before the image's and the config's
defaults apply: the one input record every front-end fills."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple


class RunOptions(NamedTuple):
    """What ``pinnace run`` asks for, before defaults from the image and config apply.
    (A NamedTuple: defining it costs a fraction of a dataclass, on every ``run``.)"""

    image: str
    command: Sequence[str] = ()
    entrypoint: str | None = None
    name: str | None = None
    env: Sequence[str] = ()
    workdir: str | None = None
    user: str | None = None
    hostname: str | None = None
    storage: str | None = None
    network: str | None = None
    isolation: str | None = None
    read_only: bool = False
    networks: Sequence[str] = ()
    network_aliases: Mapping[str, Sequence[str]] = {}
    """Names other containers on a named network find this one by, per network."""
    ports: Sequence[str] = ()
    publish_all: bool = False
    ip: str | None = None
    dns: Sequence[str] = ()
    add_hosts: Sequence[str] = ()
    tty: bool = False
    interactive: bool = False
    restart: str = "no"
    log_opts: Sequence[str] = ()
    auto_remove: bool = False
    privileged: bool = False
    cap_add: Sequence[str] = ()
    cap_drop: Sequence[str] = ()
    security_opt: Sequence[str] = ()
    memory: str | None = None
    memory_swap: str | None = None
    cpus: float | None = None
    cpu_shares: int | None = None
    cpuset_cpus: str | None = None
    pids_limit: int | None = None
    volumes: Sequence[str] = ()
    mounts: Sequence[str] = ()
    tmpfs: Sequence[str] = ()
    volumes_from: Sequence[str] = ()
    volume_driver: str | None = None
    init: bool = False
    init_path: str | None = None
    ulimits: Sequence[str] = ()
    stop_signal: str | None = None
    stop_timeout: int | None = None
    shm_size: str | None = None
    sysctls: Sequence[str] = ()
    devices: Sequence[str] = ()
    group_add: Sequence[str] = ()
    pid: str | None = None
    ipc: str | None = None
    uts: str | None = None
    health_cmd: str | None = None
    health_interval: str | None = None
    health_timeout: str | None = None
    health_start_period: str | None = None
    health_retries: int | None = None
    no_healthcheck: bool = False
    labels: Mapping[str, str] = {}
    """The container's own labels (the image's apply beneath them)."""
    userns: str | None = None
    uidmap: Sequence[str] = ()
    gidmap: Sequence[str] = ()


class LimitChanges(NamedTuple):
    """What ``update`` changes of a container (None or empty: left as it is)."""

    memory: str | None = None
    memory_swap: str | None = None
    cpus: float | None = None
    cpu_shares: int | None = None
    cpuset_cpus: str | None = None
    pids_limit: int | None = None
    restart: str | None = None
