"""pinnace.rootfs: lookups inside a root directory never leave it, whatever its symlinks
say, and read_small reads only small regular files, without ever blocking."""

from __future__ import annotations

import errno
import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pinnace import rootfs
from pinnace.errors import InvalidConfig, NotFound

OPENERS: dict[str, Callable[[int, str, int], int]] = {
    "openat2": rootfs.open_in, "walk": rootfs.open_by_walking}


@pytest.fixture
def tree(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    """A root directory with an /etc of its own, and an O_PATH descriptor of it."""
    top = tmp_path / "root"
    (top / "etc").mkdir(parents=True)
    (top / "etc" / "hostname").write_text("inside\n")
    (top / "sub" / "deeper").mkdir(parents=True)
    with rootfs.opened_root(top) as fd:
        yield top, fd


def read(opener: Callable[[int, str, int], int], root: int, path: str) -> str:
    fd = opener(root, path, os.O_RDONLY)
    try:
        return os.read(fd, 4096).decode()
    finally:
        os.close(fd)


@pytest.mark.parametrize("how", OPENERS)
def test_links_and_dotdot_resolve_inside(tree: tuple[Path, int], how: str) -> None:
    top, root = tree
    opener = OPENERS[how]
    assert Path("/etc/hostname").read_text() != "inside\n"
    (top / "abs").symlink_to("/etc/hostname")
    (top / "sub" / "deeper" / "rel").symlink_to("../../../../../../etc/hostname")
    (top / "sub" / "etc").symlink_to("/../../etc")
    (top / "loop").symlink_to("loop")
    for path in ("/etc/hostname", "abs", "/sub/deeper/rel", "../../etc/hostname",
                 "sub/etc/hostname", "/sub/deeper/../../etc/./hostname"):
        assert read(opener, root, path) == "inside\n", path
    with pytest.raises(OSError) as missing:
        opener(root, "/sub/nothing/hostname", os.O_RDONLY)
    assert missing.value.errno == 2
    with pytest.raises(OSError) as loop:
        opener(root, "loop", os.O_RDONLY)
    assert loop.value.errno == 40  # ELOOP


@pytest.mark.parametrize("how", OPENERS)
def test_magic_links_do_not_escape(tree: tuple[Path, int], how: str) -> None:
    """With a procfs mounted inside the root (as in a running container), its magic links
    (``/proc/self/root``, ``/proc/self/cwd``) never lead to the host's files."""
    top, root = tree
    (top / "proc").mkdir()
    subprocess.run(["mount", "-t", "proc", "proc", str(top / "proc")], check=True)
    try:
        for path in ("/proc/self/root/etc/hostname", "/proc/self/cwd/etc/hostname",
                     "/proc/1/root/etc/hostname"):
            try:  # a magic link's target read as text points inside the root, or nowhere
                assert read(OPENERS[how], root, path) == "inside\n", path
            except OSError as e:
                assert e.errno in (errno.ELOOP, errno.EACCES, errno.ENOENT), path
        if how == "openat2":  # which never follows a magic link at all
            with pytest.raises(OSError) as refused:
                read(OPENERS[how], root, "/proc/self/root/etc/hostname")
            assert refused.value.errno == errno.ELOOP
    finally:
        subprocess.run(["umount", str(top / "proc")], check=True)


def test_read_small_reads_a_regular_file(tree: tuple[Path, int]) -> None:
    top, root = tree
    (top / "etc" / "passwd").symlink_to("/etc/hostname")
    assert rootfs.read_small(root, "/etc/passwd", 100) == b"inside\n"
    with pytest.raises(InvalidConfig, match="larger than 3 bytes"):
        rootfs.read_small(root, "/etc/passwd", 3)
    with pytest.raises(NotFound, match="/etc/shadow"):
        rootfs.read_small(root, "/etc/shadow", 100)


def test_read_small_refuses_what_is_not_a_regular_file(tree: tuple[Path, int]) -> None:
    top, root = tree
    os.mkfifo(top / "etc" / "fifo")
    os.mknod(top / "etc" / "zero", 0o666 | 0o020000, os.makedev(1, 5))
    for path, kind in (("/etc/fifo", "a FIFO"), ("/etc/zero", "a character device"),
                       ("/sub", "a directory")):
        started = time.monotonic()
        with pytest.raises(InvalidConfig) as refused:
            rootfs.read_small(root, path, 1 << 20)
        assert time.monotonic() - started < 5
        assert str(refused.value) == (
            f"{path} in the container's filesystem is not a regular file ({kind})")


@pytest.mark.parametrize("how", OPENERS)
def test_a_swapped_link_never_leaves_the_root(tree: tuple[Path, int], how: str) -> None:
    """While another thread keeps swapping a directory for a link to the host's /etc,
    every successful lookup through it reads the root's own file."""
    top, root = tree
    (top / "d").mkdir()
    (top / "d" / "hostname").write_text("inside\n")
    stop = threading.Event()

    def swap() -> None:
        while not stop.is_set():
            os.rename(top / "d", top / "d.dir")
            os.symlink("/etc", top / "d.link")
            os.rename(top / "d.link", top / "d")
            time.sleep(0.0005)  # both states last long enough for lookups to meet them
            os.unlink(top / "d")
            os.rename(top / "d.dir", top / "d")
            time.sleep(0.0005)

    swapper = threading.Thread(target=swap)
    swapper.start()
    seen: list[str] = []
    deadline = time.monotonic() + 20
    try:
        while len(seen) < 200 and time.monotonic() < deadline:
            try:
                seen.append(read(OPENERS[how], root, "d/hostname"))
            except OSError:  # caught between two renames: no "d" at all
                pass
    finally:
        stop.set()
        swapper.join()
    assert len(seen) == 200 and set(seen) == {"inside\n"}
