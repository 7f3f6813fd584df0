"""A full disk is an error, not an outage: on a small btrfs of its own (256 MiB, mixed
block groups) used as the root, a container writes zeros into its rootfs until the
filesystem is full; then each write path (run's layer unpack, import, load, pull, commit,
export) fails with one line naming what it was writing, leaves nothing half-written, and
ps, images, inspect, rm, rmi and system check keep working until the store is empty.
Images with a 10 GiB sparse file are imported and loaded on that small filesystem."""

from __future__ import annotations

import contextlib
import io
import json
import os
import sqlite3
import subprocess
import tarfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Pinnace
from test_sparse_images import BIG, SMALL, probe
from test_sparse_images import sparse_layer as sparse_layer  # the fixture, shared

from pinnace.testing.registry import Layout, RegistryServer, docker_registry, skopeo_copy

RANDOM = 24 << 20
"""Bytes of random data in the big image's own layer: more than a filled filesystem has
left, even once the root's space reserve is released."""
TABLES = ("images", "tags", "image_layers", "repo_digests", "snapshots", "containers")


@pytest.fixture(scope="module")
def small_fs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A 256 MiB btrfs (mixed data and metadata block groups, as small ones need)."""
    from pinnace.testing.btrfs import loop_btrfs

    with loop_btrfs(tmp_path_factory.mktemp("fulldisk") / "fs", "256M",
                    mkfs_options=("--mixed",)) as mnt:
        yield mnt


@pytest.fixture
def fpn(small_fs: Path) -> Iterator[Pinnace]:
    """The CLI on a root of its own on the small filesystem, with ``busybox:latest``;
    afterwards the root is deleted and btrfs has given the space back."""
    root = small_fs / f"root-{uuid.uuid4().hex[:8]}"
    cli = Pinnace(root)
    yield cli
    left = cli("ps", "-aq", "--no-trunc", check=False).stdout.split()
    if left:
        cli("rm", "-f", *left, check=False)
    images = cli("images", "-q", check=False).stdout.split()
    if images:
        cli("rmi", "-f", *dict.fromkeys(images), check=False)
    for line in reversed(subvolumes(cli)):  # what a failed test left, children first
        subprocess.run(["btrfs", "property", "set", "-ts", str(small_fs / line.split()[-1]),
                        "ro", "false"], capture_output=True)
        subprocess.run(["btrfs", "subvolume", "delete", str(small_fs / line.split()[-1])],
                       capture_output=True)
    subprocess.run(["rm", "-rf", str(root)], capture_output=True)
    subprocess.run(["btrfs", "subvolume", "sync", str(small_fs)], check=True)


def _layer(name: str, data: bytes) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(name)
        info.size, info.mode, info.mtime = len(data), 0o644, 1700000000
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.fixture(scope="module")
def big(busybox_tar: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The big image's sources, off the small filesystem: ``tar`` (a busybox rootfs plus
    :data:`RANDOM` bytes of random data, for import), ``archive`` (a docker-archive of
    it, for load) and ``layout`` (an OCI layout of busybox plus that data, for pull)."""
    work = tmp_path_factory.mktemp("big")
    data = os.urandom(RANDOM)
    tar = work / "big.tar"
    with tarfile.open(busybox_tar) as src, tarfile.open(tar, "w") as dst:
        for member in src:
            dst.addfile(member, src.extractfile(member) if member.isreg() else None)
        info = tarfile.TarInfo("random.bin")
        info.size, info.mode = len(data), 0o644
        dst.addfile(info, io.BytesIO(data))
    maker = Pinnace(work / "root")
    maker("import", str(tar), "big:1")
    archive = work / "big-archive.tar"
    maker("save", "-o", str(archive), "big:1")
    layout = Layout(work / "layout")
    layout.tag(layout.image([busybox_tar.read_bytes(), _layer("random.bin", data)],
                            compress=False), "big")
    return {"tar": tar, "archive": archive, "layout": layout.path}


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory, big: dict[str, Path]
             ) -> Iterator[RegistryServer]:
    """A loopback registry holding the big image as ``lib/big:1``."""
    with docker_registry(tmp_path_factory.mktemp("registry")) as reg:
        skopeo_copy(f"oci:{big['layout']}:big", f"docker://{reg.host}/lib/big:1")
        yield reg


def fill(pn: Pinnace) -> None:
    """Run ``filler``, a container that writes zeros into its rootfs until the filesystem
    is full; it exits with dd's failure, recorded like any exit."""
    proc = pn("run", "--name", "filler", "busybox", "dd", "if=/dev/zero", "of=/zeros",
              "bs=1M", check=False, timeout=300)
    assert proc.returncode == 1 and "No space left on device" in proc.stderr, proc.stderr
    assert os.statvfs(pn.root).f_bavail * os.statvfs(pn.root).f_frsize < 8 << 20


