"""Layer diffs on real trees: applying ``write_diff(lower, upper)`` to a copy of ``lower``
gives ``upper`` back, entry for entry (types, modes, owners, mtimes, links, xattrs)."""

from __future__ import annotations

import io
import os
import stat
import subprocess
import tarfile
from pathlib import Path

import pytest

from pinnace.images.layers import write_diff, write_tree
from pinnace.images.unpack import apply_layer


def snapshot(root: Path) -> dict[str, tuple]:
    """Every entry under ``root`` with what a layer must carry (directory mtimes aside:
    they change with their contents and are set by the diff's own entries)."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            rel = os.path.relpath(path, root)
            link = os.readlink(path) if stat.S_ISLNK(st.st_mode) else ""
            data = Path(path).read_bytes() if stat.S_ISREG(st.st_mode) else b""
            xattrs = {k: os.getxattr(path, k, follow_symlinks=False)
                      for k in sorted(os.listxattr(path, follow_symlinks=False))}
            mtime = 0 if stat.S_ISDIR(st.st_mode) else int(st.st_mtime)
            found[rel] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid,
                          st.st_gid, mtime, link, data, xattrs, st.st_nlink)
    return found


@pytest.fixture
def trees(btrfs_mount: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A lower tree and an upper copy of it (``cp -a``), on btrfs (user xattrs work)."""
    base = tmp_path_factory.mktemp("layers")
    work = btrfs_mount / f"layers-{base.name}"
    lower = work / "lower"
    (lower / "etc" / "sub").mkdir(parents=True)
    (lower / "etc" / "keep").write_text("keep\n")
    (lower / "etc" / "gone").write_text("gone\n")
    (lower / "etc" / "sub" / "deep").write_text("deep\n")
    (lower / "bin").mkdir()
    (lower / "bin" / "tool").write_bytes(b"\x7fELF tool")
    os.chmod(lower / "bin" / "tool", 0o755)
    os.symlink("tool", lower / "bin" / "alias")
    os.setxattr(lower / "bin" / "tool", "user.note", b"old")
    upper = work / "upper"
    subprocess.run(["cp", "-a", str(lower), str(upper)], check=True)
    yield lower, upper
    subprocess.run(["rm", "-rf", str(work)], check=True)


def diff(lower: Path, upper: Path) -> io.BytesIO:
    """The diff of lower -> upper, ready to read."""
    buf = io.BytesIO()
    write_diff(lower, upper, buf)
    buf.seek(0)
    return buf


def assert_replays(lower: Path, upper: Path) -> None:
    """Applying the diff to a copy of ``lower`` gives ``upper``."""
    out = lower.parent / "result"
    subprocess.run(["cp", "-a", str(lower), str(out)], check=True)
    apply_layer(diff(lower, upper), out)
    assert snapshot(out) == snapshot(upper)


def test_diff_replays_every_kind_of_change(trees: tuple[Path, Path]) -> None:
    lower, upper = trees
    (upper / "etc" / "gone").unlink()
    subprocess.run(["rm", "-r", str(upper / "etc" / "sub")], check=True)
    (upper / "etc" / "new").write_text("new\n")
    os.chown(upper / "etc" / "new", 1000, 1001)
    os.chmod(upper / "etc" / "keep", 0o4711)
    os.setxattr(upper / "bin" / "tool", "user.note", b"new")
    os.link(upper / "etc" / "new", upper / "bin" / "hard")
    os.unlink(upper / "bin" / "alias")
    os.symlink("/etc/new", upper / "bin" / "alias")
    os.mkfifo(upper / "fifo")
    (upper / "bin" / "tool2").mkdir()  # a new directory tree
    (upper / "bin" / "tool2" / "x").write_text("x\n")
    assert_replays(lower, upper)


def test_diff_holds_only_changes_and_topmost_whiteouts(trees: tuple[Path, Path]) -> None:
    lower, upper = trees
    subprocess.run(["rm", "-r", str(upper / "etc")], check=True)
    assert tarfile.open(fileobj=diff(lower, upper)).getnames() == [".wh.etc"]


def test_type_changes_replace_entries(trees: tuple[Path, Path]) -> None:
    lower, upper = trees
    subprocess.run(["rm", "-r", str(upper / "etc" / "sub")], check=True)
    (upper / "etc" / "sub").write_text("now a file\n")
    (upper / "etc" / "keep").unlink()
    (upper / "etc" / "keep").mkdir()
    (upper / "etc" / "keep" / "inside").write_text("in\n")
    assert_replays(lower, upper)


def test_device_nodes_are_written_but_never_created(trees: tuple[Path, Path]) -> None:
    lower, upper = trees
    os.mknod(upper / "null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    member = tarfile.open(fileobj=diff(lower, upper)).getmember("null")
    assert member.ischr() and (member.devmajor, member.devminor) == (1, 3)
    result = lower.parent / "result"
    subprocess.run(["cp", "-a", str(lower), str(result)], check=True)
    assert apply_layer(diff(lower, upper), result).skipped_devices == 1
    assert not (result / "null").exists()


def test_whole_tree_is_deterministic_with_numeric_owners(trees: tuple[Path, Path]) -> None:
    lower, _ = trees
    os.chown(lower / "etc" / "keep", 4242, 4343)
    first, second = io.BytesIO(), io.BytesIO()
    write_tree(lower, first)
    write_tree(lower, second)
    assert first.getvalue() == second.getvalue()
    first.seek(0)
    members = {m.name: m for m in tarfile.open(fileobj=first)}
    assert (members["etc/keep"].uid, members["etc/keep"].gname) == (4242, "")
    assert members["bin/tool"].pax_headers["SCHILY.xattr.user.note"] == "old"


def exchange(a: Path, b: Path) -> None:
    """Swap two paths atomically (renameat2 RENAME_EXCHANGE)."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.renameat2(-100, os.fsencode(a), -100, os.fsencode(b), 2) != 0:
        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))


SWAP = """import ctypes, os, sys
libc = ctypes.CDLL(None)
a, b = map(os.fsencode, sys.argv[1:])
while True:
    libc.renameat2(-100, a, -100, b, 2)  # RENAME_EXCHANGE
"""


def test_a_directory_swapped_with_a_symlink_out_never_brings_outside_files(
        tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    tree, lower = tmp_path / "tree", tmp_path / "lower"
    for root in (tree, lower):
        (root / "d").mkdir(parents=True)
    for i in range(50):  # the same names inside and out: every lookup through d can leak
        (outside / f"f{i}").write_bytes(b"OUTSIDE-MARKER-1f3a")
        (tree / "d" / f"f{i}").write_text("inside\n")
        (lower / "d" / f"f{i}").write_text("lower\n")
    os.symlink(outside, tree / "l")
    swapper = subprocess.Popen(["/usr/bin/python3", "-c", SWAP, str(tree / "d"),
                                str(tree / "l")])
    try:
        for _ in range(100):
            for write in (lambda out: write_tree(tree, out),
                          lambda out: write_diff(lower, tree, out)):
                out = io.BytesIO()
                write(out)
                assert b"OUTSIDE-MARKER" not in out.getvalue()
                members = tarfile.open(fileobj=io.BytesIO(out.getvalue())).getmembers()
                assert all(m.linkname == str(outside) for m in members if m.issym())
                assert all(m.isdir() or m.issym() or m.name.count("/") == 1 and
                           m.name.split("/")[0] in ("d", "l") for m in members)
    finally:
        swapper.kill()
        swapper.wait()
