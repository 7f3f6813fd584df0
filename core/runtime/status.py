"""A container's runtime status as an isolation plugin reports it."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Status(enum.StrEnum):
    """OCI runtime states as ``pinnace_isolation_state`` reports them: a paused container
    is ``running`` (the core records pauses itself)."""

    CREATED = "created"
    RUNNING = "running"
    STOPPED = "stopped"


@dataclass
class ContainerState:
    """What ``pinnace_isolation_state`` returns."""

    status: Status
    pid: int = 0
