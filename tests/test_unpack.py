"""Layer application on real directories, with real (and hostile) tars built here."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import stat
import subprocess
import sys
import tarfile
import uuid
from pathlib import Path
from typing import BinaryIO

import pytest

from pinnace.errors import InvalidConfig
from pinnace.images.unpack import LayerStats, apply_layer

Entry = tuple[tarfile.TarInfo, bytes]


def entry(name: str, type_: bytes = tarfile.REGTYPE, data: bytes = b"", **attrs: object) -> Entry:
    """A tar member (a regular file unless ``type_`` says otherwise)."""
    info = tarfile.TarInfo(name)
    info.type = type_
    info.size = len(data) if type_ == tarfile.REGTYPE else 0
    info.mode = 0o755 if type_ == tarfile.DIRTYPE else 0o644
    info.mtime = 1_600_000_000
    for key, value in attrs.items():
        setattr(info, key, value)
    return info, data


def file(name: str, data: bytes = b"data\n", **attrs: object) -> Entry:
    return entry(name, tarfile.REGTYPE, data, **attrs)


def directory(name: str, **attrs: object) -> Entry:
    return entry(name, tarfile.DIRTYPE, **attrs)


def symlink(name: str, target: str) -> Entry:
    return entry(name, tarfile.SYMTYPE, linkname=target)


def hardlink(name: str, target: str) -> Entry:
    return entry(name, tarfile.LNKTYPE, linkname=target)


def tar_bytes(*entries: Entry) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in entries:
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return buf.getvalue()


_READ_FROM: list[Path | None] = [None]
"""Where layers are put for apply_layer: None for a stream; a directory for files."""


@pytest.fixture(autouse=True, params=["stream", "file"])
def read_from(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Every test runs twice: with each layer as a stream (read in order) and as a
    file (a plain tar in a file is read in place, its data copied by the kernel)."""
    _READ_FROM[0] = None if request.param == "stream" else tmp_path
    return str(request.param)


def layer(data: bytes) -> BinaryIO:
    """``data`` as apply_layer gets it in this run: a stream or an open file."""
    where = _READ_FROM[0]
    if where is None:
        return io.BytesIO(data)
    path = where / f"layer-{uuid.uuid4().hex}.tar"
    path.write_bytes(data)
    return open(path, "rb")  # closed with the test's process


def apply(dest: Path, *entries: Entry) -> LayerStats:
    return apply_layer(layer(tar_bytes(*entries)), dest)


@pytest.fixture
def dest(tmp_path: Path) -> Path:
    """An empty rootfs directory, two levels below tmp_path so escapes have somewhere to land."""
    path = tmp_path / "box" / "rootfs"
    path.mkdir(parents=True)
    return path


def unique() -> str:
    """A file name that cannot already exist on the host."""
    return f"pinnace-evil-{uuid.uuid4().hex}"


# ------------------------------------------------------------------ plain application

@pytest.mark.parametrize("compress", [None, gzip.compress, bz2.compress, lzma.compress])
def test_files_dirs_links_in_any_compression(dest: Path, compress) -> None:
    data = tar_bytes(directory("etc"), file("etc/hostname", b"box\n", uid=1234, gid=5678),
                     symlink("etc/alias", "/etc/hostname"), hardlink("etc/same", "etc/hostname"),
                     entry("run.fifo", tarfile.FIFOTYPE, mode=0o600))
    stats = apply_layer(layer(compress(data) if compress else data), dest)
    assert stats == LayerStats(files=2, dirs=1, symlinks=1, hardlinks=1, bytes=4)
    st = (dest / "etc/hostname").stat()
    assert (dest / "etc/hostname").read_bytes() == b"box\n"
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (1234, 5678, 0o644)
    assert st.st_mtime == 1_600_000_000 and (dest / "etc").stat().st_mtime == 1_600_000_000
    assert os.readlink(dest / "etc/alias") == "/etc/hostname"
    assert (dest / "etc/same").stat().st_ino == st.st_ino
    assert stat.S_ISFIFO((dest / "run.fifo").lstat().st_mode)


def test_missing_parents_are_created_0755_and_dir_mtimes_survive_children(dest: Path) -> None:
    apply(dest, directory("a", mode=0o750, mtime=1000), file("a/b/c/f"))
    assert stat.S_IMODE((dest / "a/b").stat().st_mode) == 0o755
    assert stat.S_IMODE((dest / "a").stat().st_mode) == 0o750
    assert (dest / "a").stat().st_mtime == 1000  # set after a/b/c/f was created in it


