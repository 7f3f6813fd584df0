"""The storage contract: tests every storage plugin must pass (``pinnace.testing.storage``),
the way containerd ships a snapshotter test suite.

Subclass :class:`StorageContract` in a test module, build your plugin in
``make_plugin`` (or override the ``storage`` fixture when it needs other
fixtures), and run pytest as root::

    from pinnace.plugin import PluginContext
    from pinnace.testing.storage import StorageContract
    from my_plugin import MyStorage

    class TestMyStorage(StorageContract):
        def make_plugin(self, tmp_path):
            return MyStorage(PluginContext.for_plugin(MyStorage, "mine", "storage",
                                                      data_dir=tmp_path / "data"))

The suite calls the hook methods on the instance directly, by keyword, as
pinnace does; reads and writes snapshots through :func:`pinnace.mounts.mounted`;
and checks that views are read-only by performing their mounts in a private
mount namespace (a child process), so it holds for plugins that return bind
mounts, overlay mounts or anything else mount(2) understands. Every test
removes what it made, and the ``snaps`` fixture fails if anything is left.
"""

from __future__ import annotations

import errno
import json
import os
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from pinnace.plugin import (
    AlreadyExists,
    FailedPrecondition,
    IdMap,
    Kind,
    Mount,
    NotFound,
    SnapshotInfo,
    StorageCapabilities,
    Usage,
    mounted,
)
from pinnace.testing import assert_implements_role

OWNER = 1234
MTIME = 1_000_000_000


class Snapshots:
    """A storage plugin's hooks under short names, called by keyword, plus file helpers."""

    def __init__(self, plugin: Any) -> None:
        self.plugin = plugin

    def prepare(self, key: str, parent: str | None = None,
                labels: dict[str, str] | None = None) -> list[Mount]:
        """``pinnace_storage_prepare``."""
        return self.plugin.pinnace_storage_prepare(key=key, parent=parent, labels=labels or {})

    def view(self, key: str, parent: str, labels: dict[str, str] | None = None) -> list[Mount]:
        """``pinnace_storage_view``."""
        return self.plugin.pinnace_storage_view(key=key, parent=parent, labels=labels or {})

    def mounts(self, key: str) -> list[Mount]:
        """``pinnace_storage_mounts``."""
        return self.plugin.pinnace_storage_mounts(key=key)

    def commit(self, name: str, key: str, labels: dict[str, str] | None = None) -> None:
        """``pinnace_storage_commit``."""
        self.plugin.pinnace_storage_commit(name=name, key=key, labels=labels or {})

    def remove(self, key: str) -> None:
        """``pinnace_storage_remove``."""
        self.plugin.pinnace_storage_remove(key=key)

    def stat(self, key: str) -> SnapshotInfo:
        """``pinnace_storage_stat``."""
        return self.plugin.pinnace_storage_stat(key=key)

    def usage(self, key: str) -> Usage:
        """``pinnace_storage_usage``."""
        return self.plugin.pinnace_storage_usage(key=key)

    def walk(self) -> list[SnapshotInfo]:
        """``pinnace_storage_walk``."""
        return self.plugin.pinnace_storage_walk()

    def write(self, key: str, files: Mapping[str, bytes | None]) -> None:
        """Write ``files`` (relative path -> content; None deletes) into active snapshot ``key``."""
        with mounted(self.mounts(key)) as root:
            for rel, data in files.items():
                path = Path(root, rel)
                if data is None:
                    path.unlink()
                else:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_bytes(data)

    def read(self, key: str) -> dict[str, bytes]:
        """Every regular file in active or view snapshot ``key``: relative path -> content."""
        with mounted(self.mounts(key)) as root:
            return read_tree(Path(root))

    def read_committed(self, name: str) -> dict[str, bytes]:
        """Every regular file in committed snapshot ``name``, read through a temporary view."""
        key = f"read-{name}"
        self.view(key, name)
        try:
            return self.read(key)
        finally:
            self.remove(key)

    def layer(self, name: str, files: Mapping[str, bytes | None], parent: str | None = None,
              labels: dict[str, str] | None = None) -> None:
        """Commit ``files`` written on top of ``parent`` as snapshot ``name``."""
        key = f"build-{name}"
        self.prepare(key, parent)
        self.write(key, files)
        self.commit(name, key, labels)

    def remove_all(self) -> None:
        """Remove every snapshot, children before their parents."""
        while infos := self.walk():
            parents = {i.parent for i in infos}
            leaves = [i.key for i in infos if i.key not in parents]
            assert leaves, f"snapshots that are all parents of each other: {infos}"
            for key in leaves:
                self.remove(key)


