"""Every hook specification, grouped by role.

Role hooks (storage, isolation, network, image source, volume) are called on exactly
one plugin, the one selected for (or owning) the thing at hand, and return
its result (``firstresult``). Event and extension hooks reach every loaded
plugin that implements them. Hook names carry the ``pinnace_`` prefix and
the role, so a misspelt implementation is an error at load time.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    import click

    from pinnace.containers.record import ContainerRecord
    from pinnace.images.sources import SearchResult, TransferOptions
    from pinnace.images.store import ImageStore
    from pinnace.mounts import Mount
    from pinnace.network import Attachment, Network, NetworkResult
    from pinnace.runtime.spec import ContainerSpec, Process
    from pinnace.runtime.status import ContainerState
    from pinnace.runtime.userns import IdMap
    from pinnace.snapshots import SnapshotInfo, StorageCapabilities, Usage
    from pinnace.volumes import VolumeCapabilities, VolumeInfo

hookspec = pluggy.HookspecMarker("pinnace")


class PluginManager(pluggy.PluginManager):
    """pluggy's manager for project ``pinnace``; only ``pinnace_*`` names are looked at.

    Registering a plugin otherwise inspects every attribute of it (its imports
    included), which costs more than the rest of a short command's set-up.
    """

    def __init__(self) -> None:
        super().__init__("pinnace")

    def parse_hookimpl_opts(self, plugin: Any, name: str) -> Any:
        """Hook options of ``plugin.<name>``: only ``pinnace_*`` names can be hooks."""
        return super().parse_hookimpl_opts(plugin, name) if name.startswith("pinnace_") else None

# --------------------------------------------------------------------- storage
# Snapshots are keyed by strings: committed image layers by their chain ID,
# containers by their ID. Storage describes mounts; isolation performs them.


@hookspec(firstresult=True)
def pinnace_storage_prepare(key: str, parent: str | None, labels: dict[str, str]) -> list[Mount]:
    """Create a writable (active) snapshot ``key`` on top of committed ``parent``
    (or empty when ``parent`` is None) and return the mounts that show it.

    Raise ``AlreadyExists`` if ``key`` exists, ``NotFound`` if ``parent`` does not.
    On failure leave nothing behind (no snapshot, directory or mount); the engine
    also removes ``key`` when a later step of its own fails.
    """


@hookspec(firstresult=True)
def pinnace_storage_view(key: str, parent: str, labels: dict[str, str]) -> list[Mount]:
    """Create a read-only snapshot ``key`` of committed ``parent`` and return its mounts."""


@hookspec(firstresult=True)
def pinnace_storage_mounts(key: str) -> list[Mount]:
    """Return the mounts of an existing active or view snapshot: ``FailedPrecondition``
    for a committed one (make a view of it instead), ``NotFound`` for an absent key."""


@hookspec(firstresult=True)
def pinnace_storage_commit(name: str, key: str, labels: dict[str, str]) -> None:
    """Turn active snapshot ``key`` into committed, read-only snapshot ``name``.

    ``key`` no longer exists afterwards. Committed snapshots can be parents.
    """


@hookspec(firstresult=True)
def pinnace_storage_remove(key: str) -> None:
    """Remove snapshot ``key``. ``NotFound`` if absent; ``FailedPrecondition``
    if it is the parent of another snapshot."""


@hookspec(firstresult=True)
def pinnace_storage_stat(key: str) -> SnapshotInfo:
    """Return the kind, parent and labels of snapshot ``key`` (``NotFound`` if absent)."""


@hookspec(firstresult=True)
def pinnace_storage_usage(key: str) -> Usage:
    """Return the disk space and inodes that snapshot ``key`` uses on its own."""


@hookspec(firstresult=True)
def pinnace_storage_walk() -> list[SnapshotInfo]:
    """Return every snapshot this plugin holds."""


@hookspec(firstresult=True)
def pinnace_storage_capabilities() -> StorageCapabilities:
    """Optional: whether this plugin's snapshots can be mounted idmapped here (for the
    containers with a user namespace), and whether it implements
    ``pinnace_storage_shift``. A plugin without this hook: idmapped, no shift."""


@hookspec(firstresult=True)
def pinnace_storage_shift(key: str, parent: str, uid_map: list[IdMap],
                          gid_map: list[IdMap]) -> None:
    """Optional (chown-on-snapshot, where idmapped mounts are not possible): create
    committed snapshot ``key`` (its parent is ``parent``) holding committed ``parent``'s
    files with each owner shifted from container id to host id through the maps, ids
    beyond them to the overflow id (65534). Modes, times, xattrs and links are kept.

    The core names ``key`` after the parent and the mapping and prepares containers on
    it, so a second container with the same mapping shifts nothing; it removes ``key``
    before ``parent``. Raise ``AlreadyExists`` if ``key`` exists, ``NotFound`` if
    ``parent`` does not; on failure leave nothing behind.
    """


# ------------------------------------------------------------------- isolation
# One container's lifecycle, shaped like an OCI runtime. ``bundle`` is a
# directory under the run dir private to the container, where the plugin may
# keep files (pid, sockets) that later calls from other processes read.


@hookspec(firstresult=True)
def pinnace_isolation_create(spec: ContainerSpec, bundle: Path,
                             stdio: tuple[int, int, int] | None) -> int:
    """Create the container's namespaces, cgroup and root filesystem, with its
    first process held before exec. Return that process's host PID.

    The first process gets ``stdio`` as its stdin, stdout and stderr (None:
    the caller's), or with ``spec.process.terminal`` a pty whose master goes
    to ``spec.process.console_socket``. Once ``create`` returns it is the
    caller's child, or becomes one when what forked it exits (the caller is a
    child subreaper), so the core's monitor can reap it with ``waitpid``.
    ``CommandNotFound``/``CommandNotExecutable`` may come from here when the
    plugin checks the command at create time, as runc does.
    On failure, leave nothing behind (no process, cgroup or mount).
    """


@hookspec(firstresult=True)
def pinnace_isolation_start(container_id: str, bundle: Path) -> None:
    """Let the created container exec its process.

    Raise ``CommandNotFound`` (127) or ``CommandNotExecutable`` (126) when
    the exec fails; the container has then exited.
    """


@hookspec(firstresult=True)
def pinnace_isolation_wait(container_id: str, bundle: Path) -> int:
    """Block until the container's first process exits; return its exit code
    (128 + signal number when killed by a signal). Only the process that
    called ``create`` can wait."""


@hookspec(firstresult=True)
def pinnace_isolation_kill(container_id: str, bundle: Path, signal: int) -> None:
    """Send ``signal`` to the container's first process (no error if it is gone)."""


