"""The dir storage plugin: the storage contract, key names, reflink copies, safety,
info and doctor."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from pinnace.plugin import FailedPrecondition, InvalidConfig, PluginContext, mount_of
from pinnace.testing.storage import Snapshots, StorageContract
from pinnace_plugins.storage_dir import DirStorage

UNSAFE_KEYS = ["", ".", "..", "a/b", "../escape", "/abs"]


def make(data_dir: Path) -> DirStorage:
    """A dir plugin keeping its snapshots in ``data_dir``."""
    return DirStorage(PluginContext.for_plugin(DirStorage, "dir", "storage", data_dir=data_dir))


class TestDirContract(StorageContract):
    """The storage contract, on the ext4 (or whatever) filesystem of the temp dir."""

    def make_plugin(self, tmp_path: Path) -> DirStorage:
        """A dir plugin under the test's temp dir."""
        return make(tmp_path / "dir")


@pytest.fixture
def snaps(tmp_path: Path) -> Iterator[Snapshots]:
    """A dir plugin's hooks, with the data dir under the test's temp dir."""
    calls = Snapshots(make(tmp_path / "dir"))
    yield calls
    calls.remove_all()


def test_keys_become_distinct_reversible_names(snaps: Snapshots, tmp_path: Path) -> None:
    snaps.prepare("sha256:abc")
    snaps.prepare("sha256-abc")
    snaps.prepare("100%")
    names = sorted(os.listdir(tmp_path / "dir" / "snapshots"))
    assert names == ["100%25", "sha256%3Aabc", "sha256-abc"]
    assert sorted(i.key for i in snaps.walk()) == ["100%", "sha256-abc", "sha256:abc"]
    assert snaps.mounts("sha256:abc")[0].source == str(
        tmp_path / "dir" / "snapshots" / "sha256%3Aabc" / "fs")


@pytest.mark.parametrize("key", UNSAFE_KEYS)
def test_unsafe_keys_are_refused(snaps: Snapshots, tmp_path: Path, key: str) -> None:
    snaps.layer("layer", {"f": b"x"})
    before = sorted(os.listdir(tmp_path))
    for call in (lambda: snaps.prepare(key), lambda: snaps.prepare("c", key),
                 lambda: snaps.view(key, "layer"), lambda: snaps.commit(key, "build"),
                 lambda: snaps.commit("n", key),
                 lambda: snaps.remove(key), lambda: snaps.stat(key), lambda: snaps.usage(key)):
        with pytest.raises(InvalidConfig):
            call()
    assert sorted(os.listdir(tmp_path)) == before
    assert [i.key for i in snaps.walk()] == ["layer"]


def test_copies_share_blocks_on_btrfs(btrfs_mount: Path) -> None:
    snaps = Snapshots(make(btrfs_mount / f"dir-{uuid.uuid4().hex[:8]}"))
    try:
        snaps.layer("layer", {"big": os.urandom(32 << 20)})
        mounts = snaps.prepare("c", "layer")
        out = subprocess.run(["btrfs", "filesystem", "du", "-s", "--raw", mounts[0].source],
                             capture_output=True, text=True, check=True).stdout
        total, exclusive, shared = (int(n) for n in out.splitlines()[-1].split()[:3])
        assert total >= 32 << 20
        assert shared >= 32 << 20 and exclusive < 1 << 20
    finally:
        snaps.remove_all()


def test_remove_refuses_while_something_is_mounted_inside(snaps: Snapshots, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious").write_text("keep me")
    mounts = snaps.prepare("c")
    point = Path(mounts[0].source, "mnt")
    point.mkdir()
    subprocess.run(["mount", "--bind", str(outside), str(point)], check=True)
    try:
        with pytest.raises(FailedPrecondition, match="mounted"):
            snaps.remove("c")
    finally:
        subprocess.run(["umount", str(point)], check=True)
    assert (outside / "precious").read_text() == "keep me"
    assert snaps.stat("c").key == "c"
    snaps.remove("c")
    assert snaps.walk() == []


def test_leftovers_of_a_killed_process_are_swept(snaps: Snapshots, tmp_path: Path) -> None:
    snaps.prepare("c")
    stage = tmp_path / "dir" / "tmp" / "99999-deadbeef"
    (stage / "fs" / "etc").mkdir(parents=True)
    (stage / "fs" / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    snaps.commit("layer", "c")
    assert os.listdir(tmp_path / "dir" / "tmp") == []
    assert [i.key for i in snaps.walk()] == ["layer"]


def test_info_and_doctor_on_a_filesystem_without_reflinks(tmp_path: Path) -> None:
    fstype = mount_of(tmp_path)[1]
    if fstype in ("btrfs", "xfs"):
        pytest.skip(f"the temp dir is on {fstype}, which may clone files")
    plugin = make(tmp_path / "dir")
    info = plugin.pinnace_info()["storage.dir"]
    assert (info["data_dir"], info["filesystem"], info["reflink"]) == (
        str(tmp_path / "dir"), fstype, "no")
    assert info["free"].endswith("iB")
    [check] = plugin.pinnace_doctor()
    assert check["ok"] == "warn" and "--storage=btrfs" in check["fix"]
    assert not (tmp_path / "dir").exists()


def test_info_and_doctor_on_btrfs(btrfs_mount: Path) -> None:
    plugin = make(btrfs_mount / f"dir-{uuid.uuid4().hex[:8]}")
    info = plugin.pinnace_info()["storage.dir"]
    assert (info["filesystem"], info["reflink"]) == ("btrfs", "yes")
    [check] = plugin.pinnace_doctor()
    assert check["ok"] == "yes" and "fix" not in check
