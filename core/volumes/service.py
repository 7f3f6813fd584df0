"""The engine's side of volumes: made through their driver, recorded with it (the
driver that made a volume removes it), attached to containers at ``create``, mounted
by their driver at each start and released at each stop.

Making a volume and recording a container as its user happen under one lock of the
root (``locks/volumes.lock``), so two ``run -v same:/data`` at once make one volume, and a
``volume rm`` never removes a volume a container is being attached to.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pinnace.errors import AlreadyExists, FailedPrecondition, InvalidConfig, NotFound
from pinnace.volumes import Volume, VolumeInfo
from pinnace.volumes.requests import MountRequest, volume_name
from pinnace.volumes.table import VolumeTable

if TYPE_CHECKING:
    from pinnace.mounts import Mount
    from pinnace.plugins import Plugins
    from pinnace.runtime.spec import ContainerSpec, MountPoint
    from pinnace.state import State


class Volumes:
    """Volumes and their drivers: ``volume create/ls/inspect/rm/prune`` and ``run -v``."""

    def __init__(self, state: State, plugins: Callable[[], Plugins], lock: Path,
                 selected: str) -> None:
        self.table = VolumeTable(state)
        self._plugins = plugins
        self.lock = lock
        self.selected = selected

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.lock.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _call(self, driver: str, verb: str, **kwargs: object) -> Any:
        return self._plugins().call("volume", driver, verb, **kwargs)

    # ------------------------------------------------------------ volume commands
    def create(self, name: str | None, driver: str | None, options: dict[str, str],
               labels: dict[str, str]) -> Volume:
        """``volume create``: a new volume (a random name when ``name`` is None); an
        existing one of the same driver is returned as it is, as docker does."""
        from pinnace import names

        name = volume_name(name) if name else names.new_id()
        driver = driver or self.selected
        with self._locked():
            existing = self.table.get(name)
            if existing is not None:
                if existing.driver != driver:
                    raise AlreadyExists(f"volume {name} already exists with driver "
                                        f"{existing.driver}")
                return existing
            return self._make(name, driver, options, labels, anonymous=False)

    def _make(self, name: str, driver: str, options: dict[str, str], labels: dict[str, str],
              anonymous: bool) -> Volume:
        """Have ``driver`` make the volume, then record it (under the lock)."""
        info = self._call(driver, "create", name=name, options=dict(options),
                          labels=dict(labels))
        if not isinstance(info, VolumeInfo):
            self._call(driver, "remove", name=name)
            raise FailedPrecondition(f"volume plugin {driver!r} returned "
                                     f"{type(info).__name__} from create, not VolumeInfo")
        volume = Volume(name, driver, info.mountpoint, dict(options), dict(labels), anonymous,
                        info.created_at or time.time())
        try:
            self.table.insert(volume)
        except BaseException:
            self._call(driver, "remove", name=name)
            raise
        return volume

    def get(self, name: str) -> Volume:
        """The volume called ``name``."""
        volume = self.table.get(name)
        if volume is None:
            raise NotFound(f"no such volume: {name}")
        return volume

    def list(self) -> list[Volume]:
        """Every volume, by name."""
        return self.table.all()

    def details(self, volume: Volume) -> tuple[VolumeInfo, str]:
        """What the owning driver says of ``volume``, and the driver's scope."""
        info = self._call(volume.driver, "get", name=volume.name)
        scope = self._call(volume.driver, "capabilities").scope
        return info, scope

    def remove(self, name: str, force: bool = False) -> str:
        """``volume rm``: refused while a container uses it; its own driver removes it.
        ``force`` only makes a missing volume no error."""
        with self._locked():
            volume = self.table.get(name)
            if volume is None:
                if force:
                    return name
                raise NotFound(f"no such volume: {name}")
            if volume.users:
                raise FailedPrecondition(f"remove {name}: volume is in use - "
                                         f"[{', '.join(volume.users)}]")
            with contextlib.suppress(NotFound):  # gone from the driver: forget it too
                self._call(volume.driver, "remove", name=name)
            self.table.delete(name)
        return name

    def prune(self, all_: bool, wanted: Callable[[Volume], bool] | None = None) -> list[str]:
        """Remove the volumes no container uses: anonymous ones only unless ``all_`` (of
        those ``wanted`` picks)."""
        removed = []
        for volume in self.table.all():
            if not volume.users and (all_ or volume.anonymous) and \
                    (wanted is None or wanted(volume)):
                with contextlib.suppress(FailedPrecondition, NotFound):  # taken meanwhile
                    removed.append(self.remove(volume.name))
        return removed

    def check(self, repair: bool) -> list[str]:
        """Compare the state with what the drivers hold (those of recorded volumes and the
        selected one): a volume a driver holds that nothing records (a pinnace killed
        between the two) and a recorded volume its driver lost. With ``repair`` the first
        is removed by its driver and the second, when no container uses it, forgotten."""
        found = []
        with self._locked():
            recorded = {v.name: v for v in self.table.all()}
            for driver in sorted({v.driver for v in recorded.values()} | {self.selected}):
                held = {info.name for info in self._call(driver, "list")}
                mine = {n for n, v in recorded.items() if v.driver == driver}
                for name in sorted(held - set(recorded)):
                    found.append(f"volume {name} of driver {driver} is recorded nowhere")
                    if repair:
                        self._call(driver, "remove", name=name)
                for name in sorted(mine - held):
                    found.append(f"volume {name} is recorded but driver {driver} does not "
                                 f"hold it")
                    if repair and not recorded[name].users:
                        self.table.delete(name)
        return found

    # ------------------------------------------------------------ containers
    def attach(self, cid: str, requests: Sequence[MountRequest], driver: str | None,
               rootfs: list[Mount], scratch: Path,
               undo: list[Callable[[], None]]) -> list[MountPoint]:
        """Make what container ``cid``'s mounts need (host directories for ``-v``, new
        volumes, of ``driver`` unless a request names one, the image's files copied into
        them) and return the spec's mount points; ``undo`` gets what takes it all back."""
        from pinnace.runtime.spec import MountPoint

        points: list[MountPoint] = []
        for request in requests:  # binds and tmpfs first: a bad one makes no volume
            if request.type == "bind":
                points.append(MountPoint(request.destination, _bind_source(request), "bind",
                                         _bind_options(request)))
            elif request.type == "tmpfs":
                points.append(MountPoint(request.destination, "tmpfs", "tmpfs",
                                         [*request.tmpfs_options,
                                          *(["ro"] if request.readonly else [])]))
        made: list[tuple[Volume, MountRequest]] = []
        undo.append(lambda: self._release(cid, [v for v, _ in made]))
        with self._locked():
            for request in requests:
                if request.type != "volume":
                    continue
                volume = self._volume_for(request, driver or self.selected, made)
                self.table.add_user(volume.name, cid, request.destination)
                points.append(MountPoint(request.destination, volume.name, "volume",
                                         ["ro"] if request.readonly else []))
        copies = [(v, r) for v, r in made if not r.nocopy]
        if copies:
            self._copy_up(cid, copies, rootfs, scratch)
        return sorted(points, key=lambda p: p.destination.count("/"))  # parents first

    def _volume_for(self, request: MountRequest, driver: str,
                    made: list[tuple[Volume, MountRequest]]) -> Volume:
        """The volume a request names (an explicit driver must be its own), or a new one."""
        from pinnace import names

        if request.source:
            volume = self.table.get(request.source)
            if volume is not None:
                if request.driver and request.driver != volume.driver:
                    raise AlreadyExists(f"volume {volume.name} already exists with driver "
                                        f"{volume.driver}")
                return volume
        volume = self._make(request.source or names.new_id(), request.driver or driver,
                            request.driver_options, request.labels,
                            anonymous=not request.source)
        made.append((volume, request))
        return volume

    def _copy_up(self, cid: str, copies: list[tuple[Volume, MountRequest]],
                 rootfs: list[Mount], scratch: Path) -> None:
        """Copy the image's files at each new volume's destination into it (a volume the
        image has nothing for is not even mounted)."""
        from pinnace.mounts import mounted
        from pinnace.volumes.copyup import copy_up, image_dir

        with mounted(rootfs, scratch=scratch) as top:
            for volume, request in copies:
                src = image_dir(str(top), request.destination)
                if src is None:
                    continue
                try:
                    path = self._call(volume.driver, "mount", name=volume.name,
                                      container_id=cid)
                    try:
                        copy_up(src, str(path))
                    finally:
                        self._call(volume.driver, "unmount", name=volume.name,
                                   container_id=cid)
                finally:
                    os.close(src)

    def _release(self, cid: str, made: list[Volume]) -> None:
        """Undo :meth:`attach`: forget ``cid`` as a user; remove the volumes it made that
        no other container took meanwhile."""
        with self._locked():
            self.table.drop_users(cid)
            for volume in made:
                current = self.table.get(volume.name)
                if current is not None and not current.users:
                    with contextlib.suppress(NotFound):
                        self._call(volume.driver, "remove", name=volume.name)
                    self.table.delete(volume.name)

    def mount(self, cid: str, spec: ContainerSpec, undo: list[Callable[[], None]]) -> None:
        """At start: each volume of ``spec`` mounted by its driver, and its mount point
        turned into a bind of the directory the driver returned."""
        from pinnace import rootless

        for point in spec.mounts:
            if point.type != "volume":
                continue
            volume = self.get(point.source)
            undo.append(lambda v=volume: self._call(v.driver, "unmount", name=v.name,
                                                    container_id=cid))
            path = self._call(volume.driver, "mount", name=volume.name, container_id=cid)
            point.type, point.source = "bind", str(path)
            point.options = ["rbind", *point.options]  # private: the namespace is rprivate
            if not rootless.active():  # idmapped when the container has a user namespace;
                point.options.insert(1, "idmap")  # a rootless user's volumes are its own

    def unmount(self, cid: str) -> None:
        """At stop (and removal): container ``cid`` releases each volume it mounts."""
        first: Exception | None = None
        for name, _ in self.table.used_by(cid):
            volume = self.table.get(name)
            if volume is None:
                continue
            try:
                self._call(volume.driver, "unmount", name=name, container_id=cid)
            except Exception as err:  # release the others still
                first = first or err
        if first is not None:
            raise first

    def forget(self, cid: str, remove_anonymous: bool) -> None:
        """Container ``cid`` is removed: it uses no volume any more; with
        ``remove_anonymous`` (``rm -v``, ``--rm``) its anonymous volumes go too."""
        used = [name for name, _ in self.table.used_by(cid)]
        with self._locked():
            self.table.drop_users(cid)
        if remove_anonymous:
            for name in used:
                volume = self.table.get(name)
                if volume is not None and volume.anonymous:
                    with contextlib.suppress(FailedPrecondition, NotFound):
                        self.remove(name)

    def requests_of(self, spec: ContainerSpec) -> list[MountRequest]:
        """The volumes and binds a container's spec mounts, as ``--volumes-from`` takes them."""
        found = []
        for point in spec.mounts:
            if point.type in ("volume", "bind"):
                found.append(MountRequest(point.type, point.destination, point.source,
                                          readonly="ro" in point.options))
        return found


def _bind_source(request: MountRequest) -> str:
    """The host path of a bind, symlinks followed on the host (as docker does); a missing
    one is made for ``-v`` and an error for ``--mount``."""
    if not os.path.exists(request.source):
        if not request.create_source:
            raise InvalidConfig(f'invalid mount config for type "bind": bind source path does '
                                f'not exist: {request.source}')
        os.makedirs(request.source, 0o755, exist_ok=True)
    return os.path.realpath(request.source)


def _bind_options(request: MountRequest) -> list[str]:
    """``rbind``, private (the container's mount namespace is made ``rprivate`` before
    any mount, so a bind is private unless a propagation is asked for), ``ro``."""
    return ["rbind", *([request.propagation] if request.propagation else []),
            *(["ro"] if request.readonly else [])]
