"""From containers to images: ``export`` (the rootfs as a tar), ``commit`` (the
container's changes as a new layer on its image) and ``changes`` (them as ``diff``
lists them).

Both read the container's rootfs through its storage plugin's ``mounts``;
``commit`` and ``changes`` also ask that plugin for a read-only ``view`` of the image's top
layer and writes the difference between the two trees
(:func:`pinnace.images.layers.write_diff`), so it works the same on every
storage plugin. The view is removed afterwards, whatever happens; a failure to
remove it fails the commit.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pinnace.errors import PinnaceError
from pinnace.images.snapshots import COMMIT_PREFIX

if TYPE_CHECKING:
    from pinnace.containers.record import ContainerRecord
    from pinnace.images.layers import Change
    from pinnace.images.store import ImageStore
    from pinnace.plugins import Plugins


@dataclass(frozen=True)
class Step:
    """A build step's commit: the new image's container config (replacing the parent's
    rather than changed by ``-c`` lines) and its history line (``created_by``)."""

    config: dict[str, Any]
    created_by: str


@contextlib.contextmanager
def container_rootfs(plugins: Plugins, record: ContainerRecord, scratch: Path) -> Iterator[Path]:
    """The container's root filesystem, visible as a directory for the block."""
    from pinnace.mounts import mounted

    mounts = plugins.call("storage", record.storage, "mounts", key=record.id)
    with mounted(mounts, scratch=scratch) as path:
        yield path


@contextlib.contextmanager
def image_tree(plugins: Plugins, storage: str, chain_id: str | None,
                scratch: Path) -> Iterator[Path | None]:
    """A read-only view of the layer ``chain_id`` in ``storage`` (None for no layers),
    mounted for the block."""
    from pinnace.mounts import mounted

    if chain_id is None:
        yield None
        return
    key = f"{COMMIT_PREFIX}{os.getpid()}-{os.urandom(4).hex()}"
    try:
        mounts = plugins.call("storage", storage, "view", key=key, parent=chain_id,
                              labels={"pinnace.commit": "1"})
        with mounted(mounts, scratch=scratch) as path:
            yield path
    except BaseException:  # also when the view was made and its call then failed
        with contextlib.suppress(PinnaceError):  # the error that got here is the one to tell
            plugins.call("storage", storage, "remove", key=key)
        raise
    plugins.call("storage", storage, "remove", key=key)  # a view left behind fails the commit


def _base(plugins: Plugins, record: ContainerRecord, chain_id: str | None
          ) -> tuple[str | None, Callable[[Any], None] | None]:
    """The snapshot the container's rootfs is compared with (its image's top layer
    ``chain_id``, or the shifted copy of it the container was prepared on), and for a
    shifted rootfs what turns its owners back into the container's ids in a tar."""
    spec = record.config.spec
    if not spec.rootfs_shifted:
        return chain_id, None
    from pinnace.runtime.userns import container_id

    def unshift(info: Any) -> None:
        info.uid = container_id(spec.uid_map, info.uid)
        info.gid = container_id(spec.gid_map, info.gid)

    return plugins.call("storage", record.storage, "stat", key=record.id).parent, unshift


def export(plugins: Plugins, record: ContainerRecord, scratch: Path, fd: int) -> None:
    """Write the root filesystem of a container as a tar to file descriptor ``fd``."""
    from pinnace.images.layers import write_tree

    with container_rootfs(plugins, record, scratch) as path, os.fdopen(os.dup(fd), "wb") as out:
        write_tree(path, out, _base(plugins, record, None)[1])


def commit(plugins: Plugins, store: ImageStore, record: ContainerRecord, scratch: Path,
           engine_mounts: set[str], reference: str | None, message: str = "", author: str = "",
           changes: Sequence[str] = (), step: Step | None = None) -> str:
    """Make a new image from a container: its image plus one layer holding what the
    container changed, tagged ``reference`` when given; return the image ID. With
    ``step``, its config and history line are the image's (``changes`` are not read).

    ``engine_mounts`` are the paths (relative to the rootfs) where the engine mounts
    files of its own over every container's rootfs: they are left out, as are the
    spec's mounts."""
    from pinnace.images.layers import write_diff
    from pinnace.images.store import Blob, canonical_json, parse_changes, rfc3339

    tag = store.tag_reference(reference) if reference else None
    image = store.resolve(record.image_id)
    config = json.loads(json.dumps(image.config))
    config["config"] = step.config if step is not None else \
        parse_changes(changes, config.get("config") or {})
    base, unshift = _base(plugins, record, image.layers[-1].chain_id if image.layers else None)
    with store.staging() as written:
        with container_rootfs(plugins, record, scratch) as upper, \
                image_tree(plugins, record.storage, base, scratch) as lower:
            layer = store.write_layer(lambda out: write_diff(
                lower, upper, out, _left_out(record, engine_mounts), unshift))
            written.append(layer[0])  # before the view and the rootfs are let go, which may fail
        now = rfc3339(time.time())
        entry = {"created": now, "comment": message,
                 "created_by": step.created_by if step else " ".join(record.command)}
        if author:
            entry["author"] = config["author"] = author
        config["created"] = now
        config["history"] = [*(config.get("history") or []), entry]
        config["rootfs"] = {"type": "layers",
                            "diff_ids": [*(base.diff_id for base in image.layers), layer[0]]}
        layers = [Blob(base.blob_digest, base.size, base.media_type)
                  for base in image.layers] + [layer]
        image_id = store.add_image(canonical_json(config), layers, [tag] if tag else [],
                                   "commit", written)
    store.state.event("image", "commit", image_id, container=record.id, name=tag or "")
    return image_id



def changes(plugins: Plugins, store: ImageStore, record: ContainerRecord, scratch: Path,
            engine_mounts: set[str]) -> list[Change]:
    """What the container changed in its image's files, as ``diff`` lists them; the engine's
    mount points are left out, as in :func:`commit`."""
    from pinnace.images.layers import list_changes

    image = store.resolve(record.image_id)
    base, _ = _base(plugins, record, image.layers[-1].chain_id if image.layers else None)
    with container_rootfs(plugins, record, scratch) as upper, \
            image_tree(plugins, record.storage, base, scratch) as lower:
        return list_changes(lower, upper, _left_out(record, engine_mounts))


def _left_out(record: ContainerRecord, engine_mounts: set[str]) -> set[str]:
    """The mount points, relative to the rootfs, that are not the container's changes."""
    return engine_mounts | {m.destination.strip("/") for m in record.config.spec.mounts}
