"""The ``btrfs`` storage plugin: snapshots are btrfs subvolumes.

A committed snapshot (an image layer) is a read-only subvolume; an active
snapshot is a writable snapshot of its parent (a new empty subvolume without
one); a view is a read-only snapshot. Making a container's rootfs is one
snapshot ioctl whatever the image's size: nothing is copied. Commit flips the
subvolume read-only and renames its directory.

The data directory must be on btrfs. When it is not, the ``loop_size`` option
(``[storage.btrfs] loop_size = "20G"``) provisions a loop-mounted image beside
it on first use (see :mod:`pinnace_plugins.storage_btrfs.loop`).
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

from pinnace.plugin import (
    Option,
    TreeStorage,
    Unavailable,
    Usage,
    free_bytes,
    hookimpl,
    human,
    mount_of,
    run,
)

INSTALL_HINT = "pip install 'pinnace[btrfs]' (needs Debian's libbtrfsutil-dev)"


def btrfsutil() -> Any:
    """The ``btrfsutil`` module, or ``Unavailable`` saying how to install it."""
    try:
        import btrfsutil as module
    except ImportError as err:
        raise Unavailable(
            f"btrfs storage needs the btrfsutil module ({err}): {INSTALL_HINT}") from None
    return module


class BtrfsStorage(TreeStorage):
    """Snapshots as btrfs subvolumes under the data directory: O(1) rootfs creation."""

    options = (
        Option("loop_size", "", "when the data dir is not on btrfs, make a sparse btrfs image "
               "of this size (e.g. 20G) beside it and loop-mount it there; empty: never"),
    )

    def setup(self) -> None:
        """Check btrfsutil, then put the data directory on btrfs (or say how to)."""
        from pinnace_plugins.storage_btrfs.loop import ensure_btrfs

        btrfsutil()
        ensure_btrfs(self.ctx.data_dir, self.opt("loop_size"))

    def make_tree(self, parent: Path | None, fs: Path, readonly: bool) -> None:
        """A new empty subvolume, or a snapshot of ``parent`` (read-only for views)."""
        if parent is None:
            btrfsutil().create_subvolume(str(fs))
        else:
            btrfsutil().create_snapshot(str(parent), str(fs), read_only=readonly)

    def seal_tree(self, fs: Path) -> None:
        """Flip the subvolume read-only."""
        btrfsutil().set_subvolume_read_only(str(fs), True)

    def destroy_tree(self, fs: Path) -> None:
        """Delete the subvolume and any subvolumes made inside it. A rootless pinnace may
        not search the filesystem for those, and deletes the subvolume alone (made
        writable first); where btrfs is mounted without ``user_subvol_rm_allowed`` it
        empties the subvolume and removes it with rmdir, which btrfs allows any user
        for an empty one."""
        from pinnace.plugin import rootless

        util = btrfsutil()
        if not rootless.active():
            util.delete_subvolume(str(fs), recursive=True)
            return
        util.set_subvolume_read_only(str(fs), False)
        try:
            util.delete_subvolume(str(fs))
        except util.BtrfsUtilError as err:
            if err.errno != errno.EPERM:
                raise
            entries = [str(entry) for entry in fs.iterdir()]
            if entries:
                run(["rm", "-rf", "--one-file-system", "--", *entries], f"emptying {fs}")
            os.rmdir(fs)

    def measure_tree(self, fs: Path) -> Usage:
        """Bytes of file data written in this subvolume since it was snapshotted from its
        parent, and the files holding them (``btrfs subvolume find-new``): a layer's own
        size, stable when children share it, found without walking the whole tree."""
        util = btrfsutil()
        util.sync(str(fs))
        info = util.subvolume_info(str(fs))
        since = info.otransid + 1 if any(info.parent_uuid) else 0
        out = run(["btrfs", "subvolume", "find-new", str(fs), str(since)], f"measuring {fs}")
        size, inodes = 0, set()
        for fields in (line.split() for line in out.splitlines()):
            if fields[:1] == ["inode"] and int(fields[fields.index("gen") + 1]) >= since:
                size += int(fields[fields.index("len") + 1])
                inodes.add(fields[1])
        return Usage(size=size, inodes=len(inodes))

    @hookimpl
    def pinnace_info(self) -> dict[str, Any]:
        """Data directory, what backs it (native btrfs or a loop file) and free space."""
        from pinnace_plugins.storage_btrfs.loop import backing, image_of

        data_dir = self.ctx.data_dir
        info: dict[str, Any] = {"data_dir": str(data_dir), "backing": backing(data_dir)}
        if mount_of(data_dir)[1] == "btrfs":
            info["free"] = human(free_bytes(data_dir))
        elif self.opt("loop_size"):
            size = self.opt("loop_size")
            info["backing"] = f"loop file {image_of(data_dir)} ({size}, on first use)"
        return {"storage.btrfs": info}

    @hookimpl
    def pinnace_doctor(self) -> list[dict[str, str]]:
        """Kernel support, btrfsutil, a btrfs data directory (or loop_size) and btrfs-progs."""
        import shutil

        from pinnace_plugins.storage_btrfs.loop import fixes, image_of

        data_dir, loop_size = self.ctx.data_dir, self.opt("loop_size")
        with open("/proc/filesystems", encoding="utf-8") as f:
            in_kernel = "btrfs" in f.read().split()
        checks = [_check("storage btrfs: kernel support", "yes" if in_kernel else "warn",
                         "btrfs in /proc/filesystems" if in_kernel else "btrfs not loaded",
                         "modprobe btrfs (or boot a kernel built with btrfs)")]
        try:
            btrfsutil()
            checks.append(_check("storage btrfs: btrfsutil module", "yes", "importable", ""))
        except Unavailable as err:
            checks.append(_check("storage btrfs: btrfsutil module", "no", str(err), INSTALL_HINT))
        fstype = mount_of(data_dir)[1]
        if fstype == "btrfs":
            checks.append(_check("storage btrfs: data dir on btrfs", "yes", str(data_dir), ""))
        elif loop_size:
            checks.append(_check("storage btrfs: data dir on btrfs", "yes",
                                 f"loop image {image_of(data_dir)} ({loop_size}) on first use", ""))
        else:
            checks.append(_check("storage btrfs: data dir on btrfs", "no",
                                 f"{data_dir} is on {fstype}", fixes(data_dir)))
        missing = [t for t in ("btrfs", "mkfs.btrfs") if shutil.which(t) is None]
        needed = "no" if loop_size and fstype != "btrfs" else "warn"
        checks.append(_check("storage btrfs: btrfs-progs", needed if missing else "yes",
                             f"missing {', '.join(missing)}" if missing else "btrfs, mkfs.btrfs",
                             "apt install btrfs-progs"))
        return checks


def _check(name: str, ok: str, detail: str, fix: str) -> dict[str, str]:
    found = {"check": name, "ok": ok, "detail": detail}
    if ok != "yes":
        found["fix"] = fix
    return found