def one_line(proc: subprocess.CompletedProcess[str], where: Path, *whats: str) -> str:
    """The single line a command that met the full disk printed: it names one of
    ``whats`` (what it was writing) and a path under ``where``."""
    assert proc.returncode == 125, (proc.returncode, proc.stdout, proc.stderr)
    assert proc.stderr.count("\n") == 1 and proc.stderr.endswith("\n"), proc.stderr
    line = proc.stderr.strip()
    assert line.startswith("Error: no space left on device writing "), line
    assert any(what in line for what in whats) and f"{where}/" in line, (whats, line)
    return line


def still_usable(pn: Pinnace) -> None:
    """The state reads and the check finds nothing half-written, on the full disk."""
    assert "filler" in pn("ps", "-a").stdout
    assert "busybox" in pn("images").stdout
    [record] = json.loads(pn("inspect", "filler").stdout)
    assert record["State"]["ExitCode"] == 1
    check = pn("system", "check", check=False)
    assert (check.returncode, check.stdout, check.stderr) == (0, "", "")
    blobs = pn.root / "images/blobs/sha256"
    assert [p.name for p in blobs.iterdir() if p.name.startswith(".")] == []


def rows(root: Path) -> dict[str, int]:
    """How many rows each table that names stored things holds."""
    with contextlib.closing(sqlite3.connect(f"file:{root / 'state.db'}?mode=ro",
                                            uri=True)) as db:
        return {t: db.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in TABLES}


def subvolumes(pn: Pinnace) -> list[str]:
    """The btrfs subvolumes under the root."""
    out = subprocess.run(["btrfs", "subvolume", "list", "-o", str(pn.root.parent)],
                         capture_output=True, text=True, check=True).stdout
    return [line for line in out.splitlines() if f"{pn.root.name}/" in line]


def remove_everything(pn: Pinnace) -> None:
    """``rm -f`` and ``rmi`` work on the full disk, and leave an empty store."""
    assert pn("rm", "-f", "filler").stdout == "filler\n"
    images = pn("images", "-q").stdout.split()
    pn("rmi", "-f", *dict.fromkeys(images))
    assert pn("ps", "-aq").stdout == "" and pn("images", "-q").stdout == ""
    check = pn("system", "check", check=False)
    assert (check.returncode, check.stdout) == (0, "")
    assert subvolumes(pn) == []
    assert os.listdir(pn.root / "images/blobs/sha256") == []
    assert rows(pn.root) == dict.fromkeys(TABLES, 0)


