"""``pinnace experiment storage``: real containers on btrfs, dir and the third-party
overlay example, plus one strategy that is not installed; the table, CSV, JSON and plot,
with n/a and the reason where a strategy cannot measure, and nothing left behind."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import Pinnace, assert_refused, host_leftovers
from experiment_checks import assert_outputs

from pinnace.experiments import storage

STRATEGIES = ("btrfs", "dir", "overlay", "absent")
MEASURED = ("btrfs", "dir", "overlay")
LARGE_MIB = 16


def test_experiment_compares_storage_strategies(pn: Pinnace, busybox: str, overlay_site: Path,
                                                tmp_path: Path) -> None:
    pn.add_site(overlay_site)
    images_before = pn("images", "-q").stdout.split()
    out_dir = tmp_path / "results"
    proc = pn("experiment", "storage", "--strategies", ",".join(STRATEGIES), "--runs", "2",
              "--large-mib", str(LARGE_MIB), "--write-mib", "4", "--small-files", "200",
              "--out", str(out_dir), timeout=900)
    assert json.loads(pn("ps", "-a", "--format", "json").stdout) == []
    assert pn("images", "-q").stdout.split() == images_before
    assert host_leftovers(pn.root) == []

    data = assert_outputs(proc, out_dir, "storage", "storage", storage.METRICS, STRATEGIES,
                          "absent")
    assert data["environment"]["parameters"]["large_mib"] == LARGE_MIB
    assert data["environment"]["plugins"]["overlay"]["distribution"] == "pinnace-overlay"
    result = data["strategies"]
    for name in MEASURED:
        assert result[name]["available"], result[name]["reason"]
        metrics = result[name]["metrics"]
        for metric in storage.METRICS:
            samples = metrics[metric.key]["samples"]
            assert len(samples) == 2, (name, metric.key)
            positive = metric.key != "disk_used"  # a snapshot may take no data blocks
            assert all(v > 0 if positive else v >= 0 for v in samples), (name, metric.key)
        # a container never takes more than a full copy of the large image (and slack)
        assert metrics["disk_used"]["median"] < LARGE_MIB + 16


def test_a_strategy_that_cannot_work_is_na_with_its_reason(busybox_tar: Path,
                                                           tmp_path: Path) -> None:
    # a root on this host's ext4 /tmp: the btrfs plugin has no btrfs there, dir works
    ext_root = tmp_path / "root"
    ext_root.mkdir()
    pn = Pinnace(ext_root, env={"PINNACE_STORAGE": "dir"})
    pn("import", str(busybox_tar), "busybox:latest")
    out_dir = tmp_path / "results"
    proc = pn("experiment", "storage", "--strategies", "dir,btrfs",
              "--runs", "1", "--large-mib", "2", "--write-mib", "1", "--small-files", "10",
              "--out", str(out_dir), timeout=600)
    result = json.loads((out_dir / "storage.json").read_text())["strategies"]
    assert result["dir"]["available"], result["dir"]["reason"]
    assert not result["btrfs"]["available"]
    assert "btrfs" in result["btrfs"]["reason"] and "loop_size" in result["btrfs"]["reason"]
    assert result["btrfs"]["metrics"]["write"] == {"value": "n/a",
                                                   "reason": result["btrfs"]["reason"]}
    assert f"btrfs: {result['btrfs']['reason']}" in proc.stdout
    assert json.loads(pn("ps", "-a", "--format", "json").stdout) == []
    assert pn("images", "--format", "{{.Repository}}").stdout.split() == ["busybox"]
    assert host_leftovers(ext_root) == []


def test_bad_input_is_one_line_and_makes_nothing(pn: Pinnace, busybox: str,
                                                 tmp_path: Path) -> None:
    assert_refused(pn, ["experiment", "storage"], [
        (["--strategies", "dir,,dir"], "--strategies needs distinct plugin names"),
        (["--image", "missing:latest"], "missing"),
        (["--large-mib", "0"], "--large-mib"),
    ], tmp_path / "results")
