"""A container as pinnace records it: typed records read from its state row.

The columns are fields; what ``run`` asked for (the command, the runtime spec,
the run policy and the network options) is one JSON document, parsed when read
(``ps`` never needs it). The records are NamedTuples: every command defines
them, and a NamedTuple costs a fraction of a dataclass to define.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import TYPE_CHECKING, Any, NamedTuple

from pinnace.runtime.policy import LogOptions, RestartPolicy

if TYPE_CHECKING:
    import sqlite3

    from pinnace.network import PortMapping
    from pinnace.runtime.healthcheck import HealthConfig
    from pinnace.runtime.spec import ContainerSpec

ACTIVE = ("starting", "running", "paused")
"""Statuses of a container that has a monitor (and, but for ``starting``, a process)."""


class RunPolicy(NamedTuple):
    """How the container is run: terminal, stdin, removal, restarts, log rotation."""

    tty: bool = False
    interactive: bool = False
    auto_remove: bool = False
    restart: RestartPolicy = RestartPolicy()
    log: LogOptions = LogOptions()
    stop_signal: int = 15
    """The signal ``stop`` sends first (``--stop-signal``, the image's STOPSIGNAL)."""
    stop_timeout: int | None = None
    """Seconds ``stop`` waits before SIGKILL when not told (``--stop-timeout``; None: 10)."""
    health: HealthConfig | None = None
    """The health check its monitor runs (``--health-*``, the image's HEALTHCHECK)."""

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunPolicy:
        """The record from its stored JSON shape."""
        return cls(tty=data.get("tty", False), interactive=data.get("interactive", False),
                   auto_remove=data.get("auto_remove", False),
                   restart=RestartPolicy(**data.get("restart", {})),
                   log=LogOptions(**data.get("log", {})),
                   stop_signal=data.get("stop_signal", 15),
                   stop_timeout=data.get("stop_timeout"),
                   health=_health(data.get("health")))

    def to_dict(self) -> dict[str, Any]:
        """Its stored JSON shape."""
        return dict(self._asdict(), restart=self.restart._asdict(), log=self.log._asdict(),
                    health=self.health._asdict() if self.health else None)


def _health(data: dict[str, Any] | None) -> HealthConfig | None:
    """The health check from its stored shape; its module is imported only when there is one."""
    if not data:
        return None
    from pinnace.runtime.healthcheck import HealthConfig

    return HealthConfig(**data)


class NetOptions(NamedTuple):
    """The network flags of ``run``: named networks, published ports, address, DNS, hosts,
    the aliases peers find it by on each network. ``networks`` and ``aliases`` are
    changed in place by ``network connect`` and ``disconnect``."""

    networks: list[str]
    ports: list[PortMapping]
    ip: str
    dns: list[str]
    add_hosts: list[tuple[str, str]]
    aliases: dict[str, list[str]]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NetOptions:
        """The record from its stored JSON shape."""
        return cls(networks=list(data.get("networks") or []),
                   ports=_port_mappings(data.get("ports") or []),
                   ip=data.get("ip") or "", dns=list(data.get("dns") or []),
                   add_hosts=[(h[0], h[1]) for h in data.get("add_hosts") or []],
                   aliases={k: list(v) for k, v in (data.get("aliases") or {}).items()})

    def to_dict(self) -> dict[str, Any]:
        """Its stored JSON shape."""
        return dict(self._asdict(), ports=[asdict(p) for p in self.ports],
                    add_hosts=[list(h) for h in self.add_hosts])


def _port_mappings(items: list[dict[str, Any]]) -> list[PortMapping]:
    """Published ports from their stored shape. pinnace.network (seven records) is imported
    only when there are some: ``exec`` and others read a container's config without
    touching its network."""
    if not items:
        return []
    from pinnace.network import PortMapping

    return [PortMapping(**p) for p in items]


class ContainerConfig(NamedTuple):
    """What the container was created with: command, runtime spec, run policy, network,
    and its labels (the image's with ``--label`` over them)."""

    command: list[str]
    spec: ContainerSpec
    run: RunPolicy
    net: NetOptions
    labels: dict[str, str]

    @classmethod
    def from_json(cls, text: str) -> ContainerConfig:
        """The record from the state's JSON document."""
        from pinnace.runtime.spec import spec_from_dict

        data = json.loads(text)
        return cls(command=list(data.get("command") or []),
                   spec=spec_from_dict(data["runtime"]),
                   run=RunPolicy.from_dict(data.get("run") or {}),
                   net=NetOptions.from_dict(data.get("net") or {}),
                   labels=dict(data.get("labels") or {}))

    def to_json(self) -> str:
        """The JSON document the state keeps."""
        return json.dumps({"command": self.command, "runtime": asdict(self.spec),
                           "run": self.run.to_dict(), "net": self.net.to_dict(),
                           "labels": self.labels})


class ContainerRecord(NamedTuple):
    """One container: identity, owning plugins, status and what it was created with.

    Event hooks receive this record. ``storage``, ``network`` and ``isolation``
    name the plugins that own its rootfs, network and process; ``network`` may
    also be ``container:<id>`` (another container's namespace).
    """

    id: str
    name: str
    image_id: str
    image: str
    """The reference the container was created from, as given."""
    storage: str
    network: str
    isolation: str
    status: str
    """``created``, ``starting``, ``running``, ``paused`` or ``exited``."""
    exit_code: int | None
    created: float
    started: float | None
    finished: float | None
    pid: int
    pid_start: int
    monitor_pid: int
    monitor_start: int
    restart_count: int
    stop_requested: bool
    oom_killed: bool
    config_json: str
    network_result_json: str | None

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> ContainerRecord:
        """The record of a ``containers`` row."""
        return cls(
            id=row["id"], name=row["name"], image_id=row["image_id"], image=row["image_ref"],
            storage=row["storage"], network=row["network"], isolation=row["isolation"],
            status=row["status"], exit_code=row["exit_code"], created=row["created"],
            started=row["started"], finished=row["finished"], pid=row["pid"],
            pid_start=row["pid_start"], monitor_pid=row["monitor_pid"],
            monitor_start=row["monitor_start"], restart_count=row["restart_count"],
            stop_requested=bool(row["stop_requested"]), oom_killed=bool(row["oom_killed"]),
            config_json=row["spec"], network_result_json=row["network_result"])

    @property
    def config(self) -> ContainerConfig:
        """What it was created with, parsed on each read: keep it in a local."""
        return ContainerConfig.from_json(self.config_json)

    @property
    def command(self) -> list[str]:
        """The command its first process runs (read without parsing the rest)."""
        return list(json.loads(self.config_json).get("command") or [])

    @property
    def network_result(self) -> dict[str, Any]:
        """What ``network_add`` returned at its last start, as stored (empty if none)."""
        return dict(json.loads(self.network_result_json or "{}"))

    @property
    def active(self) -> bool:
        """Whether it has a monitor (starting, running or paused)."""
        return self.status in ACTIVE

    @property
    def short_id(self) -> str:
        """The first 12 hex digits, as docker shows them."""
        return self.id[:12]

    @property
    def label(self) -> str:
        """Its name, or its short ID when it has none."""
        return self.name or self.short_id
