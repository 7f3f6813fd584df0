"""The third-party isolation plugin (examples/pinnace-runc): installed with pip into a
directory on the test's PYTHONPATH (so tests running beside it never see it), discovered,
selected with --isolation=runc for real containers, and run against the isolation
contract suite. Nothing may be left afterwards: no mount, cgroup or runc container."""

from __future__ import annotations

import glob
import json
import subprocess
from pathlib import Path

import pytest
from conftest import Pinnace, assert_discovered, assert_passes_its_contract, host_leftovers


@pytest.fixture
def rpn(pn: Pinnace, busybox: str, runc_site: Path) -> Pinnace:
    """pinnace with the runc plugin on its PYTHONPATH."""
    pn.env["PYTHONPATH"] = str(runc_site)
    return pn


def leftovers(pn: Pinnace, cid: str) -> list[str]:
    """Mounts under the root, the container's cgroups and runc containers still there."""
    found = host_leftovers(pn.root)
    found += [f"cgroup {d}" for d in glob.glob(f"/sys/fs/cgroup/*/pinnace/{cid}/")]
    runc_root = pn.root / "run" / "runc"
    if runc_root.exists():
        listed = subprocess.run(["runc", "--root", str(runc_root), "list", "-q"],
                                capture_output=True, text=True, check=True).stdout.split()
        found += [f"runc container {name}" for name in listed]
    return found


def test_runc_plugin_is_discovered(pn: Pinnace, runc_site: Path) -> None:
    assert_discovered(pn, runc_site, "isolation", "runc", "pinnace-runc")


def test_run_rm_in_runc(rpn: Pinnace, busybox: str) -> None:
    out = rpn("run", "--rm", "--isolation=runc", "--read-only", busybox,
              "sh", "-c", "hostname; echo $$; touch /x 2>&1; exit 3", check=False)
    assert out.returncode == 3, out.stderr
    short_id, pid, refused = out.stdout.splitlines()  # the hostname is the short ID
    assert (pid, refused) == ("1", "touch: /x: Read-only file system")
    assert json.loads(rpn("ps", "-a", "--format", "json").stdout) == []
    assert leftovers(rpn, short_id + "*") == []


def test_missing_command_is_127(rpn: Pinnace, busybox: str) -> None:
    out = rpn("run", "--name", "broken", "--isolation=runc", busybox, "no-such-command",
              check=False)
    assert out.returncode == 127
    assert "no-such-command" in out.stderr and "executable file not found" in out.stderr
    cid = json.loads(rpn("inspect", "broken").stdout)[0]["Id"]
    rpn("rm", "broken")
    assert leftovers(rpn, cid) == []


def test_detached_exec_stop_rm(rpn: Pinnace, busybox: str) -> None:
    cid = rpn("run", "-d", "--name", "svc", "--isolation=runc", busybox,
              "sh", "-c", "echo up; exec sleep 300").stdout.strip()
    try:
        row = json.loads(rpn("inspect", "svc").stdout)[0]
        assert row["State"]["Status"] == "running"
        out = rpn("exec", "svc", "sh", "-c", "hostname; tr '\\0' ' ' </proc/1/cmdline").stdout
        assert out.split() == [cid[:12], "sleep", "300"]
        assert glob.glob(f"/sys/fs/cgroup/*/pinnace/{cid}/")
        rpn("stop", "-t", "1", "svc")
        assert json.loads(rpn("inspect", "svc").stdout)[0]["State"]["Status"] == "exited"
        assert leftovers(rpn, cid) == []
        assert "up" in rpn("logs", "svc").stdout
    finally:
        rpn("rm", "-f", "svc", check=False)
    assert leftovers(rpn, cid) == []
    assert not (rpn.root / "run" / "containers" / cid).exists()


def test_example_passes_the_isolation_contract(runc_site: Path, tmp_path: Path) -> None:
    assert_passes_its_contract("pinnace-runc", runc_site, tmp_path)
