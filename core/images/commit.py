"""From containers to images: ``export`` (the rootfs as a tar) and ``commit`` (the
container's changes as a new layer on its image).

Both read the container's rootfs through its storage plugin's ``mounts``;
``commit`` also asks that plugin for a read-only ``view`` of the image's top
layer and writes the difference between the two trees
(:func:`pinnace.images.layers.write_diff`), so it works the same on every
storage plugin. The view is removed afterwards, whatever happens.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pinnace.errors import NotFound, PinnaceError

if TYPE_CHECKING:
    from pinnace.engine import Engine


@contextlib.contextmanager
def _rootfs(engine: Engine, row: Any) -> Iterator[Path]:
    """The container's root filesystem, visible as a directory for the block."""
    from pinnace.mounts import mounted

    mounts = engine.plugins.call("storage", row["storage"], "mounts", key=row["id"])
    with mounted(mounts, scratch=engine.config.run_root) as path:
        yield path


@contextlib.contextmanager
def _image_tree(engine: Engine, storage: str, chain_id: str | None) -> Iterator[Path | None]:
    """A read-only view of the layer ``chain_id`` in ``storage`` (None for no layers)."""
    from pinnace.mounts import mounted

    if chain_id is None:
        yield None
        return
    key = f"commit-{os.getpid()}-{os.urandom(4).hex()}"
    mounts = engine.plugins.call("storage", storage, "view", key=key, parent=chain_id,
                                 labels={"pinnace.commit": "1"})
    try:
        with mounted(mounts, scratch=engine.config.run_root) as path:
            yield path
    finally:
        with contextlib.suppress(PinnaceError):
            engine.plugins.call("storage", storage, "remove", key=key)


def export(engine: Engine, ref: str, fd: int) -> None:
    """Write the root filesystem of container ``ref`` as a tar to file descriptor ``fd``."""
    from pinnace.images.layers import write_tree

    row = _container(engine, ref)
    with _rootfs(engine, row) as path, os.fdopen(os.dup(fd), "wb") as out:
        write_tree(path, out)


def commit(engine: Engine, ref: str, reference: str | None, message: str = "",
           author: str = "", changes: Sequence[str] = ()) -> str:
    """Make a new image from container ``ref``: its image plus one layer holding what
    the container changed, tagged ``reference`` when given; return the image ID."""
    from pinnace.images.layers import write_diff
    from pinnace.images.store import Blob, _json, _rfc3339, parse_changes

    store = engine.images
    tag = store._tag_ref(reference) if reference else None
    row = _container(engine, ref)
    image = store.resolve(row["image_id"])
    config = json.loads(json.dumps(image.config))
    config["config"] = parse_changes(changes, config.get("config") or {})
    top = image.layers[-1].chain_id if image.layers else None
    with store.staging() as written:
        with _rootfs(engine, row) as upper, _image_tree(engine, row["storage"], top) as lower:
            layer = store.write_layer(
                lambda out: write_diff(lower, upper, out, _mount_points(row)))
        written.append(layer[0])
        now = _rfc3339(time.time())
        command = json.loads(row["spec"]).get("command") or []
        entry = {"created": now, "created_by": " ".join(command), "comment": message}
        if author:
            entry["author"] = config["author"] = author
        config["created"] = now
        config["history"] = [*(config.get("history") or []), entry]
        config["rootfs"] = {"type": "layers",
                            "diff_ids": [*(base.diff_id for base in image.layers), layer[0]]}
        layers = [Blob(base.blob_digest, base.size, base.media_type)
                  for base in image.layers] + [layer]
        image_id = store.add_image(_json(config), layers, [tag] if tag else [], "commit",
                                   written)
    store.state.event("image", "commit", image_id, container=row["id"], name=tag or "")
    return image_id


def _mount_points(row: Any) -> set[str]:
    """Where the engine mounts things over the container's rootfs (its /etc files and
    the spec's mounts), as paths relative to the rootfs."""
    from pinnace.etcfiles import FILES

    runtime = json.loads(row["spec"]).get("runtime") or {}
    found = {f"etc/{name}" for name in FILES}
    found.update(m["destination"].strip("/") for m in runtime.get("mounts") or [])
    return found


def _container(engine: Engine, ref: str) -> Any:
    row = engine.state.one("SELECT * FROM containers WHERE id = ?", engine.resolve(ref))
    if row is None:
        raise NotFound(f"No such container: {ref}")
    return row
