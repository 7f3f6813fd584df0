"""An overlayfs storage plugin for pinnace, built on pinnace's tree storage base.

:class:`pinnace.plugin.TreeStorage` keeps the snapshots (``snapshots/<name>/``
under the data dir, their metadata, locks, crash-safe renames, the checks on
keys and parents); this plugin says what a snapshot's tree is and how it is
mounted. A snapshot's ``fs`` is an overlayfs upper dir, with its ``work`` dir
beside it; a snapshot with a parent is described as an overlay mount whose
lower dirs are the ``fs`` dirs of its ancestors. Nothing is copied.

An overlay mount cannot be idmapped, so for containers with a user namespace
the plugin shifts owners instead (chown-on-snapshot): a layer is copied whole
from its merged view, once per mapping, and chowned.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pinnace.plugin import (
    Mount,
    StorageCapabilities,
    TreeStorage,
    Usage,
    hookimpl,
    tree_usage,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    from pinnace.plugin import IdMap


class OverlayStorage(TreeStorage):
    """Snapshots as overlayfs upper dirs stacked on their parents'."""

    @hookimpl
    def pinnace_storage_capabilities(self) -> StorageCapabilities:
        """No idmapped mounts (the kernel idmaps an overlay's layers, not the overlay
        itself); shifted copies instead."""
        return StorageCapabilities(idmap=False, shift=True)

    def make_shifted_tree(self, parent: str, fs: Path, uid_map: Sequence[IdMap],
                          gid_map: Sequence[IdMap]) -> None:
        """An upper dir holding the whole merged tree of ``parent`` (nothing is stacked
        under a shifted snapshot), shifted through the maps."""
        from pinnace.plugin import mounted, run, shift_owners

        lowers = [str(tree) for tree in (self.tree(parent), *self.ancestors(parent))]
        view = (Mount("overlay", "overlay", ("ro", "lowerdir=" + ":".join(lowers)))
                if len(lowers) > 1 else Mount("bind", lowers[0], ("rbind", "ro")))
        with mounted([view], scratch=fs.parent) as merged:
            run(["cp", "-a", "--no-target-directory", "--", str(merged), str(fs)],
                f"copying {parent}")
        (fs.parent / "work").mkdir()
        shift_owners(fs, uid_map, gid_map)

    def make_tree(self, parent: Path | None, fs: Path, readonly: bool) -> None:
        """An empty upper dir and its work dir: the parent's content comes from the
        lower dirs when the snapshot is mounted; the top (which the overlay's top shows)
        has the owner and mode of the parent's."""
        import os

        fs.mkdir(mode=0o755)
        fs.chmod(0o755)  # whatever the umask
        if parent is not None:
            top = parent.stat()
            os.chown(fs, top.st_uid, top.st_gid)
            fs.chmod(top.st_mode & 0o7777)
        (fs.parent / "work").mkdir()

    def destroy_tree(self, fs: Path) -> None:
        """The upper dir goes with the snapshot's directory (the base removes it)."""
        from pinnace.plugin import remove_tree

        remove_tree(fs)

    def measure_tree(self, fs: Path) -> Usage:
        """Blocks and inodes of the snapshot's own upper dir."""
        return tree_usage(fs)

    def describe(self, key: str, fs: Path, readonly: bool) -> list[Mount]:
        """An overlay of the upper dir on the ancestors' (read-only for a view); a bind
        mount when there is nothing to stack."""
        lowers = [str(tree) for tree in self.ancestors(key)]
        if readonly and len(lowers) == 1:
            return [Mount("bind", lowers[0], ("rbind", "ro"))]
        if readonly:
            return [Mount("overlay", "overlay", ("ro", "lowerdir=" + ":".join(lowers)))]
        if not lowers:
            return [Mount("bind", str(fs), ("rbind", "rw"))]
        return [Mount("overlay", "overlay", (
            "lowerdir=" + ":".join(lowers), f"upperdir={fs}", f"workdir={fs.parent / 'work'}"))]
