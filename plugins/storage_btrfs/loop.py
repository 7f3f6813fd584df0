"""Getting the btrfs plugin's data directory onto btrfs: check it, or, when
``loop_size`` is set, provision a loop-mounted btrfs image beside it.

The image is ``<data_dir>.img``, a sparse file; it is made once, and mounted
again (``mount -o loop``, which frees the loop device on unmount) whenever it
is found unmounted, e.g. after a reboot. ``<data_dir>.lock`` keeps two
pinnace processes from provisioning at the same time.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from pinnace.plugin import FailedPrecondition, Unavailable, mount_of, run
from pinnace.units import parse_bytes


def image_of(data_dir: Path) -> Path:
    """Where the loop image for ``data_dir`` lives: ``<data_dir>.img``, its sibling."""
    return data_dir.with_name(data_dir.name + ".img")


def fixes(data_dir: Path) -> str:
    """The three ways to give ``data_dir`` a btrfs, in one line."""
    return ('set [storage.btrfs] loop_size = "20G" in the config file (or '
            "PINNACE_STORAGE_BTRFS_LOOP_SIZE=20G) to use a loop-mounted image, "
            f"mount a btrfs at {data_dir}, or use --storage=dir")


def not_btrfs(data_dir: Path, fstype: str) -> FailedPrecondition:
    """The error for a data directory that is not on btrfs, with the fixes."""
    msg = f"btrfs storage: {data_dir} is on {fstype}, not btrfs: {fixes(data_dir)}"
    if image_of(data_dir).exists():
        msg += f" (the image {image_of(data_dir)} from an earlier loop_size is there)"
    return FailedPrecondition(msg)


def ensure_btrfs(data_dir: Path, loop_size: str) -> None:
    """Return when ``data_dir`` is on btrfs, provisioning the loop image first if
    ``loop_size`` is set; raise ``FailedPrecondition`` with the fixes otherwise."""
    fstype = mount_of(data_dir)[1]
    if fstype == "btrfs":
        return
    if not loop_size:
        raise not_btrfs(data_dir, fstype)
    size = parse_bytes(loop_size, "storage.btrfs loop_size")
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    with _flock(data_dir.with_name(data_dir.name + ".lock")):
        if mount_of(data_dir)[1] == "btrfs":  # another process got here first
            return
        image = image_of(data_dir)
        data_dir.mkdir(exist_ok=True)
        if any(data_dir.iterdir()):
            raise FailedPrecondition(f"btrfs storage: {data_dir} is not empty; move its contents "
                                     f"away so that {image} can be mounted there")
        if not image.exists():
            _make_image(image, size)
        run(["mount", "-t", "btrfs", "-o", "loop", str(image), str(data_dir)],
            f"mounting {image} on {data_dir}")


def _make_image(image: Path, size: int) -> None:
    """A sparse file of ``size`` bytes holding a fresh btrfs, made under a temporary
    name so that a crash never leaves a half-made image behind."""
    import shutil

    if shutil.which("mkfs.btrfs") is None:
        raise Unavailable("btrfs storage: mkfs.btrfs is not installed: apt install btrfs-progs")
    tmp = image.with_name(f"{image.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            os.ftruncate(fd, size)
        finally:
            os.close(fd)
        run(["mkfs.btrfs", "-q", str(tmp)], f"making a btrfs in {image}")
        os.rename(tmp, image)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def _flock(path: Path) -> Iterator[None]:
    import fcntl

    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def backing(data_dir: Path) -> str:
    """How ``data_dir`` gets its btrfs: ``loop file X``, ``native btrfs (dev)`` or ``none (fs)``."""
    _, fstype, source = mount_of(data_dir)
    if fstype != "btrfs":
        return f"none ({fstype})"
    loop = Path("/sys/block", Path(source).name, "loop", "backing_file")
    if source.startswith("/dev/loop") and loop.exists():
        return f"loop file {loop.read_text().strip()}"
    return f"native btrfs ({source})"
