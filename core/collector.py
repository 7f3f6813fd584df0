"""The garbage collector of the store: what nothing in the state names goes.

The state names what is live: images (their blobs and layer snapshots),
containers (their rootfs snapshot, bundle, network namespace and log), networks.
Everything else that pinnace makes, a crash can leave behind; the collector
finds it and, with ``repair``, removes it. It runs only while no operation is
under way (:class:`pinnace.operations.Operations` holds them off), so nothing
it finds is work in progress. It also finishes the steps crashed operations
noted (a network whose row went before its driver removed it).
"""

from __future__ import annotations

import contextlib
import os
from typing import TYPE_CHECKING

from pinnace.errors import FailedPrecondition, NotFound, PinnaceError
from pinnace.files import remove_tree
from pinnace.images.store import TEMP_PREFIX
from pinnace.net.networks import NETWORK_REMOVAL

if TYPE_CHECKING:
    from pinnace.containers.table import ContainerTable
    from pinnace.images.snapshots import LayerSnapshots
    from pinnace.images.store import ImageStore
    from pinnace.net.networks import Networking
    from pinnace.operations import Intent
    from pinnace.paths import Paths
    from pinnace.state import State
    from pinnace.volumes.service import Volumes

class Collector:
    """Finds (and with ``repair`` removes) what nothing in the state names."""

    def __init__(self, state: State, paths: Paths, containers: ContainerTable,
                 images: ImageStore, layers: LayerSnapshots, networks: Networking,
                 volumes: Volumes) -> None:
        self.state = state
        self.paths = paths
        self.containers = containers
        self.images = images
        self.layers = layers
        self.networks = networks
        self.volumes = volumes

    def run(self, intents: list[Intent], repair: bool) -> list[str]:
        """Everything found, one line each (removed when ``repair``)."""
        storages = self._storages()  # before rows go: those of half-created containers
        found = self._finish(intents, repair)
        found += self._half_created(repair)
        found += self._unused_layers(repair)
        everyone = {c.id for c in self.containers.all()}
        for storage in storages:
            found += self.layers.orphans(storage, everyone, repair)
        found += [f"blob temp file {name} belongs to nothing" if name.startswith(TEMP_PREFIX)
                  else f"blob {name} belongs to no image" for name in self.images.garbage(repair)]
        found += self._runtime_leftovers(everyone, repair)
        return found

    def _finish(self, intents: list[Intent], repair: bool) -> list[str]:
        """Steps crashed operations began: done now."""
        found = []
        for intent in intents:
            if intent.kind == NETWORK_REMOVAL:
                name = intent.data.get("name", "?")
                found.append(f"network {name} was being removed")
                if repair:
                    self.networks.finish_removal(intent.data)
        return found

    def _half_created(self, repair: bool) -> list[str]:
        """Containers whose ``create`` died before their configuration was saved."""
        found = []
        for record in self.containers.all():
            if record.config_json != "{}":
                continue
            found.append(f"container {record.label} was never completely created")
            if repair:  # it never ran: the anonymous volumes made for it are its own
                self.volumes.forget(record.id, remove_anonymous=True)
                with contextlib.suppress(NotFound):
                    self.layers.remove(record.storage, record.id)
                self.containers.delete(record.id)
        return found

    def _unused_layers(self, repair: bool) -> list[str]:
        """Layer snapshots recorded for no image (an ``rmi`` that died before it
        could drop them): children before their parents."""
        rows = self.state.query(
            "SELECT chain_id, storage FROM snapshots WHERE chain_id NOT IN"
            " (SELECT chain_id FROM image_layers)")
        found = [f"layer {r['chain_id']} of storage {r['storage']} belongs to no image"
                 for r in rows]
        left = [(r["chain_id"], r["storage"]) for r in rows]
        while repair and left:
            stuck = []
            for chain_id, storage in left:
                try:
                    self.layers.forget(storage, chain_id)
                except FailedPrecondition:  # the parent of another one: after it
                    stuck.append((chain_id, storage))
            if len(stuck) == len(left):
                break
            left = stuck
        return found

    def _storages(self) -> list[str]:
        names = {c.storage for c in self.containers.all()} | {
            r["storage"] for r in self.state.query("SELECT DISTINCT storage FROM snapshots")}
        return sorted(names)

    def _runtime_leftovers(self, everyone: set[str], repair: bool) -> list[str]:
        """Bundles and network namespaces of no running container, logs of no container."""
        from pinnace import netns

        active = {c.id for c in self.containers.active()}
        found = []
        places = ((self.paths.run_root / "containers", active, "runtime directory",
                   remove_tree),
                  (self.paths.run_root / "netns", active, "network namespace",
                   lambda p: netns.delete(str(p))),
                  (self.paths.root / "containers", everyone, "log directory", remove_tree))
        found += self._scratch_mounts(repair)
        for directory, live, what, remove in places:
            with contextlib.suppress(FileNotFoundError):
                for name in sorted(os.listdir(directory)):
                    if name in live:
                        continue
                    found.append(f"{what} {directory / name} belongs to no container")
                    if repair:
                        with contextlib.suppress(PinnaceError, OSError):
                            remove(directory / name)
        return found

    def _scratch_mounts(self, repair: bool) -> list[str]:
        """Directories a killed pinnace mounted a snapshot on to read or fill it."""
        from pinnace import linux
        from pinnace.mounts import SCRATCH_PREFIX

        found = []
        with contextlib.suppress(FileNotFoundError):
            for name in sorted(os.listdir(self.paths.run_root)):
                if not name.startswith(SCRATCH_PREFIX):
                    continue
                pid = name[len(SCRATCH_PREFIX):].split("-", 1)[0]
                if pid.isdigit() and os.path.exists(f"/proc/{pid}"):
                    continue
                path = self.paths.run_root / name
                found.append(f"mount point {path} belongs to no process")
                if repair:
                    with contextlib.suppress(OSError, PinnaceError):
                        if os.path.ismount(path):
                            linux.umount(str(path), detach=True)
                        os.rmdir(path)
        return found
