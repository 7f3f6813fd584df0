"""What ``pinnace run`` (and ``create``) ask for, before the image's and the config's
defaults apply: the one input record every front-end fills."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class RunOptions:
    """What ``pinnace run`` asks for, before defaults from the image and config apply."""

    image: str
    command: list[str] = field(default_factory=list)
    entrypoint: str | None = None
    name: str | None = None
    env: list[str] = field(default_factory=list)
    workdir: str | None = None
    user: str | None = None
    hostname: str | None = None
    storage: str | None = None
    network: str | None = None
    isolation: str | None = None
    read_only: bool = False
    networks: list[str] = field(default_factory=list)
    ports: list[str] = field(default_factory=list)
    publish_all: bool = False
    ip: str | None = None
    dns: list[str] = field(default_factory=list)
    add_hosts: list[str] = field(default_factory=list)
    tty: bool = False
    interactive: bool = False
    restart: str = "no"
    log_opts: list[str] = field(default_factory=list)
    auto_remove: bool = False
    privileged: bool = False
    cap_add: list[str] = field(default_factory=list)
    cap_drop: list[str] = field(default_factory=list)
    security_opt: list[str] = field(default_factory=list)
    memory: str | None = None
    memory_swap: str | None = None
    cpus: float | None = None
    cpu_shares: int | None = None
    cpuset_cpus: str | None = None
    pids_limit: int | None = None