def test_setuid_sticky_modes_are_kept(dest: Path) -> None:
    apply(dest, file("su", mode=0o4755), directory("tmp", mode=0o1777), file("sg", mode=0o2711))
    assert stat.S_IMODE((dest / "su").stat().st_mode) == 0o4755
    assert stat.S_IMODE((dest / "tmp").stat().st_mode) == 0o1777
    assert stat.S_IMODE((dest / "sg").stat().st_mode) == 0o2711


def test_root_entry_updates_the_destination_itself(dest: Path) -> None:
    os.chmod(dest, 0o700)
    apply(dest, directory("./", mode=0o755), file("./x"))
    assert stat.S_IMODE(dest.stat().st_mode) == 0o755 and (dest / "x").is_file()


# ------------------------------------------------------------------ hostile names

@pytest.mark.parametrize("name", ["../escape", "a/../../escape", "./../escape",
                                  "a/b/../../../escape"])
def test_climbing_names_reject_the_layer(dest: Path, name: str) -> None:
    with pytest.raises(InvalidConfig, match="escape"):
        apply(dest, file(name, b"owned\n"))
    assert not (dest.parent / "escape").exists() and not (dest.parent.parent / "escape").exists()


def test_dotdot_that_stays_inside_is_cleaned(dest: Path) -> None:
    apply(dest, file("a/../inside"))
    assert (dest / "inside").is_file() and not (dest.parent / "inside").exists()


def test_absolute_names_land_inside_dest(dest: Path) -> None:
    name = unique()
    apply(dest, file(f"/etc/{name}", b"evil\n"), file(f"/{name}"))
    assert (dest / "etc" / name).read_bytes() == b"evil\n" and (dest / name).is_file()
    assert not Path("/etc", name).exists() and not Path("/", name).exists()


@pytest.mark.parametrize("target", ["/", "../../..", "/etc"])
def test_entry_below_a_planted_symlink_is_rejected(dest: Path, target: str) -> None:
    """Behaviour: rejected (a symlink in a path is never followed), nothing written anywhere."""
    name = unique()
    with pytest.raises(InvalidConfig, match="symlinks are never followed"):
        apply(dest, symlink("link", target), file(f"link/{name}", b"evil\n"))
    assert os.readlink(dest / "link") == target
    for where in (Path("/"), Path("/etc"), dest.parent, dest.parent.parent, dest):
        assert not (where / name).exists()


def test_entry_below_a_symlink_to_inside_is_rejected_too(dest: Path) -> None:
    with pytest.raises(InvalidConfig, match="'alias' is not a directory"):
        apply(dest, directory("real"), symlink("alias", "real"), file("alias/f"))
    assert list((dest / "real").iterdir()) == []


