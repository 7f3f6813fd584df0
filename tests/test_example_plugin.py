"""The worked third-party plugin (examples/pinnace-overlay): installed with pip into a
directory on the test's PYTHONPATH (so tests running beside it never see it), discovered,
selected with --storage=overlay, and run against the contract suite."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from conftest import Pinnace

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "pinnace-overlay"


def pip(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", "-q", *args],
                   check=True, capture_output=True, text=True)


def test_third_party_storage_plugin_end_to_end(pn: Pinnace, busybox: str,
                                               tmp_path: Path) -> None:
    rows = json.loads(pn("plugins", "--format", "json").stdout)
    assert not [r for r in rows if r["name"] == "overlay"]
    site = tmp_path / "site"
    pip("install", "--no-deps", "--target", str(site), str(EXAMPLE))
    pn.env["PYTHONPATH"] = str(site)
    rows = json.loads(pn("plugins", "--format", "json").stdout)
    overlay = next(r for r in rows if r["name"] == "overlay")
    assert (overlay["role"], overlay["distribution"], overlay["version"], overlay["status"]) \
        == ("storage", "pinnace-overlay", "0.1.0", "ok")
    out = pn("run", "--rm", "--storage=overlay", busybox, "sh", "-c",
             "echo changed > /etc/motd; cat /etc/motd; grep ' / ' /proc/mounts").stdout
    assert out.splitlines()[0] == "changed" and " / overlay " in out
    pn("run", "--name", "kept", "--storage=overlay", busybox, "touch", "/made-here")
    data = pn.root / "storage" / "overlay"
    assert list(data.glob("snapshots/*/fs/made-here")), "the write did not land in the upper dir"
    pn("rm", "kept")
    assert not list(data.glob("snapshots/*/fs/made-here"))
    contract = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
         str(EXAMPLE / "tests")], capture_output=True, text=True, cwd=tmp_path,
        env={**pn.env, "PYTHONPATH": str(site)})
    assert contract.returncode == 0, contract.stdout[-3000:]
    assert " passed" in contract.stdout and "failed" not in contract.stdout
