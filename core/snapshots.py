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


@dataclass(frozen=True)
class StorageCapabilities:
    """What a storage plugin's snapshots allow beyond the required hooks, for containers
    with a user namespace (``pinnace_storage_capabilities``)."""

    idmap: bool = True
    """Their mounts can be idmapped: a container sees the files through its id maps, in
    O(1), and the snapshot keeps the image's owners."""
    shift: bool = False
    """The plugin implements ``pinnace_storage_shift``: a copy of a committed snapshot
    with every owner shifted through a mapping (chown), the fallback where ``idmap`` is
    false."""
