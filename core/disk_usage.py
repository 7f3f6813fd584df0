"""``system df`` as docker reports it: images, containers, local volumes and build cache,
each with a total, the active part and the space reclaimable by pruning.

Image sizes are the stored layer blobs (a layer two images share counted once);
a container's size is what its storage plugin measures of its own snapshot (its
writes); a volume's is the bytes of the files under its host mountpoint.
"""

from __future__ import annotations

import contextlib
import os
import stat
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pinnace.errors import PinnaceError

if TYPE_CHECKING:
    from pinnace.containers.record import ContainerRecord
    from pinnace.engine import Engine
    from pinnace.images.store import Image
    from pinnace.volumes import Volume


@dataclass(frozen=True)
class ImageUsage:
    """One image: its size, the part it shares with other images, its containers."""

    image: Image
    size: int
    shared: int
    containers: int


@dataclass(frozen=True)
class ContainerUsage:
    """One container and the space its own snapshot uses."""

    container: ContainerRecord
    size: int
    volumes: int


@dataclass(frozen=True)
class VolumeUsage:
    """One volume: the containers that mount it and the bytes under its mountpoint."""

    volume: Volume
    links: int
    size: int


@dataclass(frozen=True)
class Summary:
    """One row of ``system df``: ``TYPE TOTAL ACTIVE SIZE RECLAIMABLE``."""

    type: str
    total: int
    active: int
    size: int
    reclaimable: int


@dataclass(frozen=True)
class DiskUsage:
    """Everything ``system df -v`` shows."""

    images: list[ImageUsage]
    containers: list[ContainerUsage]
    volumes: list[VolumeUsage]

    def summary(self) -> list[Summary]:
        """The four rows of ``system df`` (no builder: the build cache is always empty)."""
        used_layers: set[str] = set()
        all_layers: dict[str, int] = {}
        for u in self.images:
            for layer in u.image.layers:
                all_layers[layer.blob_digest] = layer.size
                if u.containers:
                    used_layers.add(layer.blob_digest)
        image_size = sum(all_layers.values())
        return [
            Summary("Images", len(self.images), sum(1 for u in self.images if u.containers),
                    image_size, image_size - sum(all_layers[d] for d in used_layers)),
            Summary("Containers", len(self.containers),
                    sum(1 for u in self.containers if u.container.active),
                    sum(u.size for u in self.containers),
                    sum(u.size for u in self.containers if not u.container.active)),
            Summary("Local Volumes", len(self.volumes),
                    sum(1 for u in self.volumes if u.links),
                    sum(u.size for u in self.volumes),
                    sum(u.size for u in self.volumes if not u.links)),
            Summary("Build Cache", 0, 0, 0, 0),
        ]


def tree_size(path: str) -> int:
    """Bytes of the regular files under ``path`` (never following symlinks); 0 when it is
    not there."""
    total = 0
    for top, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                st = os.lstat(os.path.join(top, name))
                total += st.st_size if stat.S_ISREG(st.st_mode) else 0
    return total


def container_size(engine: Engine, c: ContainerRecord) -> int:
    """The bytes the container's own snapshot holds (its writes), as its storage plugin
    measures them; 0 when the plugin no longer has it."""
    try:
        return engine.plugins.call("storage", c.storage, "usage", key=c.id).size
    except PinnaceError:
        return 0


def disk_usage(engine: Engine) -> DiskUsage:
    """What the images, containers and volumes of ``engine`` use."""
    containers = engine.list(all_=True)
    volumes = engine.volumes.list()
    images = engine.images.list()
    layer_users: dict[str, int] = {}
    for image in images:
        for layer in image.layers:
            layer_users[layer.blob_digest] = layer_users.get(layer.blob_digest, 0) + 1
    image_usage = [ImageUsage(
        image=i, size=sum(layer.size for layer in i.layers),
        shared=sum(layer.size for layer in i.layers if layer_users[layer.blob_digest] > 1),
        containers=sum(1 for c in containers if c.image_id == i.id)) for i in images]
    mounted_by: dict[str, int] = {}
    for v in volumes:
        for cid in v.users:
            mounted_by[cid] = mounted_by.get(cid, 0) + 1
    container_usage = []
    for c in containers:
        container_usage.append(ContainerUsage(c, container_size(engine, c),
                                              mounted_by.get(c.id, 0)))
    volume_usage = []
    for v in volumes:
        try:
            info, _ = engine.volumes.details(v)
            where = info.mountpoint or v.mountpoint
        except PinnaceError:
            where = v.mountpoint
        volume_usage.append(VolumeUsage(v, len(set(v.users)),
                                        tree_size(where) if where else 0))
    return DiskUsage(image_usage, container_usage, volume_usage)
