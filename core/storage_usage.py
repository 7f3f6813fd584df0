"""What each storage plugin holds for pinnace (``Engine.storage_usage``): kept out of the
engine module, which every command imports."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pinnace.containers.table import ContainerTable
    from pinnace.plugins import Plugins
    from pinnace.state import State


@dataclass(frozen=True)
class StorageUsage:
    """What one storage plugin holds for pinnace: its snapshots and the space they use."""

    storage: str
    containers: int
    layers: int
    bytes: int
    inodes: int


def storage_usage(state: State, containers: ContainerTable,
                  plugins: Plugins) -> list[StorageUsage]:
    """For each storage plugin holding snapshots: how many, and the space they use
    (asked of the plugin)."""
    holders = {r["storage"] for r in state.query("SELECT DISTINCT storage FROM snapshots")}
    holders |= {c.storage for c in containers.all()}
    found = []
    for storage in sorted(holders):
        snapshots = plugins.call("storage", storage, "walk")
        used = [plugins.call("storage", storage, "usage", key=s.key) for s in snapshots]
        mine = {c.id for c in containers.all() if c.storage == storage}
        found.append(StorageUsage(
            storage=storage, containers=sum(s.key in mine for s in snapshots),
            layers=sum(s.key not in mine for s in snapshots),
            bytes=sum(u.size for u in used), inodes=sum(u.inodes for u in used)))
    return found
