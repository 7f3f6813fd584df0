"""The btrfs storage plugin: the storage contract on a real btrfs, subvolume kinds, O(1)
rootfs creation, the not-btrfs error, loop provisioning, key names, info and doctor."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from pinnace.linux import is_mountpoint
from pinnace.plugin import FailedPrecondition, InvalidConfig, PluginContext, Unavailable, mount_of
from pinnace.testing.storage import Snapshots, StorageContract
from pinnace_plugins.storage_btrfs import BtrfsStorage

MiB = 1 << 20
UNSAFE_KEYS = ["", ".", "..", "a/b", "../escape", "/abs"]


def make(data_dir: Path, loop_size: str = "") -> BtrfsStorage:
    """A btrfs plugin keeping its snapshots in ``data_dir``."""
    return BtrfsStorage(PluginContext.for_plugin(BtrfsStorage, "btrfs", "storage",
                                                 {"loop_size": loop_size}, data_dir=data_dir))


def losetup_of(image: Path) -> list[str]:
    """Loop devices attached to ``image``."""
    out = subprocess.run(["losetup", "--noheadings", "--output", "NAME", "--associated",
                          str(image)], capture_output=True, text=True, check=True).stdout
    return out.split()


def detached(image: Path) -> bool:
    """True once no loop device is attached to ``image``; the kernel may free an
    autoclear device just after the unmount returns, so allow it a few seconds."""
    for _ in range(50):
        if not losetup_of(image):
            return True
        time.sleep(0.1)
    return False


def data_used(mnt: Path) -> int:
    """Bytes of data allocated on the btrfs at ``mnt`` (``btrfs filesystem df``)."""
    subprocess.run(["btrfs", "filesystem", "sync", str(mnt)], check=True, capture_output=True)
    out = subprocess.run(["btrfs", "filesystem", "df", "--raw", str(mnt)],
                         capture_output=True, text=True, check=True).stdout
    line = next(x for x in out.splitlines() if x.startswith("Data"))
    return int(line.split("used=")[1].split(",")[0])


class TestBtrfsContract(StorageContract):
    """The storage contract on this worker's loop btrfs."""

    @pytest.fixture(autouse=True)
    def _on_btrfs(self, btrfs_mount: Path) -> None:
        self.btrfs = btrfs_mount

    def make_plugin(self, tmp_path: Path) -> BtrfsStorage:
        """A btrfs plugin in a directory of its own on the loop btrfs."""
        return make(self.btrfs / f"{tmp_path.name}-{uuid.uuid4().hex[:8]}")


@pytest.fixture
def snaps(btrfs_mount: Path) -> Iterator[Snapshots]:
    """A btrfs plugin's hooks, in a directory of its own on the loop btrfs."""
    calls = Snapshots(make(btrfs_mount / f"btrfs-{uuid.uuid4().hex[:8]}"))
    yield calls
    calls.remove_all()


def test_kinds_are_subvolumes_read_only_except_active(snaps: Snapshots) -> None:
    import btrfsutil

    snaps.layer("layer", {"f": b"x"})
    active = snaps.prepare("c", "layer")[0].source
    view = snaps.view("v", "layer")[0].source
    layer = str(Path(active).parent.parent / "layer" / "fs")
    for path, readonly in ((layer, True), (active, False), (view, True)):
        assert btrfsutil.is_subvolume(path)
        assert btrfsutil.get_subvolume_read_only(path) is readonly
    with pytest.raises(OSError):
        Path(layer, "f").write_bytes(b"changed")


def test_rootfs_of_a_big_image_is_a_snapshot_not_a_copy(snaps: Snapshots,
                                                         btrfs_mount: Path) -> None:
    snaps.layer("big", {f"usr/lib/blob{n}": os.urandom(10 * MiB) for n in range(20)})
    assert snaps.usage("big").size >= 200 * MiB
    before = data_used(btrfs_mount)
    for n in range(3):
        snaps.prepare(f"c{n}", "big")
    after = data_used(btrfs_mount)
    assert after - before < 10 * MiB, f"3 rootfs of a 200 MB image took {after - before} bytes"
    assert snaps.usage("c0").size < 10 * MiB
    assert snaps.usage("big").size >= 200 * MiB  # its own, though three children share it
    snaps.write("c0", {"usr/lib/blob0": os.urandom(2 * MiB)})
    assert 2 * MiB <= snaps.usage("c0").size < 10 * MiB


