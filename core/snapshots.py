"""What storage plugins report about snapshots (containerd's snapshots.Info and Usage)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class Kind(enum.StrEnum):
    """A snapshot's kind: writable (active), read-only view, or committed (immutable parent)."""

    ACTIVE = "active"
    VIEW = "view"
    COMMITTED = "committed"


@dataclass
class SnapshotInfo:
    """A snapshot as its storage plugin sees it."""

    key: str
    kind: Kind
    parent: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    created: float = 0.0


@dataclass
class Usage:
    """Disk used by a snapshot on its own (not counting its parents): bytes and inodes."""

    size: int
    inodes: int