STORAGE = "for storage plugin 'btrfs'"
"""Where a full disk stops a snapshot being made (the rootfs, the extract- or the
commit- one) before any data is written."""
CASES = {
    # name: (the command, given the big image's sources and the registry host;
    #        what its error may name as being written, depending on where the room ran out)
    "run": (lambda big, host: ["run", "big:1", "true"], ["a layer's files", STORAGE]),
    "import": (lambda big, host: ["import", str(big["tar"]), "big:2"], ["layer blob"]),
    "load": (lambda big, host: ["load", "-i", str(big["archive"])], ["layer blob"]),
    "pull": (lambda big, host: ["pull", f"{host}/lib/big:1"],
             ["image blob to {root}/images/blobs/sha256 (storage root {root}/images) while "
              "pulling"]),
    "commit": (lambda big, host: ["commit", "filler", "filled:1"], ["layer blob", STORAGE]),
    "export": (lambda big, host: ["export", "-o", "{root}/../filler.tar", "filler"],
               ["the archive to {root}/../filler.tar"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_full_disk_is_one_line_and_leaves_nothing(fpn: Pinnace, busybox_tar: Path,
                                                    big: dict[str, Path],
                                                    registry: RegistryServer,
                                                    case: str) -> None:
    fpn("import", "-c", 'CMD ["sh"]', str(busybox_tar), "busybox:latest")
    if case == "run":  # stored while there is room; its layers are unpacked at run
        fpn("import", str(big["tar"]), "big:1")
    fill(fpn)
    command, whats = CASES[case]
    argv = [arg.replace("{root}", str(fpn.root)) for arg in command(big, registry.host)]
    proc = fpn(*argv, check=False, timeout=300)
    line = one_line(proc, fpn.root, *(what.replace("{root}", str(fpn.root)) for what in whats))
    assert line.endswith("; nothing was kept") == (case == "pull")
    assert "Traceback" not in proc.stderr and "Exception ignored" not in proc.stderr
    assert not (fpn.root.parent / "filler.tar").exists()
    assert [p for p in fpn.root.parent.iterdir() if p.name.startswith(".filler.tar")] == []
    still_usable(fpn)
    if case != "run":
        assert len(fpn("images", "-q").stdout.split()) == 1  # busybox only: nothing half-added
    remove_everything(fpn)


def test_the_state_opens_read_only_when_nothing_can_be_written(fpn: Pinnace,
                                                               busybox_tar: Path) -> None:
    """With the reserve spent and the filesystem full to the last block, reads still work
    and a write is refused in one line."""
    fpn("import", str(busybox_tar), "busybox:latest")
    top = fpn.root.parent / "top"
    top.touch()
    fill(fpn)
    for chunk in (fpn.root / "reserve").iterdir():  # spent by earlier full disks
        chunk.unlink()
    subprocess.run(["btrfs", "filesystem", "sync", str(fpn.root)], check=True)
    fd = os.open(top, os.O_WRONLY | os.O_APPEND)
    with contextlib.suppress(OSError):
        while os.write(fd, b"\1" * 4096):  # every last block
            pass
    os.close(fd)
    try:
        assert "filler" in fpn("ps", "-a").stdout
        assert "busybox" in fpn("images").stdout
        one_line(fpn("rename", "filler", "other", check=False), fpn.root, "state database")
    finally:
        top.unlink()
        subprocess.run(["btrfs", "filesystem", "sync", str(fpn.root)], check=True)
    remove_everything(fpn)


def test_the_reserve_comes_back_once_there_is_room(fpn: Pinnace, busybox_tar: Path) -> None:
    fpn("import", str(busybox_tar), "busybox:latest")
    chunks = fpn.root / "reserve"
    assert sum(p.stat().st_blocks * 512 for p in chunks.iterdir()) == 4 << 20
    fill(fpn)
    assert len(os.listdir(chunks)) < 4  # released for the filler's exit
    remove_everything(fpn)
    subprocess.run(["btrfs", "subvolume", "sync", str(fpn.root.parent)], check=True)
    fpn("ps")
    assert sorted(os.listdir(chunks)) == ["0", "1", "2", "3"]


def test_sparse_images_load_and_import_on_a_small_filesystem(
        fpn: Pinnace, sparse_layer: Path, busybox_tar: Path, tmp_path: Path) -> None:
    """A layer with a 10 GiB sparse file is stored, and unpacked, in a few megabytes."""
    fpn("import", str(sparse_layer), "sparse:1")
    out = probe(fpn, "sparse:1", "/big", [5 * (1 << 30)], "btrfs")
    size, allocated = map(int, out[0].split())
    assert size == BIG and allocated < SMALL and out[1] == "HELLO"
    archive = tmp_path / "sparse-archive.tar"
    Pinnace(tmp_path / "maker")("import", str(sparse_layer), "sparse:2")
    Pinnace(tmp_path / "maker")("save", "-o", str(archive), "sparse:2")
    fpn("load", "-i", str(archive))
    out = probe(fpn, "sparse:2", "/big", [0], "btrfs")
    assert int(out[0].split()[0]) == BIG and out[1] == "HEAD!"
    fpn("rmi", "sparse:1", "sparse:2")
    assert fpn("images", "-q").stdout == ""


def test_commit_and_export_keep_a_sparse_file_small(fpn: Pinnace, busybox_tar: Path) -> None:
    """A container's 10 GiB sparse file is committed and exported as a GNU sparse member:
    the layer blob and the archive hold its data, not its holes."""
    fpn("import", "-c", 'CMD ["sh"]', str(busybox_tar), "busybox:latest")
    fpn("run", "--name", "holes", "busybox", "sh", "-c",
        f"truncate -s {BIG} /made && printf HELLO | dd of=/made bs=1 seek={5 << 30} "
        "conv=notrunc 2>/dev/null")
    before = os.statvfs(fpn.root).f_bavail
    fpn("commit", "holes", "holes:1")
    fpn("export", "-o", str(fpn.root.parent / "holes.tar"), "holes")
    used = (before - os.statvfs(fpn.root).f_bavail) * os.statvfs(fpn.root).f_frsize
    assert used < 16 << 20
    listing = subprocess.run(["tar", "-tvf", str(fpn.root.parent / "holes.tar"), "made"],
                             capture_output=True, text=True, check=True).stdout
    assert f" {BIG} " in listing
    (fpn.root.parent / "holes.tar").unlink()
    out = probe(fpn, "holes:1", "/made", [5 << 30, 0], "btrfs")
    size, allocated = map(int, out[0].split())
    assert size == BIG and allocated < SMALL and out[1:] == ["HELLO", "\0" * 5]
    fpn("rm", "holes")
    fpn("rmi", "holes:1", "busybox:latest")
    assert fpn("images", "-q").stdout == ""