@hookspec(firstresult=True)
def pinnace_isolation_state(container_id: str, bundle: Path) -> ContainerState:
    """Return whether the container is created, running (paused counts as running) or
    stopped, and its PID. Called from any process (``pinnace system check``)."""


@hookspec(firstresult=True)
def pinnace_isolation_exec(container_id: str, bundle: Path, process: Process,
                           stdio: tuple[int, int, int] | None) -> int:
    """Start ``process`` inside the running container (all its namespaces and its
    cgroup, the same security policy) as a child of the caller; return its PID.
    ``stdio`` and ``process.terminal`` work as for ``create``. The caller is not a
    child subreaper: a plugin whose runtime forks the process from a helper makes
    the caller one itself.

    Raise ``CommandNotFound``/``CommandNotExecutable`` when it cannot be executed.
    """


@hookspec(firstresult=True)
def pinnace_isolation_pause(container_id: str, bundle: Path) -> None:
    """Freeze every process of the container (the cgroup freezer)."""


@hookspec(firstresult=True)
def pinnace_isolation_resume(container_id: str, bundle: Path) -> None:
    """Thaw a paused container."""


@hookspec(firstresult=True)
def pinnace_isolation_delete(container_id: str, bundle: Path) -> None:
    """Release everything ``create`` made: kill what is left, remove the cgroup.

    Idempotent and best-effort: it runs after crashes and half-made containers.
    """


