"""kill -9 at every step of the commands that change the store (``PINNACE_CRASH_AT``):
the next command collects what the killed one left, ``system check`` then finds
nothing, and removing every container, image and network leaves the root as empty
as a root that never crashed: no row, blob, snapshot, mount, veth, rule or file."""

from __future__ import annotations

import os
import signal
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import Pinnace, host_leftovers

from pinnace.testing.netns import leftovers, run_in
from pinnace.testing.registry import RegistryServer, docker_registry

TABLES = ("images", "tags", "image_layers", "snapshots", "containers", "endpoints", "ports",
          "repo_digests")
SKELETON = {"state.db", "state.db-wal", "state.db-shm", "images/oci-layout",
            "images/index.json", "image_source/docker/blobs.json",
            *(f"reserve/{n}" for n in range(4))}
"""Files an empty root may hold (besides lock files): the state, an empty layout, the
registry source's notes of which registry holds which layer (as docker keeps them),
and the space reserve for a full disk."""
DEFAULT_NETWORKS = {"pinnace0"}


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    with docker_registry(tmp_path_factory.mktemp("registry")) as reg:
        yield reg


@pytest.fixture(scope="module")
def pushed(registry: RegistryServer, btrfs_mount: Path, busybox_tar: Path) -> str:
    """busybox in the loopback registry, pushed by a pinnace of its own."""
    seeder = Pinnace(btrfs_mount / f"seed-{os.getpid()}")
    seeder("import", "-c", 'CMD ["sh"]', str(busybox_tar), "busybox:latest")
    ref = f"{registry.host}/lib/bb:1"
    seeder("push", "busybox:latest", ref)
    return ref


def killed(pn: Pinnace, point: str, *args: str) -> None:
    """Run ``pinnace args`` with a crash point; it must die there, by SIGKILL."""
    saved = dict(pn.env)
    pn.env["PINNACE_CRASH_AT"] = point
    try:
        proc = pn(*args, check=False)
    finally:
        pn.env = saved
    assert proc.returncode == -signal.SIGKILL, \
        f"pinnace {' '.join(args)} did not die at {point}: {proc.returncode} {proc.stderr}"


def leftover_files(root: Path) -> list[str]:
    """Rows, files, subvolumes and mounts a root holds beyond an empty one's."""
    found = host_leftovers(root)
    db = sqlite3.connect(root / "state.db")
    for table in TABLES:
        count = db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
        if count:
            found.append(f"{count} rows in {table}")
    found += [f"network {name}" for (name,) in db.execute("SELECT name FROM networks")
              if name not in DEFAULT_NETWORKS]
    db.close()
    for top, dirs, files in os.walk(root):
        for name in dirs:
            if os.stat(os.path.join(top, name)).st_ino == 256:  # a btrfs subvolume
                found.append(f"subvolume {os.path.relpath(os.path.join(top, name), root)}")
        for name in files:
            rel = os.path.relpath(os.path.join(top, name), root)
            if rel not in SKELETON and not _engine_lock(rel):
                found.append(f"file {rel}")
    index = (root / "images" / "index.json")
    if index.exists() and '"digest"' in index.read_text():
        found.append("index.json names a manifest")
    return found


def _engine_lock(rel: str) -> bool:
    """The lock files that stay for as long as the root: the engine's and the bridge
    driver's for itself and its default network."""
    name = os.path.basename(rel)
    return rel.startswith("locks/") or name in ("firewall.lock", "pinnace0.lock") or (
        rel.startswith("storage/") and name == "lock")


def remove_everything(pn: Pinnace) -> None:
    containers = pn("ps", "-aq", "--no-trunc").stdout.split()
    if containers:
        pn("rm", "-f", *containers)
    images = pn("images", "-q", "--no-trunc").stdout.split()
    if images:
        pn("rmi", "-f", *dict.fromkeys(images))
    custom = [line.split()[1] for line in pn("network", "ls").stdout.splitlines()[1:]
              if line.split()[1] not in DEFAULT_NETWORKS]
    if custom:
        pn("network", "rm", *custom)


def assert_collected(pn: Pinnace, after: Callable[[], None]) -> None:
    """``after`` (the next command) collects what the crash left: nothing is wrong."""
    after()
    proc = pn("system", "check", check=False)
    assert (proc.returncode, proc.stdout) == (0, ""), proc.stdout + proc.stderr
    pn("system", "check", "--repair")


def assert_recovers(pn: Pinnace, root: Path, after: Callable[[], None]) -> None:
    """:func:`assert_collected`, and once everything is removed the root is empty."""
    assert_collected(pn, after)
    remove_everything(pn)
    assert leftover_files(root) == []


IMPORT_POINTS = ["blob.writing", "blob.stored", "image.blobs-stored"]


@pytest.mark.parametrize("point", IMPORT_POINTS)
def test_import(pn: Pinnace, root: Path, busybox_tar: Path, point: str) -> None:
    killed(pn, point, "import", str(busybox_tar), "bb:1")
    assert_recovers(pn, root, lambda: pn("import", str(busybox_tar), "bb:1"))
    assert pn("images", "-q").stdout == ""


@pytest.mark.parametrize("point", IMPORT_POINTS)
def test_pull(pn: Pinnace, root: Path, pushed: str, point: str) -> None:
    killed(pn, point, "pull", pushed)
    assert_recovers(pn, root, lambda: pn("pull", pushed))