@pytest.mark.parametrize("key", UNSAFE_KEYS)
def test_unsafe_keys_are_refused(snaps: Snapshots, key: str) -> None:
    snaps.layer("layer", {"f": b"x"})
    for call in (lambda: snaps.prepare(key), lambda: snaps.prepare("c", key),
                 lambda: snaps.view(key, "layer"), lambda: snaps.commit(key, "build"),
                 lambda: snaps.commit("n", key), lambda: snaps.remove(key),
                 lambda: snaps.stat(key), lambda: snaps.usage(key)):
        with pytest.raises(InvalidConfig):
            call()
    assert [i.key for i in snaps.walk()] == ["layer"]


def test_chain_ids_become_distinct_file_names(snaps: Snapshots) -> None:
    snaps.prepare("sha256:abc")
    snaps.prepare("sha256-abc")
    path = Path(snaps.mounts("sha256:abc")[0].source)
    assert path.parent.name == "sha256%3Aabc"
    assert sorted(os.listdir(path.parent.parent)) == ["sha256%3Aabc", "sha256-abc"]
    assert sorted(i.key for i in snaps.walk()) == ["sha256-abc", "sha256:abc"]


def test_not_btrfs_fails_every_call_with_the_fixes(tmp_path: Path) -> None:
    fstype = mount_of(tmp_path)[1]
    assert fstype != "btrfs", "this test needs the temp dir off btrfs"
    data_dir = tmp_path / "btrfs"
    snaps = Snapshots(make(data_dir))
    for call in (lambda: snaps.prepare("c"), lambda: snaps.view("v", "p"),
                 lambda: snaps.mounts("c"), lambda: snaps.commit("n", "c"),
                 lambda: snaps.remove("c"), lambda: snaps.stat("c"),
                 lambda: snaps.usage("c"), snaps.walk):
        with pytest.raises(FailedPrecondition) as err:
            call()
        message = str(err.value)
        assert "\n" not in message
        for part in (str(data_dir), f"on {fstype}", '[storage.btrfs] loop_size = "20G"',
                     "PINNACE_STORAGE_BTRFS_LOOP_SIZE=20G", f"mount a btrfs at {data_dir}",
                     "--storage=dir"):
            assert part in message
    assert not data_dir.exists()


def test_missing_btrfsutil_says_how_to_install(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "btrfsutil", None)  # makes "import btrfsutil" fail
    plugin = make(tmp_path / "btrfs")
    with pytest.raises(Unavailable, match=r"pip install 'pinnace\[btrfs\]'.*libbtrfsutil-dev"):
        plugin.pinnace_storage_walk()
    checks = {c["check"]: c for c in plugin.pinnace_doctor()}
    assert checks["storage btrfs: btrfsutil module"]["ok"] == "no"


@pytest.fixture
def loop_dir(tmp_path: Path) -> Iterator[Path]:
    """A data dir on the temp dir's filesystem; afterwards its loop image is unmounted,
    detached and deleted, and the test fails if a loop device is left behind."""
    data_dir = tmp_path / "btrfs"
    image = data_dir.with_name("btrfs.img")
    yield data_dir
    while is_mountpoint(str(data_dir)):
        subprocess.run(["umount", str(data_dir)], check=True)
    left = [] if not image.exists() or detached(image) else losetup_of(image)
    for device in left:
        subprocess.run(["losetup", "--detach", device], check=True)
    image.unlink(missing_ok=True)
    assert left == [], f"loop devices left attached to {image}: {left}"