# --------------------------------------------------------------------- network
# CNI-shaped: add/del/check one container in one network namespace.


@hookspec(firstresult=True)
def pinnace_network_add(attachment: Attachment) -> NetworkResult:
    """Connect the container's network namespace ``attachment.netns`` to
    ``attachment.network``; return interfaces, IPs, routes and DNS.

    For drivers with named networks the core has leased ``attachment.address``
    and filled ``gateway``, ``internal``, ``ports`` and the network's ``options``."""


@hookspec(firstresult=True)
def pinnace_network_del(attachment: Attachment) -> None:
    """Undo ``network_add``. Idempotent and best-effort: it always runs, even
    after a failed or partial add, and never fails because something is gone."""


@hookspec(firstresult=True)
def pinnace_network_check(attachment: Attachment) -> None:
    """Raise ``FailedPrecondition`` if the attachment is not as ``add`` left it
    (``pinnace system check`` asks, for every running container)."""


# Named networks (optional: drivers without them implement none of these).
# The core keeps networks and their IP leases in the state; the driver makes
# the host side (a bridge, rules) and may do so lazily in ``network_add``.


@hookspec(firstresult=True)
def pinnace_network_default() -> Network | None:
    """The network a container of this driver joins when none is named
    (recorded by the core on first use), or None."""


@hookspec(firstresult=True)
def pinnace_network_create(network: Network, taken: list[str]) -> Network:
    """Complete a new network of this driver: choose a subnet when it is empty
    (none of the ``taken`` CIDRs), a gateway, and the driver's ``options``."""


@hookspec(firstresult=True)
def pinnace_network_remove(network: Network) -> None:
    """Remove what the driver made on the host for ``network``; idempotent."""


# ---------------------------------------------------------------- image source
# All installed sources are active; the transport of a reference
# (``transport:rest``) picks the one whose entry-point name matches.


@hookspec(firstresult=True)
def pinnace_image_source_fetch(reference: str, store: ImageStore,
                               options: TransferOptions) -> str:
    """Bring the image ``reference`` (without its transport prefix) into
    ``store`` and return its image ID. ``options`` carries what the user asked
    for (platform, TLS verification, progress display); a source ignores what
    does not apply to it, and may leave ``options`` out of its signature.
    The same material gives the same ID; a missing reference raises ``NotFound``
    in one line and leaves nothing in the store (``pinnace.testing.image_source``)."""


@hookspec(firstresult=True)
def pinnace_image_source_push(image_id: str, destination: str, store: ImageStore,
                              options: TransferOptions) -> str:
    """Optional: copy image ``image_id`` from ``store`` to ``destination`` (without its
    transport prefix); return the digest of what was written there."""


@hookspec(firstresult=True)
def pinnace_image_source_login(server: str, username: str, password: str,
                               options: TransferOptions) -> None:
    """Optional: check the credentials against ``server`` and store them for later
    fetches and pushes (readable by root only). Refused credentials raise
    ``FailedPrecondition``."""


@hookspec(firstresult=True)
def pinnace_image_source_search(query: str, limit: int,
                                options: TransferOptions) -> list[SearchResult]:
    """Optional: the repositories whose name contains a term, at most ``limit`` of them,
    each with its tags. ``query`` is ``HOST/TERM`` or, where the source has a default
    location, ``TERM``."""


@hookspec(firstresult=True)
def pinnace_image_source_logout(server: str) -> bool:
    """Optional: forget the credentials stored for ``server``; return whether there were any."""


# ---------------------------------------------------------------------- volume
# Shaped like docker's volume plugin protocol. Volumes are keyed by name; ``mount``
# and ``unmount`` name the container too, so a driver can keep a volume mounted
# while any container uses it and release it when the last one leaves.


@hookspec(firstresult=True)
def pinnace_volume_create(name: str, options: dict[str, str],
                          labels: dict[str, str]) -> VolumeInfo:
    """Make volume ``name`` with the driver ``options`` given (``-o KEY=VALUE``).

    Raise ``AlreadyExists`` if it exists, ``InvalidConfig`` for an option the driver
    does not know or a value it refuses. On failure leave nothing behind."""


