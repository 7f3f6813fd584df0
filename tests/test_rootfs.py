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
from typing import TYPE_CHECKING

import pytest

from pinnace import rootfs
from pinnace.errors import InvalidConfig, NotFound

if TYPE_CHECKING:
    from conftest import Pinnace

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


def test_mkdir_in_and_create_in_make_entries_inside(tree: tuple[Path, int],
                                                    tmp_path: Path) -> None:
    """Missing entries are made where the path resolves inside the root, dangling symlinks
    (absolute or climbing with ``..``) included; the host paths they name stay untouched."""
    top, root = tree
    host = tmp_path / "host"
    host.mkdir()
    (top / "etc" / "abs").symlink_to(f"{host}/made")
    (top / "etc" / "rel").symlink_to(f"../../../../../../../..{host}/rel")
    (top / "etc" / "dir").symlink_to(f"{host}/dir")
    for make, path, inside in ((rootfs.create_in, "/etc/abs", f"{host}/made"),
                               (rootfs.create_in, "etc/rel", f"{host}/rel"),
                               (rootfs.mkdir_in, "/etc/dir/a/b", f"{host}/dir/a/b"),
                               (rootfs.create_in, "/new/deep/file", "/new/deep/file")):
        fd = make(root, path)
        try:
            made = os.fstat(fd)
        finally:
            os.close(fd)
        assert os.lstat(f"{top}{inside}").st_ino == made.st_ino, path
    assert (top / "new" / "deep" / "file").read_bytes() == b""
    assert list(host.iterdir()) == []
    (top / "etc" / "hostname.d").write_text("a file\n")
    with pytest.raises(OSError) as not_dir:
        rootfs.mkdir_in(root, "/etc/hostname.d")
    assert not_dir.value.errno == errno.ENOTDIR
    fd = rootfs.create_in(root, "/etc/hostname")  # an existing file is opened, not replaced
    os.close(fd)
    assert (top / "etc" / "hostname").read_text() == "inside\n"


def test_open_parent_follows_only_when_asked(tree: tuple[Path, int]) -> None:
    top, root = tree
    (top / "etc" / "link").symlink_to("../sub/deeper")
    (top / "sub" / "up").symlink_to("/etc/link")
    for path, follow, parent, name in (("/sub/up", False, top / "sub", "up"),
                                       ("/sub/up", True, top / "sub", "deeper"),
                                       ("/etc/missing", True, top / "etc", "missing"),
                                       ("/", False, top, "."),
                                       ("/sub/..", True, top, ".")):
        fd, got = rootfs.open_parent(root, path, follow)
        try:
            assert (os.fstat(fd).st_ino, got) == (parent.stat().st_ino, name), path
        finally:
            os.close(fd)
    with pytest.raises(FileNotFoundError):
        rootfs.open_parent(root, "/nothing/here", False)


def hostile_image(pn: Pinnace, busybox_tar: Path, tmp_path: Path,
                  links: dict[str, str]) -> str:
    """busybox with the entries ``links`` names replaced by symlinks, imported as an image."""
    from pinnace.images.unpack import apply_layer

    tree = tmp_path / "image"
    tree.mkdir(parents=True)
    with open(busybox_tar, "rb") as tar:
        apply_layer(tar, tree)
    for path, target in links.items():
        entry = tree / path
        if entry.is_dir() and not entry.is_symlink():
            entry.rmdir()
        elif entry.exists() or entry.is_symlink():
            entry.unlink()
        entry.symlink_to(target)
    pn("import", str(tree), "hostile:latest")
    return "hostile:latest"


def mount_points(mountinfo: str) -> set[str]:
    return {line.split()[4] for line in mountinfo.splitlines() if len(line.split()) > 4}


def test_mount_targets_that_are_symlinks_out_stay_in_the_rootfs(
        pn: Pinnace, busybox_tar: Path, tmp_path: Path) -> None:
    """An image whose /etc files, /proc, /dev and /sys are symlinks to host paths
    (absolute, or climbing with ``..``): every mount lands at the in-root place the link
    names (or on a real directory in place of the link); the host's marker files and
    directories are neither written nor covered."""
    host = tmp_path / "host"
    for sub in ("proc", "dev", "sys"):
        (host / sub).mkdir(parents=True)
    (host / "hosts").write_text("HOST-MARKER\n")
    climb = "../../../../../../../../.."
    image = hostile_image(pn, busybox_tar, tmp_path, {
        "etc/hosts": f"{host}/hosts", "etc/resolv.conf": f"{climb}{host}/resolv",
        "etc/hostname": f"{climb}{host}/missing-dir/hostname",
        "proc": f"{host}/proc", "dev": f"{climb}{host}/dev", "sys": f"{host}/sys"})
    out = pn("run", "--rm", "--hostname", "boxed", image, "sh", "-c",
             "cat /etc/hosts /etc/hostname; ls /dev/null /proc/1/status /sys/kernel;"
             " echo ---; cat /proc/self/mountinfo").stdout
    files, _, mountinfo = out.partition("---\n")
    assert "localhost" in files and "boxed\n" in files and "HOST-MARKER" not in files
    assert "/dev/null\n/proc/1/status\n" in files
    points = mount_points(mountinfo)
    assert {f"{host}/hosts", f"{host}/resolv", f"{host}/missing-dir/hostname", "/proc", "/dev",
            "/sys", "/dev/shm", "/dev/pts"} <= points, points
    assert (host / "hosts").read_text() == "HOST-MARKER\n"
    assert sorted(p.name for p in host.iterdir()) == ["dev", "hosts", "proc", "sys"]
    for sub in ("proc", "dev", "sys"):
        assert list((host / sub).iterdir()) == []
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        assert not {p for p in mount_points(f.read()) if p.startswith(str(host))}


def test_a_mount_target_that_cannot_be_made_fails_in_one_line(
        pn: Pinnace, busybox_tar: Path, tmp_path: Path) -> None:
    """/etc/hosts (a bind mount of a file) whose link leads to a directory, or below a file,
    fails the run with one line; nothing is left mounted."""
    from conftest import host_leftovers

    for target in ("/bin", "/bin/busybox/hosts"):
        image = hostile_image(pn, busybox_tar, tmp_path / target.replace("/", "-"),
                              {"etc/hosts": target})
        failed = pn("run", "--rm", image, "true", check=False)
        assert failed.returncode == 125
        assert failed.stderr.count("\n") == 1 and "container setup failed" in failed.stderr, \
            failed.stderr
    assert host_leftovers(pn.root) == []