@pytest.mark.parametrize("point", IMPORT_POINTS)
def test_load(pn: Pinnace, root: Path, busybox: str, tmp_path: Path, point: str) -> None:
    archive = tmp_path / "bb.tar"
    pn("save", "-o", str(archive), busybox)
    pn("rmi", busybox)
    killed(pn, point, "load", "-i", str(archive))
    assert_recovers(pn, root, lambda: pn("load", "-i", str(archive)))


def test_save_leaves_no_file(pn: Pinnace, root: Path, busybox: str, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    killed(pn, "save.written", "save", "-o", str(out / "bb.tar"), busybox)
    assert list(out.iterdir()) == []
    assert_recovers(pn, root, lambda: pn("save", "-o", str(out / "bb.tar"), busybox))
    assert [p.name for p in out.iterdir()] == ["bb.tar"]


@pytest.mark.parametrize("point", ["blob.writing", "commit.paused", "image.blobs-stored"])
@pytest.mark.parametrize("storage", ["btrfs", "dir"])
def test_commit(pn: Pinnace, root: Path, busybox: str, point: str, storage: str) -> None:
    pn("run", "-d", "--name", "src", f"--storage={storage}", "--net=none", busybox,
       "sh", "-c", "echo changed > /file; sleep 600")
    killed(pn, point, "commit", "src", "snap:1")
    assert_recovers(pn, root, lambda: pn("commit", "src", "snap:1"))


def test_export_leaves_no_paused_container(pn: Pinnace, root: Path, busybox: str,
                                           tmp_path: Path) -> None:
    pn("run", "-d", "--name", "src", "--net=none", busybox, "sleep", "600")
    killed(pn, "export.paused", "export", "-o", str(tmp_path / "x.tar"), "src")
    assert_recovers(pn, root, lambda: pn("rm", "-f", "nothing-by-this-name", check=False))
    # the next command resumed it: it was still running, not paused, when removed


RUN_POINTS = ["unpack.applied", "unpack.committed", "blob.writing", "create.row",
              "create.rootfs", "start.network", "start.created", "start.recorded"]


@pytest.mark.parametrize("point", RUN_POINTS)
@pytest.mark.parametrize("rm", [False, True], ids=["keep", "rm"])
def test_run(npn: Pinnace, root: Path, netns: Path, busybox_tar: Path, point: str,
             rm: bool) -> None:
    """``run`` killed while unpacking, creating the rootfs, wiring the network and
    starting; the image comes from a tar, so it is imported (blob.writing) on the way."""
    image = f"tar:{busybox_tar}" if point == "blob.writing" else "bb:1"
    if image == "bb:1":
        npn("import", "-c", 'CMD ["sh"]', str(busybox_tar), "bb:1")
    flags = ["--rm"] if rm else []
    killed(npn, point, "run", *flags, "--name", "c1", "--net=bridge", "-p", "18080:80",
           image, "true")
    assert_recovers(npn, root, lambda: npn("run", "--rm", "--net=bridge", "-p", "18080:80",
                                           "bb:1" if image == "bb:1" else image, "true"))
    assert leftovers(netns) == []


@pytest.mark.parametrize("point", ["rm.torn-down", "rm.rootfs-removed"])
@pytest.mark.parametrize("storage", ["btrfs", "dir"])
def test_rm(npn: Pinnace, root: Path, netns: Path, busybox: str, point: str,
            storage: str) -> None:
    npn("run", "-d", "--name", "c1", f"--storage={storage}", "--net=bridge", busybox,
        "sleep", "600")
    killed(npn, point, "rm", "-f", "c1")
    assert_recovers(npn, root, lambda: npn("ps", "-a"))
    assert leftovers(netns) == []


@pytest.mark.parametrize("point", ["rmi.rows-deleted", "layer.removed"])
def test_rmi(pn: Pinnace, root: Path, busybox: str, point: str) -> None:
    pn("run", "--rm", "--storage=dir", busybox, "true")  # unpacked into two storages
    pn("run", "--rm", "--storage=btrfs", busybox, "true")
    killed(pn, point, "rmi", busybox)
    assert_recovers(pn, root, lambda: pn("images"))


def test_network_rm(npn: Pinnace, root: Path, netns: Path, busybox: str) -> None:
    npn("network", "create", "backend")
    npn("run", "--rm", "--network", "backend", busybox, "true")  # the bridge is made
    bridges = run_in(netns, "ip", "-o", "link", "show", "type", "bridge").stdout
    assert "pn-" in bridges
    killed(npn, "network-rm.row-deleted", "network", "rm", "backend")
    assert_recovers(npn, root, lambda: npn("network", "ls"))
    assert "pn-" not in run_in(netns, "ip", "-o", "link", "show", "type", "bridge").stdout
    rules = run_in(netns, "iptables-save").stdout
    assert "pn:net:pn-" not in rules


def test_network_create(npn: Pinnace, root: Path) -> None:
    killed(npn, "network-create.driver-done", "network", "create", "backend")
    assert_recovers(npn, root, lambda: npn("network", "create", "backend"))


def test_run_with_volumes(pn: Pinnace, root: Path, busybox: str) -> None:
    """Killed once its volumes are made: the anonymous one it made goes with it, the
    named one stays (it has a name: someone may want it), unused."""
    killed(pn, "create.volumes", "run", "--net=none", "-v", "/anon", "-v", "named:/data",
           busybox, "true")
    assert_collected(pn, lambda: pn("ps", "-a"))
    assert pn("volume", "ls", "-q").stdout.split() == ["named"]
    pn("volume", "rm", "named")
    remove_everything(pn)
    assert leftover_files(root) == []
