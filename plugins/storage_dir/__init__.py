"""The ``dir`` storage plugin: every snapshot is a plain directory, and a snapshot
on a parent is a full copy of the parent's tree.

Copies are made with ``cp -a --reflink=auto`` (GNU coreutils, on every Linux
host): it keeps owners, modes, timestamps, xattrs and ACLs, symlinks, hard
links within the tree, device nodes, fifos, sockets and sparse files, which
``shutil.copytree`` does not; it runs in C with ``copy_file_range``; and on
filesystems that can share blocks (btrfs, XFS with reflink, bcachefs) it
clones files instead of copying their data. Elsewhere (ext4, tmpfs) a copy
costs time and space in proportion to the parent: use ``btrfs`` storage for
large images.

Committed snapshots stay writable on disk (no filesystem-neutral way to
freeze a tree); the plugin protects them by never returning their mounts.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pinnace.plugin import (
    TreeStorage,
    Usage,
    free_bytes,
    hookimpl,
    human,
    mount_of,
    run,
    tree_usage,
)

FICLONE = 0x40049409


def reflink_works(path: Path) -> bool:
    """True when files in directory ``path`` (or its nearest existing ancestor) can be
    cloned (``FICLONE``) rather than copied."""
    import fcntl
    import tempfile

    while not path.exists():
        path = path.parent
    with tempfile.TemporaryDirectory(prefix=".reflink-probe-", dir=path) as tmp:
        src, dst = Path(tmp, "a"), Path(tmp, "b")
        src.write_bytes(b"probe")
        with open(src, "rb") as s, open(dst, "wb") as d:
            try:
                fcntl.ioctl(d.fileno(), FICLONE, s.fileno())
            except OSError:
                return False
    return True


class DirStorage(TreeStorage):
    """Snapshots as plain directories under the data directory; full (reflink) copies."""

    def make_tree(self, parent: Path | None, fs: Path, readonly: bool) -> None:
        """An empty directory, or ``cp -a --reflink=auto`` of ``parent``."""
        if parent is None:
            fs.mkdir()
            os.chmod(fs, 0o755)  # whatever the umask
            return
        run(["cp", "-a", "--reflink=auto", "--no-target-directory", "--", str(parent), str(fs)],
            f"copying {parent}")

    def destroy_tree(self, fs: Path) -> None:
        """``rm -rf``, refusing to cross into anything mounted inside the tree."""
        run(["rm", "-rf", "--one-file-system", "--", str(fs)], f"removing {fs}")

    def measure_tree(self, fs: Path) -> Usage:
        """Blocks and inodes of the directory tree."""
        return tree_usage(fs)

    @hookimpl
    def pinnace_info(self) -> dict[str, Any]:
        """Data directory, its filesystem, free space and whether copies are reflinks."""
        return {"storage.dir": {
            "data_dir": str(self.ctx.data_dir),
            "filesystem": mount_of(self.ctx.data_dir)[1],
            "reflink": "yes" if reflink_works(self.ctx.data_dir) else "no",
            "free": human(free_bytes(self.ctx.data_dir)),
        }}

    @hookimpl
    def pinnace_doctor(self) -> list[dict[str, str]]:
        """Warn when the data directory's filesystem makes every container a full copy."""
        fstype = mount_of(self.ctx.data_dir)[1]
        ok = reflink_works(self.ctx.data_dir)
        check = {"check": "storage dir: reflink copies", "ok": "yes" if ok else "warn",
                 "detail": f"{self.ctx.data_dir} is on {fstype}"
                           + ("" if ok else ": every container rootfs is a full copy")}
        if not ok:
            check["fix"] = ("put the root on btrfs or XFS (reflink=1) for cheap copies, "
                            "or use --storage=btrfs")
        return [check]
