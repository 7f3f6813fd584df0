"""``pinnace experiment net``: real containers under each strategy, measured inside a
private network namespace the experiment makes itself; the table, CSV, JSON and plot."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import Pinnace, assert_refused

from pinnace.experiments import framework, net
from pinnace.experiments.stats import Summary

STRATEGIES = ("none", "host", "bridge", "routed", "slirp4netns", "pasta")


def host_links() -> list[str]:
    """Links of the strategies under test (routed and bridge veths, bridges) and the
    experiment's uplink in the namespace the tests run in: the experiment must make none
    there."""
    out = subprocess.run(["ip", "-j", "link"], capture_output=True, text=True, check=True).stdout
    return sorted(name for name in (link["ifname"] for link in json.loads(out))
                  if name.startswith(("rt", "pnv", "pn-", "pinnace", "uplink")))


def test_experiment_compares_the_strategies(pn: Pinnace, busybox: str, routed_site: Path,
                                            tmp_path: Path) -> None:
    pn.env["PYTHONPATH"] = str(routed_site)
    before = host_links()
    out_dir = tmp_path / "results"
    proc = pn("experiment", "net", "--strategies", ",".join(STRATEGIES), "--runs", "2",
              "--out", str(out_dir), "--payload-mib", "4", timeout=900)
    assert host_links() == before, "the experiment touched the host's network"
    assert json.loads(pn("ps", "-a", "--format", "json").stdout) == []
    assert subprocess.run(["pgrep", "-f", f"(slirp4netns|pasta) .*{pn.root}/"],
                          capture_output=True).returncode == 1  # no helper left running

    lines = proc.stdout.splitlines()
    header = next(line for line in lines if line.startswith("metric"))
    assert header.split() == ["metric", "unit", *STRATEGIES]
    for metric in net.METRICS:
        assert any(line.startswith(metric.title) for line in lines), metric.title
    assert "wrote" in proc.stdout

    data = json.loads((out_dir / "net.json").read_text())
    env = data["environment"]
    assert env["kernel"] == os.uname().release and env["parameters"]["runs"] == 2
    assert env["plugins"]["routed"] == {"distribution": "pinnace-routed", "version": "0.1.0",
                                        "entry_point": "pinnace_routed:RoutedNetwork"}
    assert env["plugins"]["bridge"]["distribution"] == "pinnace"
    result = data["strategies"]
    assert list(result) == list(STRATEGIES)
    for name in STRATEGIES:
        assert result[name]["available"], result[name]["reason"]
        metrics = result[name]["metrics"]
        assert len(metrics["setup"]["samples"]) == 4 and len(metrics["teardown"]["samples"]) == 4
    measured = {name: {k for k, m in result[name]["metrics"].items() if "samples" in m}
                for name in STRATEGIES}
    c2c = {"c2c_connect", "c2c_rtt", "c2c_throughput"}
    ports = {"port_connect", "port_rtt"}
    assert measured == {"none": {"setup", "teardown"},
                        "host": {"setup", "teardown", *c2c},
                        "bridge": {"setup", "teardown", *c2c, *ports},
                        "routed": {"setup", "teardown", *c2c},
                        "slirp4netns": {"setup", "teardown", *ports},
                        "pasta": {"setup", "teardown", *ports}}
    routed, none = result["routed"]["metrics"], result["none"]["metrics"]
    assert all(v > 0 for v in routed["setup"]["samples"] + result["bridge"]["metrics"][
        "setup"]["samples"])
    for key in c2c:
        assert len(routed[key]["samples"]) == 2 and routed[key]["median"] > 0
        assert none[key] == {"value": "n/a",
                             "reason": "containers get no address outside loopback"}
    assert "refused: --net=routed" in routed["port_rtt"]["reason"]
    for name in ("slirp4netns", "pasta"):  # one address for all: they meet through ports
        assert "meet through published ports only" in \
            result[name]["metrics"]["c2c_rtt"]["reason"]
        assert result[name]["metrics"]["port_rtt"]["median"] > 0

    with open(out_dir / "net.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(STRATEGIES) * len(net.METRICS)
    row = {(r["strategy"], r["metric"]): r for r in rows}
    assert row[("none", "c2c_rtt")]["median"] == "n/a"
    assert float(row[("routed", "c2c_rtt")]["median"]) == pytest.approx(routed["c2c_rtt"]["median"],
                                                                        rel=1e-4)
    assert (out_dir / "net.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in out_dir.iterdir() if p.name.startswith(".net-")]


def test_plot_without_matplotlib_says_how_to_get_it(monkeypatch: pytest.MonkeyPatch,
                                                    tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # what an absent package looks like
    strategies = {"none": framework.Strategy("none", samples={"setup": [1.0, 2.0]})}
    message = framework.plot(tmp_path / "net.png", net.METRICS, strategies)
    assert message == "no plot: install matplotlib for the plot: pip install 'pinnace[plot]'"
    assert not (tmp_path / "net.png").exists()


def test_bad_input_is_one_line_and_makes_nothing(pn: Pinnace, busybox: str,
                                                 tmp_path: Path) -> None:
    assert_refused(pn, ["experiment", "net"], [
        (["--strategies", "none,none"], "--strategies needs distinct plugin names"),
        (["--strategies", ","], "--strategies needs distinct plugin names"),
        (["--image", "missing:latest"], "missing"),
        (["--runs", "0"], "--runs"),
    ], tmp_path / "results")


def test_without_cap_sys_admin_it_refuses_before_touching_anything(
        pn: Pinnace, busybox: str, tmp_path: Path) -> None:
    out_dir = tmp_path / "results"
    proc = subprocess.run(["setpriv", "--bounding-set=-sys_admin", "--",
                           *pn.argv("experiment", "net", "--runs", "1", "--out", str(out_dir))],
                          capture_output=True, text=True, env=pn.env, timeout=120)
    assert proc.returncode == 125
    assert proc.stderr.strip() == ("Error: cannot make a private network namespace for the "
                                   "experiment (unshare: Operation not permitted); run it as root")
    assert not out_dir.exists()


def test_trace_lines_become_setup_and_teardown_times() -> None:
    text = ("trace: pinnace_network_add [network:routed] 12.50 ms\n"
            "hello from the container\n"
            "trace: pinnace_isolation_create [isolation:unshare] 40.00 ms\n"
            "trace: pinnace_network_del [network:routed] 3.25 ms\n"
            "trace: pinnace_network_del [network:routed] 0.75 ms\n")
    assert net.trace_times(text) == (12.5, 4.0)
    assert net.trace_times("no trace here\n") is None


def test_summaries_show_median_and_p95_or_na() -> None:
    summary = Summary(tuple(float(v) for v in range(1, 21)))
    assert summary.median == 10.5 and summary.percentile(95) == pytest.approx(19.05)
    assert summary.cell() == "10.5 / 19.1"
    assert Summary((), "no ports").cell() == "n/a"
    assert Summary((2.0,)).cell() == "2 / 2"
    assert Summary((1012.4, 958.0)).cell() == "985 / 1010"