def read_tree(root: Path) -> dict[str, bytes]:
    """Relative path -> content for every regular file under ``root``."""
    found = {}
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            path = Path(dirpath, name)
            if path.is_file() and not path.is_symlink():
                found[str(path.relative_to(root))] = path.read_bytes()
    return found


_PROBE = r"""
import json, os, sys, tempfile
from pinnace import linux
from pinnace.plugin import Mount, mount_all

mounts = [Mount(t, s, tuple(o)) for t, s, o in json.loads(sys.argv[1])]
linux.unshare(linux.CLONE_NEWNS)
linux.mount("none", "/", None, linux.MS_REC | linux.MS_PRIVATE)
target = tempfile.mkdtemp(prefix="pinnace-contract-")
try:
    mount_all(mounts, target)
    result = {"entries": sorted(os.listdir(target)), "errno": 0}
    try:
        with open(os.path.join(target, sys.argv[2]), "w") as f:
            f.write("written through the mounts")
    except OSError as err:
        result["errno"] = err.errno
    linux.umount(target, detach=True)
finally:
    os.rmdir(target)
print(json.dumps(result))
"""


def write_through_mounts(mounts: list[Mount], name: str) -> tuple[list[str], int]:
    """Perform ``mounts`` in a new private mount namespace, as an isolation plugin
    would, then try to create file ``name`` at the top.

    Returns the top directory's entries and the errno of the write (0 when it worked).
    """
    described = json.dumps([[m.type, m.source, list(m.options)] for m in mounts])
    proc = subprocess.run([sys.executable, "-c", _PROBE, described, name],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"mounting {mounts} failed: {proc.stderr.strip()}"
    result = json.loads(proc.stdout)
    return result["entries"], result["errno"]


class StorageContract:
    """The tests a storage plugin must pass. Subclass it as ``Test...`` and
    implement :meth:`make_plugin` (or override the ``storage`` fixture)."""

    def make_plugin(self, tmp_path: Path) -> Any:
        """A fresh instance of the plugin under test, with its data under ``tmp_path``."""
        raise NotImplementedError("subclasses of StorageContract return their plugin here")

    @pytest.fixture
    def storage(self, tmp_path: Path) -> Any:
        """The plugin under test."""
        return self.make_plugin(tmp_path)

    @pytest.fixture
    def snaps(self, storage: Any) -> Iterator[Snapshots]:
        """The plugin's hooks; afterwards every snapshot is removed and none may remain."""
        if os.geteuid() != 0:
            pytest.skip("the storage contract needs root (owners, device nodes, mounts)")
        calls = Snapshots(storage)
        yield calls
        calls.remove_all()
        assert calls.walk() == []

    # ----------------------------------------------------------------- hooks
    def test_implements_every_storage_hook(self, storage: Any) -> None:
        """pluggy accepts the plugin and finds every required storage hook on it."""
        assert_implements_role(storage, "storage")

    # ------------------------------------------------------------- lifecycle
    def test_prepare_empty_then_commit(self, snaps: Snapshots) -> None:
        mounts = snaps.prepare("base")
        assert mounts and all(isinstance(m, Mount) for m in mounts)
        assert snaps.read("base") == {}
        snaps.write("base", {"etc/hostname": b"box\n", "bin/sh": b"#!"})
        assert snaps.read("base") == {"etc/hostname": b"box\n", "bin/sh": b"#!"}
        snaps.commit("layer", "base")
        assert snaps.stat("layer").kind is Kind.COMMITTED
        assert [i.key for i in snaps.walk()] == ["layer"]
        with pytest.raises(NotFound):
            snaps.stat("base")
        assert snaps.read_committed("layer") == {"etc/hostname": b"box\n", "bin/sh": b"#!"}

    def test_child_sees_parent_and_its_writes_stay_its_own(self, snaps: Snapshots) -> None:
        original = {"etc/hostname": b"parent", "keep": b"k", "gone": b"g"}
        snaps.layer("layer", original)
        snaps.prepare("c1", "layer")
        assert snaps.read("c1") == original
        snaps.write("c1", {"etc/hostname": b"child", "gone": None, "new": b"n"})
        assert snaps.read("c1") == {"etc/hostname": b"child", "keep": b"k", "new": b"n"}
        snaps.prepare("c2", "layer")
        assert snaps.read("c2") == original
        assert snaps.read_committed("layer") == original

    def test_view_sees_parent_and_refuses_writes(self, snaps: Snapshots) -> None:
        snaps.layer("layer", {"file": b"x"})
        mounts = snaps.view("v", "layer")
        assert snaps.read("v") == {"file": b"x"}
        entries, err = write_through_mounts(mounts, "intruder")
        assert entries == ["file"]
        assert err in (errno.EROFS, errno.EPERM, errno.EACCES), os.strerror(err) if err else "wrote"
        assert snaps.read("v") == {"file": b"x"}

    def test_active_mounts_are_writable_when_mounted(self, snaps: Snapshots) -> None:
        snaps.layer("layer", {"file": b"x"})
        mounts = snaps.prepare("c", "layer")
        entries, err = write_through_mounts(mounts, "written")
        assert (entries, err) == (["file"], 0)
        assert snaps.read("c") == {"file": b"x", "written": b"written through the mounts"}
        assert snaps.read_committed("layer") == {"file": b"x"}

    def test_mounts_returns_what_prepare_and_view_returned(self, snaps: Snapshots) -> None:
        snaps.layer("layer", {"file": b"x"})
        active = snaps.prepare("c", "layer")
        view = snaps.view("v", "layer")
        assert snaps.mounts("c") == active
        assert snaps.mounts("v") == view
        assert active != view

    def test_mounts_of_committed_or_absent_snapshots_fail(self, snaps: Snapshots) -> None:
        snaps.layer("layer", {"file": b"x"})
        with pytest.raises(FailedPrecondition):
            snaps.mounts("layer")
        with pytest.raises(NotFound):
            snaps.mounts("absent")

    def test_stat_reports_kind_parent_labels_and_time(self, snaps: Snapshots) -> None:
        before = time.time()
        labels = {"pinnace.container": "abc"}
        snaps.prepare("build", labels=labels)
        labels["pinnace.container"] = "changed by the caller"
        info = snaps.stat("build")
        assert (info.key, info.kind, info.parent) == ("build", Kind.ACTIVE, None)
        assert info.labels == {"pinnace.container": "abc"}
        assert before - 2 <= info.created <= time.time() + 2
        snaps.commit("layer", "build", {"pinnace.layer": "sha256:1"})
        info = snaps.stat("layer")
        assert (info.key, info.kind, info.parent) == ("layer", Kind.COMMITTED, None)
        assert info.labels == {"pinnace.layer": "sha256:1"}
        snaps.prepare("c", "layer", {"role": "rootfs"})
        snaps.view("v", "layer")
        assert (snaps.stat("c").kind, snaps.stat("c").parent) == (Kind.ACTIVE, "layer")
        assert snaps.stat("c").labels == {"role": "rootfs"}
        assert (snaps.stat("v").kind, snaps.stat("v").parent) == (Kind.VIEW, "layer")
        with pytest.raises(NotFound):
            snaps.stat("absent")

    def test_walk_lists_every_snapshot(self, snaps: Snapshots) -> None:
        assert snaps.walk() == []
        snaps.layer("layer", {"file": b"x"})
        snaps.prepare("c", "layer")
        snaps.view("v", "layer")
        snaps.prepare("empty")
        found = {i.key: (i.kind, i.parent) for i in snaps.walk()}
        assert found == {"layer": (Kind.COMMITTED, None), "c": (Kind.ACTIVE, "layer"),
                         "v": (Kind.VIEW, "layer"), "empty": (Kind.ACTIVE, None)}
        assert all(i == snaps.stat(i.key) for i in snaps.walk())

    def test_usage_counts_what_was_written(self, snaps: Snapshots) -> None:
        snaps.prepare("c")
        files: dict[str, bytes | None] = {f"small/{n}": b"s" for n in range(9)}
        files["big"] = os.urandom(1 << 20)
        snaps.write("c", files)
        used = snaps.usage("c")
        assert 1 << 20 <= used.size < 64 << 20
        assert 10 <= used.inodes < 10_000
        snaps.commit("layer", "c")
        assert snaps.usage("layer").size >= 1 << 20
        snaps.prepare("child", "layer")
        assert snaps.usage("layer").size >= 1 << 20, "a layer's usage must not depend on children"
        with pytest.raises(NotFound):
            snaps.usage("absent")

    def test_remove_each_kind_frees_its_key(self, snaps: Snapshots) -> None:
        snaps.layer("layer", {"file": b"x"})
        snaps.prepare("c", "layer")
        snaps.write("c", {"extra": b"e"})
        snaps.view("v", "layer")
        for key in ("c", "v", "layer"):
            snaps.remove(key)
            with pytest.raises(NotFound):
                snaps.stat(key)
            assert key not in {i.key for i in snaps.walk()}
        snaps.prepare("c")
        assert snaps.read("c") == {}

    # ---------------------------------------------------------------- errors
    def test_existing_keys_are_refused(self, snaps: Snapshots) -> None:
        snaps.layer("layer", {"file": b"x"})
        snaps.prepare("c", "layer")
        snaps.write("c", {"mine": b"m"})
        with pytest.raises(AlreadyExists):
            snaps.prepare("c")
        with pytest.raises(AlreadyExists):
            snaps.prepare("layer", "layer")
        with pytest.raises(AlreadyExists):
            snaps.view("c", "layer")
        assert snaps.read("c") == {"file": b"x", "mine": b"m"}
        assert snaps.stat("layer").kind is Kind.COMMITTED

    def test_unknown_parent_is_not_found_and_leaves_nothing(self, snaps: Snapshots) -> None:
        with pytest.raises(NotFound):
            snaps.prepare("c", "absent")
        with pytest.raises(NotFound):
            snaps.view("v", "absent")
        assert snaps.walk() == []

    def test_parent_must_be_committed(self, snaps: Snapshots) -> None:
        snaps.layer("layer", {"file": b"x"})
        snaps.prepare("active", "layer")
        snaps.view("v", "layer")
        with pytest.raises(FailedPrecondition):
            snaps.prepare("c", "active")
        with pytest.raises(FailedPrecondition):
            snaps.view("v2", "v")
        assert {i.key for i in snaps.walk()} == {"layer", "active", "v"}

    def test_remove_of_unknown_is_not_found(self, snaps: Snapshots) -> None:
        with pytest.raises(NotFound):
            snaps.remove("absent")

    def test_remove_of_a_parent_in_use_is_refused(self, snaps: Snapshots) -> None:
        snaps.layer("layer", {"file": b"x"})
        snaps.prepare("c", "layer")
        with pytest.raises(FailedPrecondition):
            snaps.remove("layer")
        snaps.remove("c")
        snaps.view("v", "layer")
        with pytest.raises(FailedPrecondition):
            snaps.remove("layer")
        assert snaps.read("v") == {"file": b"x"}
        snaps.remove("v")
        snaps.remove("layer")
        assert snaps.walk() == []

    def test_commit_needs_an_active_snapshot_and_a_free_name(self, snaps: Snapshots) -> None:
        snaps.layer("layer", {"file": b"x"})
        snaps.view("v", "layer")
        snaps.prepare("c", "layer")
        snaps.write("c", {"mine": b"m"})
        with pytest.raises(NotFound):
            snaps.commit("new", "absent")
        with pytest.raises(FailedPrecondition):
            snaps.commit("new", "v")
        with pytest.raises(FailedPrecondition):
            snaps.commit("new", "layer")
        with pytest.raises(AlreadyExists):
            snaps.commit("layer", "c")
        assert snaps.stat("c").kind is Kind.ACTIVE
        assert snaps.read("c") == {"file": b"x", "mine": b"m"}
        assert {i.key for i in snaps.walk()} == {"layer", "v", "c"}

    # ------------------------------------------------------------ contents
    def test_file_types_round_trip(self, snaps: Snapshots) -> None:
        snaps.prepare("build")
        with mounted(snaps.mounts("build")) as root:
            top = Path(root)
            (top / "file").write_bytes(b"data")
            os.chown(top / "file", OWNER, OWNER)
            os.chmod(top / "file", 0o640)
            os.setxattr(top / "file", "user.x", b"value")
            os.link(top / "file", top / "hardlink")
            (top / "suid").write_bytes(b"#!/bin/sh\n")
            os.chmod(top / "suid", 0o4755)
            (top / "private").mkdir()
            os.chown(top / "private", OWNER, OWNER)
            os.chmod(top / "private", 0o700)
            os.symlink("does/not/exist", top / "dangling")
            os.lchown(top / "dangling", OWNER, OWNER)
            os.mkfifo(top / "fifo")
            os.mknod(top / "null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
            os.utime(top / "file", (MTIME, MTIME))
        snaps.commit("layer", "build")
        snaps.prepare("child", "layer")
        with mounted(snaps.mounts("child")) as root:
            top = Path(root)
            st = os.lstat(top / "file")
            assert (top / "file").read_bytes() == b"data"
            assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o640, OWNER, OWNER)
            assert int(st.st_mtime) == MTIME
            assert os.getxattr(top / "file", "user.x") == b"value"
            link = os.lstat(top / "hardlink")
            assert (link.st_ino, link.st_nlink) == (st.st_ino, 2)
            assert stat.S_IMODE(os.lstat(top / "suid").st_mode) == 0o4755
            private = os.lstat(top / "private")
            assert stat.S_ISDIR(private.st_mode)
            assert (stat.S_IMODE(private.st_mode), private.st_uid, private.st_gid) == (
                0o700, OWNER, OWNER)
            dangling = os.lstat(top / "dangling")
            assert stat.S_ISLNK(dangling.st_mode) and dangling.st_uid == OWNER
            assert os.readlink(top / "dangling") == "does/not/exist"
            assert stat.S_ISFIFO(os.lstat(top / "fifo").st_mode)
            null = os.lstat(top / "null")
            assert stat.S_ISCHR(null.st_mode) and null.st_rdev == os.makedev(1, 3)

    def test_chain_of_three_parents(self, snaps: Snapshots) -> None:
        snaps.layer("l1", {"a": b"1", "b": b"1"})
        snaps.layer("l2", {"a": b"2", "c": b"2"}, parent="l1")
        snaps.layer("l3", {"b": None, "d": b"3"}, parent="l2")
        snaps.prepare("top", "l3")
        assert snaps.read("top") == {"a": b"2", "c": b"2", "d": b"3"}
        assert [snaps.stat(k).parent for k in ("top", "l3", "l2", "l1")] == ["l3", "l2", "l1", None]
        assert snaps.read_committed("l1") == {"a": b"1", "b": b"1"}
        assert snaps.read_committed("l2") == {"a": b"2", "b": b"1", "c": b"2"}
        for key in ("l1", "l2", "l3"):
            with pytest.raises(FailedPrecondition):
                snaps.remove(key)

    def test_keys_may_be_chain_ids(self, snaps: Snapshots) -> None:
        chain = "sha256:" + "ab" * 32
        extract = f"extract-42-{chain}"
        snaps.prepare(extract)
        snaps.write(extract, {"f": b"x"})
        snaps.commit(chain, extract)
        snaps.prepare("c", chain)
        assert {i.key for i in snaps.walk()} == {chain, "c"}
        assert snaps.stat("c").parent == chain
        assert snaps.read("c") == {"f": b"x"}

    def test_concurrent_prepares_of_one_key_make_one_snapshot(self, snaps: Snapshots) -> None:
        snaps.layer("layer", {"file": b"x" * 4096})
        barrier = threading.Barrier(4)

        def attempt(_: int) -> str:
            barrier.wait()
            try:
                snaps.prepare("same", "layer")
            except AlreadyExists:
                return "exists"
            return "made"

        with ThreadPoolExecutor(4) as pool:
            results = sorted(pool.map(attempt, range(4)))
        assert results == ["exists", "exists", "exists", "made"]
        assert {i.key for i in snaps.walk()} == {"layer", "same"}
        assert snaps.read("same") == {"file": b"x" * 4096}

    # ------------------------------------------ optional: capabilities and shift
    def test_capabilities_say_what_the_plugin_offers(self, storage: Any) -> None:
        """``pinnace_storage_capabilities`` (optional) returns StorageCapabilities, and
        ``shift`` is only claimed by a plugin that implements ``pinnace_storage_shift``."""
        if not hasattr(storage, "pinnace_storage_capabilities"):
            pytest.skip("the plugin has no capabilities hook (idmapped, no shift)")
        caps = storage.pinnace_storage_capabilities()
        assert isinstance(caps, StorageCapabilities)
        assert not caps.shift or hasattr(storage, "pinnace_storage_shift")

    def test_shift_copies_a_layer_with_owners_shifted(self, snaps: Snapshots) -> None:
        """``pinnace_storage_shift`` makes a committed child whose owners went through the
        maps (beyond them: 65534), which containers are prepared on, and which must go
        before its parent; a second shift of one key is ``AlreadyExists``."""
        plugin = snaps.plugin
        if not hasattr(plugin, "pinnace_storage_capabilities") or \
                not plugin.pinnace_storage_capabilities().shift:
            pytest.skip("the plugin does not offer shifted snapshots")
        snaps.layer("layer", {"root-file": b"r", "user-file": b"u", "far-file": b"f"})
        key = "owned"
        snaps.prepare("build-owned", "layer")
        with mounted(snaps.mounts("build-owned")) as root:
            os.chown(Path(root, "user-file"), OWNER, OWNER)
            os.chown(Path(root, "far-file"), 70000, 70000)
        snaps.commit(key, "build-owned")
        maps = [IdMap(0, 500000, 65536)]
        plugin.pinnace_storage_shift(key="shifted", parent=key, uid_map=maps, gid_map=maps)
        with pytest.raises(AlreadyExists):
            plugin.pinnace_storage_shift(key="shifted", parent=key, uid_map=maps, gid_map=maps)
        with pytest.raises(NotFound):
            plugin.pinnace_storage_shift(key="nothing", parent="absent", uid_map=maps,
                                         gid_map=maps)
        assert snaps.stat("shifted").kind is Kind.COMMITTED
        assert snaps.stat("shifted").parent == key
        snaps.prepare("c", "shifted")
        with mounted(snaps.mounts("c")) as root:
            owners = {name: (os.lstat(Path(root, name)).st_uid, os.lstat(Path(root, name)).st_gid)
                      for name in ("root-file", "user-file", "far-file", ".")}
        assert owners == {"root-file": (500000, 500000), ".": (500000, 500000),
                          "user-file": (500000 + OWNER, 500000 + OWNER),
                          "far-file": (65534, 65534)}
        assert snaps.read("c") == {"root-file": b"r", "user-file": b"u", "far-file": b"f"}
        snaps.view("v", key)
        with mounted(snaps.mounts("v")) as root:
            assert os.lstat(Path(root, "root-file")).st_uid == 0  # the parent is untouched
        snaps.remove("v")
        snaps.remove("c")
        with pytest.raises(FailedPrecondition):
            snaps.remove(key)  # the shifted copy is its child