def test_a_file_over_a_symlink_replaces_the_link_not_its_target(dest: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.write_bytes(b"precious\n")
    apply(dest, symlink("f", str(outside)), symlink("d", str(tmp_path)))
    apply(dest, file("f", b"new\n"), directory("d"), file("d/outside", b"new\n"))
    assert outside.read_bytes() == b"precious\n"
    assert not (dest / "f").is_symlink() and (dest / "f").read_bytes() == b"new\n"
    assert (dest / "d").is_dir() and not (dest / "d").is_symlink()


@pytest.mark.parametrize("target", ["../x", "/etc/passwd", "link/passwd"])
def test_hardlink_outside_or_missing_is_rejected(dest: Path, target: str) -> None:
    before = os.stat("/etc/passwd").st_nlink
    with pytest.raises(InvalidConfig, match="hardlink"):
        apply(dest, symlink("link", "/etc"), hardlink("h", target))
    assert os.stat("/etc/passwd").st_nlink == before
    assert not (dest / "h").exists()


def test_absolute_hardlink_target_means_inside_dest(dest: Path) -> None:
    before = os.stat("/etc/passwd").st_nlink
    apply(dest, file("etc/passwd", b"root:x:0:0::/root:/bin/sh\n"), hardlink("h", "/etc/passwd"))
    assert (dest / "h").stat().st_ino == (dest / "etc/passwd").stat().st_ino
    assert os.stat("/etc/passwd").st_nlink == before


def test_overwriting_a_hardlinked_name_does_not_write_through(dest: Path) -> None:
    apply(dest, file("a", b"original\n"), hardlink("b", "a"))
    apply(dest, file("b", b"replaced\n"))
    assert (dest / "a").read_bytes() == b"original\n" and (dest / "b").read_bytes() == b"replaced\n"


def test_device_nodes_are_skipped_and_counted(dest: Path) -> None:
    stats = apply(dest, entry("dev/sda", tarfile.BLKTYPE, devmajor=8, devminor=0),
                  entry("mem", tarfile.CHRTYPE, devmajor=1, devminor=1), file("ok"))
    assert stats.skipped_devices == 2 and stats.files == 1
    assert not (dest / "mem").exists() and not (dest / "dev/sda").exists()


# ------------------------------------------------------------------ whiteouts and replacement

def test_whiteout_deletes_only_its_entry(dest: Path) -> None:
    apply(dest, file("a/b"), file("a/c"), file("a/sub/d"))
    apply(dest, file("a/.wh.b"), file("a/.wh.sub"), file("a/.wh.never-existed"))
    assert sorted(p.name for p in (dest / "a").iterdir()) == ["c"]


@pytest.mark.parametrize("name", ["a/.wh..", "a/.wh...", "a/.wh."])
def test_whiteout_of_dot_or_dotdot_is_rejected(dest: Path, name: str) -> None:
    apply(dest, file("a/keep"), file("sibling"))
    with pytest.raises(InvalidConfig, match="whiteout"):
        apply(dest, file(name))
    assert (dest / "a/keep").is_file() and (dest / "sibling").is_file()


def test_whiteout_climbing_out_is_rejected(dest: Path) -> None:
    (dest.parent / "victim").write_bytes(b"x")
    with pytest.raises(InvalidConfig, match="outside the rootfs"):
        apply(dest, file("../.wh.victim"))
    assert (dest.parent / "victim").exists()


def test_whiteout_below_a_symlink_deletes_nothing(dest: Path, tmp_path: Path) -> None:
    (tmp_path / "victim").write_bytes(b"x")
    apply(dest, symlink("link", str(tmp_path)), file("link/.wh.victim"))
    assert (tmp_path / "victim").exists()


def test_opaque_dir_hides_lower_entries_but_keeps_this_layers(dest: Path) -> None:
    apply(dest, file("d/lower1"), file("d/sub/lower2"), file("other"))
    apply(dest, file("d/early"), file("d/.wh..wh..opq"), file("d/late"), file("d/sub/new"))
    assert sorted(p.name for p in (dest / "d").iterdir()) == ["early", "late", "sub"]
    assert [p.name for p in (dest / "d/sub").iterdir()] == ["new"]
    assert (dest / "other").exists() and not (dest / "d/.wh..wh..opq").exists()


def test_dir_replaced_by_a_file_and_back(dest: Path) -> None:
    apply(dest, file("d/f"), file("d/sub/g"))
    apply(dest, file("d", b"now a file\n"))
    assert (dest / "d").read_bytes() == b"now a file\n"
    apply(dest, directory("d", mode=0o700), file("d/h"))
    assert (dest / "d").is_dir() and [p.name for p in (dest / "d").iterdir()] == ["h"]


def test_kept_directory_fds_never_outlive_a_replaced_directory(dest: Path) -> None:
    # within one layer: d/ is walked (and its fd kept), then replaced, then written below
    apply(dest, file("d/sub/f"), file("d", b"a file now\n"), file("e/g"))
    assert (dest / "d").read_bytes() == b"a file now\n" and (dest / "e" / "g").exists()
    with pytest.raises(InvalidConfig, match="'d' is not a directory"):
        apply(dest, file("x/y"), file("d/sub/h"))
    apply(dest, file("w/sub/f"), directory("w"), entry("w/.wh.sub"), file("w/sub/again"))
    assert [p.name for p in (dest / "w" / "sub").iterdir()] == ["again"]


def test_dir_over_dir_keeps_contents_and_takes_metadata(dest: Path) -> None:
    apply(dest, directory("d", mode=0o755), file("d/keep"))
    apply(dest, directory("d", mode=0o700, uid=7, gid=8))
    st = (dest / "d").stat()
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o700, 7, 8)
    assert (dest / "d/keep").exists()


# ------------------------------------------------------------------ broken streams

