"""Shared fixtures: a real btrfs on a loop device, a busybox image, a temp root per test,
and ``pn``, which runs the real ``pinnace`` command line against that root."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Refuse to run unprivileged: these tests use real namespaces, mounts and cgroups."""
    if os.geteuid() != 0:
        raise pytest.UsageError("pinnace's tests need root (real namespaces, mounts, cgroups)")


def stop_containers_of(root: Path) -> None:
    """Kill every process in the cgroup of each container ``root``'s state names and
    remove those cgroups: the last resort when the CLI could not remove them."""
    import sqlite3

    from pinnace.runtime import cgroups

    try:
        db = sqlite3.connect(f"file:{root / 'state.db'}?mode=ro", uri=True)
        ids = [row[0] for row in db.execute("SELECT id FROM containers")]
        db.close()
    except sqlite3.Error:
        return
    for cid in ids:
        cgroup = cgroups.container_cgroup(cid)
        if cgroup.exists():
            cgroup.kill_all()
            cgroup.remove()


def reclaim_interrupted_sessions(sessions: Path) -> None:
    """Release the btrfs loop file systems of test sessions that were killed before
    their teardown ran (their ``.lock`` names a process that is gone): the containers
    still running on them, the mount, the loop device."""
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        points = [line.split()[4] for line in f]
    for point in points:
        mnt = Path(point)
        if not point.startswith(f"{sessions}/") or mnt.name != "fs":
            continue
        lock = Path(sessions, mnt.relative_to(sessions).parts[0], ".lock")
        owner = lock.read_text().strip() if lock.exists() else ""
        if owner.isdigit() and Path(f"/proc/{owner}").exists():
            continue  # a session still running
        for root in mnt.glob("root-*"):
            stop_containers_of(root)
        subprocess.run(["umount", "--lazy", point], capture_output=True)
        image = mnt.with_name(mnt.name + ".img")
        for line in subprocess.run(["losetup", "-j", str(image)], capture_output=True,
                                   text=True).stdout.splitlines():
            subprocess.run(["losetup", "--detach", line.split(":")[0]], capture_output=True)


@pytest.fixture(scope="session")
def btrfs_mount(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh btrfs filesystem on a loop device, for this test session (worker), after
    releasing those of sessions that were killed before they could."""
    from pinnace.testing.btrfs import loop_btrfs

    basetemp = tmp_path_factory.getbasetemp()
    sessions = next((p for p in basetemp.parents if p.name.startswith("pytest-of-")), None)
    if sessions is not None:  # pytest's own numbered sessions, not a --basetemp
        reclaim_interrupted_sessions(sessions)
    base = tmp_path_factory.mktemp("btrfs")
    with loop_btrfs(base / "fs", "3G") as mnt:
        yield Path(mnt)


@pytest.fixture(scope="session")
def busybox_tar(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A busybox rootfs tarball built from Debian's busybox-static."""
    from pinnace.testing.busybox import build_busybox_tar

    path = tmp_path_factory.mktemp("busybox") / "busybox-rootfs.tar"
    build_busybox_tar(path)
    return path


@pytest.fixture
def root(btrfs_mount: Path) -> Iterator[Path]:
    """A pinnace root of its own on the session's btrfs."""
    path = btrfs_mount / f"root-{uuid.uuid4().hex[:8]}"
    path.mkdir()
    yield path


class Pinnace:
    """Runs ``python -m pinnace --root ROOT ...`` and returns the completed process."""

    def __init__(self, root: Path, env: dict[str, str] | None = None,
                 prefix: tuple[str, ...] = ()) -> None:
        self.root = root
        self.prefix = list(prefix)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("PINNACE_")}
        self.env.update(env or {})

    def argv(self, *args: str) -> list[str]:
        """The full command line for ``args``."""
        return [*self.prefix, sys.executable, "-m", "pinnace", "--root", str(self.root), *args]

    def __call__(self, *args: str, check: bool = True, input: str | None = None,
                 timeout: float = 120) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(self.argv(*args), capture_output=True, text=True, input=input,
                              env=self.env, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(
                f"pinnace {' '.join(args)} exited {proc.returncode}\n"
                f"stdout: {proc.stdout}\nstderr: {proc.stderr}")
        return proc

    def add_site(self, site: Path) -> None:
        """Put ``site`` (a directory of installed plugins) on this pinnace's PYTHONPATH."""
        paths = [p for p in self.env.get("PYTHONPATH", "").split(os.pathsep) if p]
        self.env["PYTHONPATH"] = os.pathsep.join([*paths, str(site)])

    def popen(self, *args: str, **kw: object) -> subprocess.Popen[str]:
        """Start ``pinnace args`` without waiting."""
        return subprocess.Popen(self.argv(*args), env=self.env, text=True, **kw)  # type: ignore[call-overload]


@pytest.fixture
def pn(root: Path) -> Iterator[Pinnace]:
    """The pinnace CLI bound to this test's root; containers still there at the end
    (detached ones have monitors of their own) are removed."""
    cli = Pinnace(root)
    yield cli
    if (root / "state.db").exists():
        left = cli("ps", "-aq", "--no-trunc", check=False).stdout.split()
        if left:
            cli("rm", "-f", *left, check=False)
        stop_containers_of(root)  # what rm could not remove (a failing CLI)


@pytest.fixture
def netns(tmp_path: Path) -> Iterator[Path]:
    """A private network namespace for this test (bridges, veths, rules die with it)."""
    from pinnace.testing.netns import private_netns

    with private_netns(tmp_path / "netns") as path:
        yield path


@pytest.fixture
def npn(root: Path, netns: Path) -> Pinnace:
    """The pinnace CLI bound to this test's root, run inside this test's ``netns``."""
    return Pinnace(root, prefix=("nsenter", f"--net={netns}", "--"))


@pytest.fixture
def busybox(pn: Pinnace, busybox_tar: Path) -> str:
    """``busybox:latest`` imported into this test's root."""
    pn("import", "-c", 'CMD ["sh"]', str(busybox_tar), "busybox:latest")
    return "busybox:latest"


@pytest.fixture
def rootfs(busybox_tar: Path, tmp_path: Path) -> Path:
    """A busybox rootfs unpacked into a host directory, plus ``/greeting``."""
    from pinnace.images.unpack import apply_layer

    path = tmp_path / "rootfs"
    path.mkdir()
    with open(busybox_tar, "rb") as tar:
        apply_layer(tar, path)
    (path / "greeting").write_text("hello from a host directory\n")
    return path


@pytest.fixture
def faults(npn: Pinnace, tmp_path: Path) -> Path:
    """A wrapper plugin, installed for ``npn``, that times every role hook and raises
    after the first call of the one ``FAULT_AFTER`` names; returns its log."""
    from plugin_checks import install_faults

    return install_faults(npn, tmp_path)


def host_leftovers(root: Path) -> list[str]:
    """Mounts under ``root``, and pinnace cgroups, that still exist (should be none)."""
    found = []
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        for line in f:
            point = line.split()[4]
            if point.startswith(str(root) + "/"):
                found.append(f"mount {point}")
    return found


def assert_refused(pn: Pinnace, command: list[str], cases: list[tuple[list[str], str]],
                   out_dir: Path) -> None:
    """Each of ``cases`` (extra arguments, a part of the message) makes ``pinnace
    *command`` exit 125 with one ``Error:`` line holding the message, and make nothing
    in ``out_dir``."""
    for args, message in cases:
        proc = pn(*command, *args, "--out", str(out_dir), check=False)
        assert proc.returncode == 125, proc.stderr
        errors = [line for line in proc.stderr.splitlines() if line.startswith("Error: ")]
        assert len(errors) == 1 and message in errors[0], proc.stderr
    assert not out_dir.exists()


EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def install_example(tmp_path_factory: pytest.TempPathFactory, name: str) -> Path:
    """The example plugin ``examples/<name>`` pip-installed into a directory of its own:
    tests that want it add that directory to their pinnace's PYTHONPATH."""
    site = tmp_path_factory.mktemp(f"{name}-site")
    subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", "-q", "install",
                    "--no-deps", "--target", str(site), str(EXAMPLES / name)],
                   check=True, capture_output=True, text=True)
    return site


