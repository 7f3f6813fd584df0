"""An overlayfs storage plugin for pinnace, built on pinnace's tree storage base.

:class:`pinnace.plugin.TreeStorage` keeps the snapshots (``snapshots/<name>/``
under the data dir, their metadata, locks, crash-safe renames, the checks on
keys and parents); this plugin says what a snapshot's tree is and how it is
mounted. A snapshot's ``fs`` is an overlayfs upper dir, with its ``work`` dir
beside it; a snapshot with a parent is described as an overlay mount whose
lower dirs are the ``fs`` dirs of its ancestors. Nothing is copied.
"""

from __future__ import annotations

from pathlib import Path

from pinnace.plugin import Mount, TreeStorage, Usage, tree_usage


class OverlayStorage(TreeStorage):
    """Snapshots as overlayfs upper dirs stacked on their parents'."""

    def make_tree(self, parent: Path | None, fs: Path, readonly: bool) -> None:
        """An empty upper dir and its work dir: the parent's content comes from the
        lower dirs when the snapshot is mounted."""
        fs.mkdir(mode=0o755)
        fs.chmod(0o755)  # whatever the umask
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
