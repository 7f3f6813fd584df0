"""Images holding sparse files, through the real CLI on btrfs and dir: a small layer with a
10 GiB sparse file unpacks to a 10 GiB file that takes almost no disk, and save, load and
export of such images and containers complete."""

from __future__ import annotations

import gzip
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
from conftest import Pinnace

GIB = 1 << 30
BIG = 10 * GIB
MARKS = {0: "HEAD!", 5 * GIB: "HELLO", BIG - 5: "TAIL!"}
"""Offsets and 5-byte strings written into the 10 GiB file; the rest is a hole."""
ZEROS = 256 << 20
SMALL = 64 << 20
"""Allocation (st_blocks * 512) allowed for a file that is all hole but a few bytes."""

# prints: size, allocated bytes, then the 5 bytes at each offset given as arguments
PROBE = ('f=$1; shift; stat -c "%s $(( $(stat -c %b "$f") * 512 ))" "$f"; '
         'for o; do dd if="$f" bs=1 skip="$o" count=5 2>/dev/null; echo; done')


def probe(pn: Pinnace, image: str, path: str, offsets: list[int], storage: str) -> list[str]:
    """Run :data:`PROBE` on ``path`` in a throwaway container of ``image``."""
    return pn("run", "--rm", f"--storage={storage}", "--net=none", image, "sh", "-c", PROBE,
              "sh", path, *map(str, offsets), timeout=300).stdout.splitlines()


@pytest.fixture(scope="module")
def sparse_layer(busybox_tar: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A gzipped busybox rootfs plus ``/big``, a 10 GiB sparse file, made by GNU tar."""
    work = tmp_path_factory.mktemp("sparse")
    rootfs = work / "rootfs"
    rootfs.mkdir()
    subprocess.run(["tar", "-xf", str(busybox_tar), "-C", str(rootfs)], check=True)
    with open(rootfs / "big", "wb") as f:
        f.truncate(BIG)
        for offset, mark in MARKS.items():
            f.seek(offset)
            f.write(mark.encode())
    plain = work / "sparse.tar"
    subprocess.run(["tar", "--sparse", "-cf", str(plain), "-C", str(rootfs), "."], check=True)
    packed = work / "sparse.tar.gz"
    with open(plain, "rb") as src, gzip.open(packed, "wb") as dst:
        shutil.copyfileobj(src, dst)
    assert packed.stat().st_size < 4 << 20
    return packed


@pytest.fixture(scope="module")
def zeros_layer(busybox_tar: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A plain tar (written by tarfile): busybox plus ``/zeros``, 256 MiB of zero bytes
    then ``DATA!``."""
    work = tmp_path_factory.mktemp("zeros")
    content = work / "zeros"
    with open(content, "wb") as f:
        f.truncate(ZEROS)
        f.seek(ZEROS)
        f.write(b"DATA!")
    out = work / "zeros.tar"
    with tarfile.open(busybox_tar) as src, tarfile.open(out, "w") as dst:
        for member in src:
            dst.addfile(member, src.extractfile(member) if member.isreg() else None)
        dst.add(content, "zeros")
    return out


@pytest.mark.parametrize("storage", ["btrfs", "dir"])
def test_sparse_10g_file_unpacks_as_holes(pn: Pinnace, sparse_layer: Path, storage: str) -> None:
    pn("import", str(sparse_layer), "sparse:1")
    pn("run", "--rm", f"--storage={storage}", "--net=none", "sparse:1", "true")
    out = probe(pn, "sparse:1", "/big", [*MARKS, GIB], storage)
    size, allocated = map(int, out[0].split())
    assert size == BIG and allocated < SMALL
    assert out[1:] == [*MARKS.values(), "\0" * 5]


@pytest.mark.parametrize("storage", ["btrfs", "dir"])
def test_zero_runs_of_a_plain_layer_unpack_as_holes(pn: Pinnace, zeros_layer: Path,
                                                    storage: str) -> None:
    pn("import", str(zeros_layer), "zeros:1")
    out = probe(pn, "zeros:1", "/zeros", [0, ZEROS // 2, ZEROS], storage)
    size, allocated = map(int, out[0].split())
    assert size == ZEROS + 5 and allocated < SMALL
    assert out[1:] == ["\0" * 5, "\0" * 5, "DATA!"]


def test_save_and_load_of_a_sparse_image(pn: Pinnace, sparse_layer: Path, root: Path,
                                         tmp_path: Path) -> None:
    pn("import", str(sparse_layer), "sparse:1")
    archive = tmp_path / "saved.tar"
    pn("save", "-o", str(archive), "sparse:1")
    assert archive.stat().st_size < 8 << 20
    other = Pinnace(root / "other")
    other("load", "-i", str(archive))
    out = probe(other, "sparse:1", "/big", [5 * GIB], "btrfs")
    size, allocated = map(int, out[0].split())
    assert size == BIG and allocated < SMALL and out[1] == "HELLO"


def test_export_of_a_container_with_zero_runs(pn: Pinnace, zeros_layer: Path,
                                              tmp_path: Path) -> None:
    pn("import", str(zeros_layer), "zeros:1")
    pn("run", "--name", "z", "--storage=dir", "--net=none", "zeros:1", "true")
    archive = tmp_path / "exported.tar"
    pn("export", "-o", str(archive), "z", timeout=300)
    with tarfile.open(archive) as tar:
        member = tar.getmember("zeros")
        data = tar.extractfile(member)
        assert data is not None and member.size == ZEROS + 5
        data.seek(ZEROS - 3)
        assert data.read() == b"\0\0\0DATA!"
    pn("rm", "z")