def assert_discovered(pn: Pinnace, site: Path, role: str, name: str, dist: str) -> None:
    """Plugin ``name`` of ``role`` is unknown to ``pn`` until ``site`` is on its path; then
    ``pinnace plugins`` lists it, from ``dist`` 0.1.0, valid."""
    def listed() -> list[dict]:
        rows = json.loads(pn("plugins", "--format", "json").stdout)
        return [r for r in rows if (r["role"], r["name"]) == (role, name)]

    assert listed() == []
    pn.add_site(site)
    [found] = listed()
    assert (found["distribution"], found["version"], found["status"]) == (dist, "0.1.0", "ok")


def assert_passes_its_contract(name: str, site: Path, tmp_path: Path) -> None:
    """The contract tests of ``examples/<name>`` pass, run by pytest in a process of their
    own with only the installed example (``site``) on the path."""
    contract = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
         str(EXAMPLES / name / "tests")], capture_output=True, text=True, cwd=tmp_path,
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "PYTHONPATH": str(site)})
    assert contract.returncode == 0, contract.stdout[-3000:]
    assert " passed" in contract.stdout and "failed" not in contract.stdout


@pytest.fixture(scope="session")
def routed_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example network plugin (examples/pinnace-routed), installed apart."""
    return install_example(tmp_path_factory, "pinnace-routed")


@pytest.fixture(scope="session")
def overlay_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example storage plugin (examples/pinnace-overlay), installed apart."""
    return install_example(tmp_path_factory, "pinnace-overlay")


@pytest.fixture(scope="session")
def runc_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example isolation plugin (examples/pinnace-runc), installed apart."""
    return install_example(tmp_path_factory, "pinnace-runc")


@pytest.fixture(scope="session")
def dirsource_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example image source (examples/pinnace-dirsource), installed apart."""
    return install_example(tmp_path_factory, "pinnace-dirsource")


@pytest.fixture(scope="session")
def loopvol_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example volume driver (examples/pinnace-loopvol), installed apart."""
    return install_example(tmp_path_factory, "pinnace-loopvol")


PODMAN_RUN = ("run", "--rm", "--network=none", "--ulimit", "nofile=1024:1024",
              "--ulimit", "nproc=1024:1024")


@pytest.fixture
def podman(tmp_path: Path) -> Iterator[Callable[..., subprocess.CompletedProcess[str]]]:
    """podman with a private store (vfs), runc and cgroupfs, so tests never share images."""
    base = tmp_path / "podman"
    runroot = tempfile.mkdtemp(prefix="pd-")  # podman wants a runroot under 50 characters
    argv = ["podman", "--root", str(base / "root"), "--runroot", runroot,
            "--storage-driver", "vfs", "--cgroup-manager", "cgroupfs", "--runtime", "runc",
            "--events-backend", "file", "--tmpdir", str(base / "tmp")]

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([*argv, *args], capture_output=True, text=True, timeout=300)
        if check and proc.returncode != 0:
            raise AssertionError(f"podman {' '.join(args)} exited {proc.returncode}: "
                                 f"{proc.stderr.strip()}")
        return proc

    yield run  # no `system reset`: it also touches podman's host-wide network configs
    shutil.rmtree(runroot, ignore_errors=True)