@hookspec(firstresult=True)
def pinnace_volume_remove(name: str) -> None:
    """Remove volume ``name`` and its data. ``NotFound`` if absent; ``FailedPrecondition``
    while a container has it mounted."""


@hookspec(firstresult=True)
def pinnace_volume_mount(name: str, container_id: str) -> str:
    """Make volume ``name`` available to container ``container_id`` and return the host
    directory that shows it (the core bind-mounts it into the container). Called once
    per container start; the first mount may mount a filesystem, later ones reuse it.
    On failure, leave the volume as it was."""


@hookspec(firstresult=True)
def pinnace_volume_unmount(name: str, container_id: str) -> None:
    """Container ``container_id`` no longer uses volume ``name``: when it was the last
    one, release what ``mount`` mounted. Idempotent (unknown containers are ignored)."""


@hookspec(firstresult=True)
def pinnace_volume_path(name: str) -> str:
    """The host directory of volume ``name`` (``NotFound`` if absent)."""


@hookspec(firstresult=True)
def pinnace_volume_get(name: str) -> VolumeInfo:
    """Volume ``name`` as the driver sees it (``NotFound`` if absent)."""


@hookspec(firstresult=True)
def pinnace_volume_list() -> list[VolumeInfo]:
    """Every volume this driver holds."""


@hookspec(firstresult=True)
def pinnace_volume_capabilities() -> VolumeCapabilities:
    """The driver's scope (``local`` or ``global``)."""


# ----------------------------------------------------------------- lifecycle events
# Reach every loaded plugin, one at a time: an exception is a one-line warning naming
# the plugin, and the command goes on. Return values are ignored. ``exited`` may fire
# in another process than the command's (a detached container's monitor).


@hookspec
def pinnace_container_created(container: ContainerRecord) -> None:
    """A container was recorded and its rootfs prepared (``container`` is read-only)."""


@hookspec
def pinnace_container_started(container: ContainerRecord, pid: int) -> None:
    """The container's process was started with host PID ``pid``."""


@hookspec
def pinnace_container_exited(container: ContainerRecord, exit_code: int) -> None:
    """The container's first process exited with ``exit_code``."""


@hookspec
def pinnace_container_removed(container: ContainerRecord) -> None:
    """The container and its rootfs were removed (``container`` as it was last)."""


@hookspec
def pinnace_image_pulled(image_id: str, reference: str) -> None:
    """An image entered the store (pulled, imported or loaded)."""


# ------------------------------------------------------------- testbed hooks


@hookspec
def pinnace_prepare_spec(spec: ContainerSpec) -> None:
    """Adjust the runtime spec in place just before the container is created."""


@hookspec
def pinnace_add_commands(cli: click.Group) -> None:
    """Add click commands or groups to the ``pinnace`` command line."""


@hookspec
def pinnace_info() -> dict[str, Any]:
    """Return a section for ``pinnace info`` (a small JSON-ready dict)."""


@hookspec
def pinnace_doctor() -> list[dict[str, str]]:
    """Return host checks for ``pinnace doctor``: dicts with ``check``,
    ``ok`` ("yes"/"no"/"warn"), ``detail`` and, when not ok, ``fix``."""


REQUIRED: dict[str, tuple[str, ...]] = {
    "storage": tuple(
        f"pinnace_storage_{v}"
        for v in ("prepare", "view", "mounts", "commit", "remove", "stat", "usage", "walk")
    ),
    "isolation": tuple(
        f"pinnace_isolation_{v}" for v in ("create", "start", "wait", "kill", "state", "delete")
    ),
    "network": tuple(f"pinnace_network_{v}" for v in ("add", "del", "check")),
    "image_source": ("pinnace_image_source_fetch",),
    "volume": tuple(
        f"pinnace_volume_{v}" for v in ("create", "remove", "mount", "unmount", "path", "get",
                                        "list", "capabilities")
    ),
}
"""The hooks a plugin of each role must implement; checked when it is loaded."""
