"""Image layers as committed snapshots of each storage plugin: unpacked once per storage
on first use, recorded in the state (``snapshots``), removed when no image needs them."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from pinnace.errors import NotFound, PinnaceError

if TYPE_CHECKING:
    from pinnace.images.store import Image, ImageStore
    from pinnace.paths import Paths
    from pinnace.plugins import Plugins
    from pinnace.state import State

EXTRACT_PREFIX = "extract-"
"""Keys of snapshots being unpacked: ``extract-<pid>-<chain id>``."""


class LayerSnapshots:
    """Unpacks image layers into storage plugins and tracks which storage holds which."""

    def __init__(self, state: State, plugins: Plugins, store: ImageStore, paths: Paths) -> None:
        self.state = state
        self.plugins = plugins
        self.store = store
        self.paths = paths

    def holds(self, storage: str, chain_id: str) -> bool:
        """Whether ``storage`` has the committed snapshot of layer chain ``chain_id``."""
        return self.state.one("SELECT 1 FROM snapshots WHERE chain_id = ? AND storage = ?",
                              chain_id, storage) is not None

    def ensure(self, image: Image, storage: str) -> str | None:
        """Unpack the image's layers into committed snapshots of ``storage`` (once each);
        return the chain ID of its top layer (None for an image without layers)."""
        if any(not self.holds(storage, layer.chain_id) for layer in image.layers):
            with self._locked(f"unpack-{storage}"):
                self._unpack(image, storage)
        return image.layers[-1].chain_id if image.layers else None

    def remove(self, storage: str, key: str) -> None:
        """Remove snapshot ``key`` of ``storage`` if it exists (an undo: it may not)."""
        with contextlib.suppress(NotFound):
            self.plugins.call("storage", storage, "remove", key=key)

    def drop(self, chain_ids: list[str]) -> None:
        """Remove the layer snapshots of ``chain_ids`` (bottom first) from every storage
        that holds them, children before their parents."""
        for chain_id in reversed(chain_ids):
            for snap in self.state.query(
                    "SELECT storage FROM snapshots WHERE chain_id = ?", chain_id):
                self.remove(snap["storage"], chain_id)
                with self.state.tx() as db:
                    db.execute("DELETE FROM snapshots WHERE chain_id = ? AND storage = ?",
                               (chain_id, snap["storage"]))

    def check(self, repair: bool = False) -> list[str]:
        """Ask each storage plugin (``stat``) for every layer snapshot the state says it
        holds; return the missing ones. With ``repair`` their rows go, so the next run
        unpacks them again."""
        missing = []
        for row in self.state.query("SELECT chain_id, storage FROM snapshots ORDER BY storage"):
            try:
                self.plugins.call("storage", row["storage"], "stat", key=row["chain_id"])
            except NotFound:
                missing.append(f"layer {row['chain_id']} is gone from storage {row['storage']}")
                if repair:
                    with self.state.tx() as db:
                        db.execute("DELETE FROM snapshots WHERE chain_id = ? AND storage = ?",
                                   (row["chain_id"], row["storage"]))
        return missing

    def _unpack(self, image: Image, storage: str) -> None:
        from pinnace.images.unpack import apply_layer
        from pinnace.mounts import mounted

        for info in self.plugins.call("storage", storage, "walk"):
            if info.key.startswith(EXTRACT_PREFIX):  # left by a pinnace killed mid-unpack
                self.remove(storage, info.key)
        parent = None
        for layer in image.layers:
            if not self.holds(storage, layer.chain_id):
                key = f"{EXTRACT_PREFIX}{os.getpid()}-{layer.chain_id}"
                labels = {"pinnace.layer": layer.diff_id}
                try:
                    mounts = self.plugins.call("storage", storage, "prepare", key=key,
                                               parent=parent, labels=labels)
                    with mounted(mounts, scratch=self.paths.run_root) as target, \
                            self.store.layer_stream(layer) as stream:
                        apply_layer(stream, target)
                    self.plugins.call("storage", storage, "commit", name=layer.chain_id,
                                      key=key, labels=labels)
                except BaseException:
                    with contextlib.suppress(PinnaceError):
                        self.remove(storage, key)
                        self.remove(storage, layer.chain_id)  # committed, not yet recorded
                    raise
                with self.state.tx() as db:
                    db.execute(
                        "INSERT OR REPLACE INTO snapshots (chain_id, storage, parent, created)"
                        " VALUES (?,?,?,?)", (layer.chain_id, storage, parent, time.time()))
            parent = layer.chain_id

    @contextlib.contextmanager
    def _locked(self, name: str) -> Iterator[None]:
        import fcntl

        path = self.paths.lock(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            yield