def test_truncated_gzip_is_a_corrupt_layer(dest: Path) -> None:
    data = gzip.compress(tar_bytes(file("big", os.urandom(200_000))))
    with pytest.raises(InvalidConfig, match="^corrupt layer: "):
        apply_layer(layer(data[: len(data) // 2]), dest)


def test_gzip_without_isal_goes_through_zlib(dest: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "isal", None)  # as where python-isal is not installed
    data = gzip.compress(tar_bytes(file("etc/motd", b"hi\n"), file("big", os.urandom(200_000))))
    assert apply_layer(layer(data), dest).files == 2
    assert (dest / "etc/motd").read_bytes() == b"hi\n"
    with pytest.raises(InvalidConfig, match="^corrupt layer: "):
        apply_layer(layer(data[: len(data) // 2]), dest)


def test_truncated_tar_is_a_corrupt_layer(dest: Path) -> None:
    data = tar_bytes(file("big", os.urandom(100_000)))
    with pytest.raises(InvalidConfig, match="^corrupt layer: "):
        apply_layer(layer(data[:50_000]), dest)


def test_garbage_is_a_corrupt_layer(dest: Path) -> None:
    with pytest.raises(InvalidConfig, match="^corrupt layer: "):
        apply_layer(layer(b"this is not a tar archive at all\n" * 40), dest)
    assert list(dest.iterdir()) == []


def test_busybox_layer_gives_a_working_rootfs(dest: Path, busybox_tar: Path) -> None:
    with open(busybox_tar, "rb") as f:
        stats = apply_layer(f, dest)
    assert stats.symlinks > 100 and os.readlink(dest / "bin/sh") == "busybox"
    assert stat.S_IMODE((dest / "tmp").stat().st_mode) == 0o1777
    out = subprocess.run(["chroot", str(dest), "/bin/sh", "-c", "echo $((6*7)); id -un"],
                         capture_output=True, text=True, check=True).stdout.split()
    assert out == ["42", "root"]


GIB = 1 << 30
SPARSE_DATA = {0: b"head", 4097: b"mid", 700 * (1 << 20): b"later", GIB - 4: b"end!"}
"""Offsets and bytes written into a 1 GiB sparse file; the rest of it is a hole."""


def read_at(path: Path, offset: int, size: int) -> bytes:
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read(size)


@pytest.mark.parametrize("fmt", ["gnu", "posix"])
def test_gnu_sparse_member_is_written_with_holes(dest: Path, tmp_path: Path, fmt: str) -> None:
    src = tmp_path / "src"
    src.mkdir()
    with open(src / "sparse", "wb") as f:
        f.truncate(GIB)
        for offset, data in SPARSE_DATA.items():
            f.seek(offset)
            f.write(data)
    archive = tmp_path / "sparse.tar"
    subprocess.run(["tar", "--sparse", f"--format={fmt}", "-cf", str(archive), "-C", str(src),
                    "sparse"], check=True)
    assert archive.stat().st_size < 1 << 20
    with tarfile.open(archive) as tar:
        assert tar.getmember("sparse").issparse()
    stats = apply_layer(layer(archive.read_bytes()), dest)
    out = dest / "sparse"
    assert stats.files == 1 and out.stat().st_size == GIB
    for offset, data in SPARSE_DATA.items():
        assert read_at(out, offset, len(data)) == data
    assert read_at(out, 8192, 4096) == bytes(4096)
    assert read_at(out, 900 * (1 << 20), 64) == bytes(64)
    assert out.stat().st_blocks * 512 < 1 << 20


def test_zero_blocks_of_a_plain_member_become_holes(dest: Path) -> None:
    zeros = 64 << 20
    data = b"x" * 5000 + bytes(zeros) + b"tail" + bytes(3000) + b"y" * 4096 + bytes(4095)
    stats = apply_layer(layer(tar_bytes(file("zeros", data))), dest)
    out = dest / "zeros"
    assert stats.bytes == len(data) and out.stat().st_size == len(data)
    assert out.read_bytes() == data
    assert out.stat().st_blocks * 512 < 1 << 20


def test_ordinary_data_with_short_zero_runs_is_copied_exactly(dest: Path) -> None:
    data = b"".join(os.urandom(997) + bytes(n) for n in (1, 511, 4095, 4096, 8191))
    apply_layer(layer(tar_bytes(file("mixed", data))), dest)
    assert (dest / "mixed").read_bytes() == data
