"""What every ``pinnace experiment`` must write: the checks the experiment tests share."""

from __future__ import annotations

import csv
import json
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pinnace.experiments.framework import Metric

PNG = b"\x89PNG\r\n\x1a\n"


def assert_outputs(proc: subprocess.CompletedProcess[str], out_dir: Path, name: str,
                   role: str, metrics: Sequence[Metric], strategies: Sequence[str],
                   absent: str) -> dict[str, Any]:
    """The table (metrics down, ``strategies`` across), NAME.csv, NAME.json and NAME.png
    are well-formed, and the strategy ``absent`` (not installed) is n/a everywhere with
    the reason; returns the JSON."""
    lines = proc.stdout.splitlines()
    header = next(line for line in lines if line.startswith("metric"))
    assert header.split() == ["metric", "unit", *strategies]
    for metric in metrics:
        row = next(line for line in lines if line.startswith(metric.title))
        assert row.split()[-1] == "n/a", row  # the absent strategy is the last column
    assert f"{absent}: unavailable: unknown {role} plugin '{absent}'" in proc.stdout

    data = json.loads((out_dir / f"{name}.json").read_text())
    assert list(data["strategies"]) == list(strategies)
    assert list(data["metrics"]) == [m.key for m in metrics]
    missing = data["strategies"][absent]
    assert not missing["available"]
    assert {m["value"] for m in missing["metrics"].values()} == {"n/a"}

    with open(out_dir / f"{name}.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(strategies) * len(metrics)
    assert {r["median"] for r in rows if r["strategy"] == absent} == {"n/a"}
    assert (out_dir / f"{name}.png").read_bytes()[:8] == PNG
    return data
