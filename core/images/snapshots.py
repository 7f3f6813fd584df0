"""Image layers as committed snapshots of each storage plugin: unpacked once per storage
on first use, recorded in the state (``snapshots``), removed when no image needs them."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from pinnace import faults
from pinnace.errors import FailedPrecondition, NotFound, PinnaceError

if TYPE_CHECKING:
    from pinnace.images.store import Image, ImageStore
    from pinnace.paths import Paths
    from pinnace.plugins import Plugins
    from pinnace.runtime.userns import Mapping
    from pinnace.state import State

EXTRACT_PREFIX = "extract-"
"""Keys of snapshots being unpacked: ``extract-<pid>-<chain id>``."""
COMMIT_PREFIX = "commit-"
"""Keys of the views ``commit`` reads an image through: ``commit-<pid>-<random>``."""
SHIFT_PREFIX = "shift-"
"""Keys of layers with shifted owners (``pinnace_storage_shift``):
``shift-<mapping hash>-<chain id>``, kept while the layer is."""


def _orphan(key: str, recorded: set[str], containers: set[str]) -> bool:
    """Whether nothing names snapshot ``key`` (see :meth:`LayerSnapshots.orphans`)."""
    for prefix in (EXTRACT_PREFIX, COMMIT_PREFIX):
        if key.startswith(prefix):
            pid = key[len(prefix):].split("-", 1)[0]
            return not pid.isdigit() or not os.path.exists(f"/proc/{pid}")
    if key.startswith(SHIFT_PREFIX):
        return key.split("-", 2)[-1] not in recorded
    if key.startswith("sha256:"):
        return key not in recorded
    if len(key) == 64 and all(c in "0123456789abcdef" for c in key):
        return key not in containers
    return False


def mapping_hash(mapping: Mapping) -> str:
    """16 hex digits naming ``mapping``'s uid and gid maps."""
    import hashlib

    text = "u" + "".join(m.line() for m in mapping.uids) + "g" + "".join(
        m.line() for m in mapping.gids)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


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

    def base_for(self, storage: str, chain_id: str | None, mapping: Mapping
                 ) -> tuple[str | None, bool]:
        """The snapshot a container with ``mapping`` is prepared on, and whether its files
        are shifted: the layer itself when there is no user namespace or the storage's
        snapshots can be idmapped, else (chown-on-snapshot) the layer shifted through the
        mapping, made once per mapping."""
        from pinnace.errors import AlreadyExists
        from pinnace.snapshots import StorageCapabilities

        if not mapping.uids or chain_id is None:
            return chain_id, False
        caps = (self.plugins.call("storage", storage, "capabilities")
                if self.plugins.implements("storage", storage, "capabilities")
                else StorageCapabilities())
        if caps.idmap:
            return chain_id, False
        if not caps.shift:
            raise FailedPrecondition(
                f"storage {storage} can neither idmap its snapshots here nor shift their "
                "owners, which a container with a user namespace needs: use --userns=host "
                "or another storage")
        key = f"{SHIFT_PREFIX}{mapping_hash(mapping)}-{chain_id}"
        with self._locked(f"unpack-{storage}"), contextlib.suppress(AlreadyExists):
            self.state.with_room(lambda: self.plugins.call(
                "storage", storage, "shift", key=key, parent=chain_id,
                uid_map=list(mapping.uids), gid_map=list(mapping.gids)))
        return key, True

    def remove(self, storage: str, key: str) -> None:
        """Remove snapshot ``key`` of ``storage`` if it exists (an undo: it may not)."""
        with contextlib.suppress(NotFound):
            self.state.with_room(
                lambda: self.plugins.call("storage", storage, "remove", key=key))

    def drop(self, chain_ids: list[str]) -> None:
        """Remove the layer snapshots of ``chain_ids`` (bottom first) from every storage
        that holds them, children before their parents."""
        for chain_id in reversed(chain_ids):
            for snap in self.state.query(
                    "SELECT storage FROM snapshots WHERE chain_id = ?", chain_id):
                self.forget(snap["storage"], chain_id)

    def forget(self, storage: str, chain_id: str) -> None:
        """Remove layer snapshot ``chain_id`` from ``storage``, then its row (a kill in
        between leaves a row the collector drops, never a snapshot nothing names)."""
        if self.plugins.implements("storage", storage, "shift"):  # its shifted copies first
            for info in self.plugins.call("storage", storage, "walk"):
                if info.key.startswith(SHIFT_PREFIX) and info.parent == chain_id:
                    self.remove(storage, info.key)
        self.remove(storage, chain_id)
        faults.point("layer.removed")
        with self.state.tx() as db:
            db.execute("DELETE FROM snapshots WHERE chain_id = ? AND storage = ?",
                       (chain_id, storage))

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

    def orphans(self, storage: str, containers: set[str], repair: bool = False) -> list[str]:
        """Snapshots of ``storage`` that nothing names: unpacks and commit views of a
        pinnace that died (``extract-<pid>-``, ``commit-<pid>-``), rootfs snapshots of no
        container in ``containers``, layers the state does not record. With ``repair``
        they are removed (children before parents). Returns what was found."""
        with self._locked(f"unpack-{storage}"):  # no layer is half-recorded meanwhile
            recorded = {r["chain_id"] for r in self.state.query(
                "SELECT chain_id FROM snapshots WHERE storage = ?", storage)}
            found = [info.key for info in self.plugins.call("storage", storage, "walk")
                     if _orphan(info.key, recorded, containers)]
            left = list(found)
            while repair and left:
                stuck = []
                for key in left:
                    try:
                        self.remove(storage, key)
                    except FailedPrecondition:  # the parent of another orphan: after it
                        stuck.append(key)
                if len(stuck) == len(left):
                    break
                left = stuck
        return [f"snapshot {key} of storage {storage} belongs to nothing" for key in found]

    def _unpack(self, image: Image, storage: str) -> None:
        from pinnace.images.unpack import apply_layer
        from pinnace.mounts import mounted

        unrecorded = {layer.chain_id for layer in image.layers
                      if not self.holds(storage, layer.chain_id)}
        for info in self.plugins.call("storage", storage, "walk"):
            if info.key.startswith(EXTRACT_PREFIX) or info.key in unrecorded:
                self.remove(storage, info.key)  # left by a pinnace killed mid-unpack
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
                        faults.point("unpack.applied")
                    self.plugins.call("storage", storage, "commit", name=layer.chain_id,
                                      key=key, labels=labels)
                    faults.point("unpack.committed")
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
        with open(path, "a") as f:  # not truncated: that needs room a full disk lacks
            fcntl.flock(f, fcntl.LOCK_EX)
            yield