def test_loop_size_provisions_once_and_mounts_again_after_reboot(loop_dir: Path) -> None:
    image = loop_dir.with_name("btrfs.img")
    plugins = [make(loop_dir, "256M") for _ in range(3)]
    errors: list[BaseException] = []

    def first_use(n: int) -> None:
        try:
            Snapshots(plugins[n]).prepare(f"c{n}")
        except BaseException as err:  # reported below
            errors.append(err)

    threads = [threading.Thread(target=first_use, args=(n,)) for n in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        points = [line.split()[4] for line in f]
    assert points.count(str(loop_dir)) == 1
    assert mount_of(loop_dir)[1] == "btrfs"
    assert image.stat().st_size == 256 * MiB
    assert image.stat().st_blocks * 512 < 64 * MiB  # sparse
    assert len(losetup_of(image)) == 1
    snaps = Snapshots(plugins[0])
    snaps.write("c0", {"kept": b"across reboots"})
    info = plugins[0].pinnace_info()["storage.btrfs"]
    assert info["backing"] == f"loop file {image}"

    subprocess.run(["umount", str(loop_dir)], check=True)  # as a reboot would
    assert detached(image)  # mount -o loop detaches on unmount
    again = Snapshots(make(loop_dir, "256M"))
    assert sorted(i.key for i in again.walk()) == ["c0", "c1", "c2"]
    assert again.read("c0") == {"kept": b"across reboots"}
    again.remove_all()


def test_bad_loop_sizes_are_refused_and_leave_nothing(loop_dir: Path) -> None:
    with pytest.raises(InvalidConfig, match="loop_size"):
        make(loop_dir, "lots").pinnace_storage_walk()
    with pytest.raises(FailedPrecondition, match="minimum size"):
        make(loop_dir, "64M").pinnace_storage_walk()
    assert not is_mountpoint(str(loop_dir))
    assert sorted(os.listdir(loop_dir.parent)) == ["btrfs", "btrfs.lock"]


def test_loop_size_refuses_a_non_empty_data_dir(loop_dir: Path) -> None:
    loop_dir.mkdir()
    (loop_dir / "stray").write_text("not ours")
    with pytest.raises(FailedPrecondition, match="not empty"):
        make(loop_dir, "256M").pinnace_storage_walk()
    assert not is_mountpoint(str(loop_dir))
    assert not loop_dir.with_name("btrfs.img").exists()


def test_remove_refuses_while_something_is_mounted_inside(snaps: Snapshots, tmp_path: Path) -> None:
    mounts = snaps.prepare("c")
    point = Path(mounts[0].source, "mnt")
    point.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(point)], check=True)
    try:
        with pytest.raises(FailedPrecondition, match="mounted"):
            snaps.remove("c")
    finally:
        subprocess.run(["umount", str(point)], check=True)
    snaps.remove("c")
    assert snaps.walk() == []


def test_info_and_doctor_on_btrfs(btrfs_mount: Path) -> None:
    plugin = make(btrfs_mount / f"btrfs-{uuid.uuid4().hex[:8]}")
    info = plugin.pinnace_info()["storage.btrfs"]
    assert info["backing"] == f"loop file {btrfs_mount.with_name(btrfs_mount.name + '.img')}"
    assert info["free"].endswith("iB")
    checks = plugin.pinnace_doctor()
    assert [c["ok"] for c in checks] == ["yes"] * 4
    assert all("fix" not in c for c in checks)


def test_doctor_off_btrfs_gives_the_fix(tmp_path: Path) -> None:
    plugin = make(tmp_path / "btrfs")
    checks = {c["check"]: c for c in plugin.pinnace_doctor()}
    check = checks["storage btrfs: data dir on btrfs"]
    assert check["ok"] == "no" and "loop_size" in check["fix"] and "--storage=dir" in check["fix"]
    assert plugin.pinnace_info()["storage.btrfs"]["backing"].startswith("none (")
    with_loop = make(tmp_path / "btrfs", "20G")
    checks = {c["check"]: c for c in with_loop.pinnace_doctor()}
    assert checks["storage btrfs: data dir on btrfs"]["ok"] == "yes"
    assert "on first use" in with_loop.pinnace_info()["storage.btrfs"]["backing"]
    assert not (tmp_path / "btrfs").exists() and not (tmp_path / "btrfs.img").exists()
