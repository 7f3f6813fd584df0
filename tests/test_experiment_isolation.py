"""``pinnace experiment isolation``: real containers under unshare, oci (runc) and the
third-party runc example, plus one strategy that is not installed; the table, CSV, JSON
and plot, with n/a and the reason where a strategy cannot measure."""

from __future__ import annotations

import glob
import json
from pathlib import Path

from conftest import Pinnace, assert_refused, host_leftovers
from experiment_checks import assert_outputs

from pinnace.experiments import isolation

STRATEGIES = ("unshare", "oci", "runc", "absent")
MEASURED = ("unshare", "oci", "runc")


def test_experiment_compares_isolation_strategies(pn: Pinnace, busybox: str, runc_site: Path,
                                                  tmp_path: Path) -> None:
    pn.add_site(runc_site)
    out_dir = tmp_path / "results"
    proc = pn("experiment", "isolation", "--strategies", ",".join(STRATEGIES), "--runs", "2",
              "--records", "20000", "--out", str(out_dir), timeout=900)
    assert json.loads(pn("ps", "-a", "--format", "json").stdout) == []
    assert host_leftovers(pn.root) == []
    made = pn("events", "--since", "1h", "--until", "0s", "-f", "event=create",
              "--format", "{{.ID}}").stdout.split()
    assert len(made) == 2 * len(MEASURED)
    assert [d for cid in made for d in glob.glob(f"/sys/fs/cgroup/*/pinnace/{cid}/")] == []

    data = assert_outputs(proc, out_dir, "isolation", "isolation", isolation.METRICS,
                          STRATEGIES, "absent")
    assert data["environment"]["parameters"]["records"] == 20000
    plugins = data["environment"]["plugins"]
    assert plugins["oci"]["entry_point"] == "pinnace_plugins.isolation_oci:OciIsolation"
    assert plugins["runc"]["distribution"] == "pinnace-runc"
    result = data["strategies"]
    for name in MEASURED:
        assert result[name]["available"], result[name]["reason"]
        metrics = result[name]["metrics"]
        for metric in isolation.METRICS:
            samples = metrics[metric.key]["samples"]
            assert len(samples) == 2 and all(v > 0 for v in samples), (name, metric.key)
        # plausible magnitudes: a system call costs between 10 ns and 100 us of CPU,
        # an idle shell and sleep fit in 64 MiB
        assert 0.01 < metrics["syscall"]["median"] < 100_000
        assert metrics["rss"]["median"] < 64 and metrics["memory"]["median"] < 64


def test_bad_input_is_one_line_and_makes_nothing(pn: Pinnace, busybox: str,
                                                 tmp_path: Path) -> None:
    assert_refused(pn, ["experiment", "isolation"], [
        (["--strategies", "oci,oci"], "--strategies needs distinct plugin names"),
        (["--image", "missing:latest"], "missing"),
        (["--records", "5"], "--records"),
    ], tmp_path / "results")
