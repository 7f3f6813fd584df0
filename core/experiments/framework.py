"""What every ``pinnace experiment`` shares: the strategies (plugins of one role) to
compare and whether each is installed, rounds in rotating order, samples per metric
or n/a with the reason, and the results as a table, CSV, JSON and a plot.

An experiment module declares its :class:`Metric` list and a ``measure(strategy,
number)`` function; :func:`run_rounds` calls it for every round and available
strategy, and the writers here turn the :class:`Strategy` records into output.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pinnace.errors import InvalidConfig, PinnaceError
from pinnace.experiments.stats import Summary

if TYPE_CHECKING:
    from pinnace.engine import Engine

PLOT_HINT = "install matplotlib for the plot: pip install 'pinnace[plot]'"
IDLE = 'trap "exit 0" TERM; sleep 3600 & wait'
"""A container's first process that idles, and exits as soon as it is sent SIGTERM."""


@dataclass
class Metric:
    """One measured quantity: a short key, what it is, its unit."""

    key: str
    title: str
    unit: str


@dataclass
class Strategy:
    """The outcome for one strategy: its samples, or why it or a metric is n/a."""

    name: str
    plugin: dict[str, str] = field(default_factory=dict)
    reason: str = ""
    """Why the strategy could not run at all ("" when it ran)."""
    samples: dict[str, list[float]] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)
    """metric key -> why the strategy cannot make it."""

    def add(self, key: str, value: float) -> None:
        """Record one sample of metric ``key``."""
        self.samples.setdefault(key, []).append(value)

    def summary(self, key: str) -> Summary:
        """The samples of metric ``key``, or the reason there are none."""
        why = self.reason or self.missing.get(key, "")
        return Summary(tuple(self.samples.get(key, ())), why or "not measured")


class StrategyFailed(PinnaceError):
    """A container of the strategy could not be started or measured."""


def error_line(stderr: str) -> str:
    """The last ``Error: ...`` line pinnace printed, without the prefix ("" when none)."""
    errors = [line[len("Error: "):] for line in stderr.splitlines() if line.startswith("Error: ")]
    return errors[-1] if errors else ""


@dataclass
class Cli:
    """Runs ``pinnace`` commands (``argv``: the command line up to the subcommand, with
    --root and friends) and times them."""

    argv: list[str]

    def __call__(self, *args: str, timeout: float = 300) -> str:
        """Its stdout; StrategyFailed with pinnace's error when it fails."""
        return self.timed(*args, timeout=timeout)[1]

    def timed(self, *args: str, timeout: float = 300) -> tuple[float, str]:
        """Milliseconds the command took, and its stdout."""
        import subprocess

        start = time.perf_counter()
        try:
            proc = subprocess.run([*self.argv, *args], capture_output=True, text=True,
                                  stdin=subprocess.DEVNULL, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise StrategyFailed(f"pinnace {args[0]} took more than {timeout:.0f} s") from None
        elapsed = (time.perf_counter() - start) * 1000
        if proc.returncode != 0:
            raise StrategyFailed(error_line(proc.stderr) or f"pinnace {' '.join(args)} "
                                 f"exited {proc.returncode}")
        return elapsed, proc.stdout


def strategy_names(text: str) -> list[str]:
    """``A,B,...`` as distinct plugin names; InvalidConfig for none or a repeat."""
    names = [s.strip() for s in text.split(",") if s.strip()]
    if not names or len(set(names)) != len(names):
        raise InvalidConfig(f"--strategies needs distinct plugin names, got {text!r}")
    return names


def select(engine: Engine, role: str, names: Sequence[str]) -> dict[str, Strategy]:
    """A :class:`Strategy` per name; one whose plugin is not installed or does not load
    is n/a with the reason, the others note their distribution, version and entry point."""
    from pinnace import plugins

    strategies = {}
    for name in names:
        strategy = strategies[name] = Strategy(name)
        try:
            info = plugins.find(role, name)
            engine.plugins.load(role, name)
        except PinnaceError as err:
            strategy.reason = f"unavailable: {err}"
            continue
        strategy.plugin = {"distribution": info.dist, "version": info.version,
                           "entry_point": info.value}
    return strategies


@dataclass
class Parameters:
    """What every experiment is given: the strategies, the runs, the image (busybox)."""

    strategies: tuple[str, ...]
    runs: int
    image: str = "busybox:latest"


class Experiment:
    """One experiment over the plugins of ``role``: :meth:`measure` makes one run of one
    strategy with ``pinnace`` processes (``argv`` is the command line up to the
    subcommand, with --root and friends); :meth:`prepare` and :meth:`clean_up` go
    around all the runs."""

    role: ClassVar[str]

    def __init__(self, engine: Engine, argv: list[str], params: Parameters,
                 say: Callable[[str], None]) -> None:
        self.engine, self.argv, self.cli, self.say = engine, argv, Cli(argv), say
        self.params: Any = params
        """The experiment's own :class:`Parameters` subclass."""

    def run(self) -> dict[str, Strategy]:
        """Every run of every available strategy (in rotating order); the results."""
        strategies = select(self.engine, self.role, self.params.strategies)
        try:
            self.prepare(strategies)
            run_rounds(strategies, self.params.runs, self.measure, self.say)
        finally:
            self.clean_up()
        return strategies

    def prepare(self, strategies: dict[str, Strategy]) -> None:
        """What the runs need made first (nothing by default)."""

    def measure(self, strategy: Strategy, number: int) -> None:
        """Run ``number`` of ``strategy``: samples added to it, or StrategyFailed."""
        raise NotImplementedError

    def clean_up(self) -> None:
        """Remove whatever the runs left after a failure (nothing by default)."""


def run_rounds(strategies: dict[str, Strategy], runs: int,
               measure: Callable[[Strategy, int], None], say: Callable[[str], None]) -> None:
    """``measure(strategy, number)`` for each of ``runs`` rounds and each available strategy,
    the order rotated every round; a strategy that fails is n/a from then on, with why."""
    ready = [s for s in strategies.values() if not s.reason]
    for number in range(runs):
        shift = number % len(ready) if ready else 0
        for strategy in ready[shift:] + ready[:shift]:
            if strategy.reason:
                continue
            try:
                measure(strategy, number)
            except StrategyFailed as err:
                strategy.reason = f"failed in run {number + 1}: {err}"
                say(f"{strategy.name}: {strategy.reason}")
        say(f"run {number + 1}/{runs} done")


# --------------------------------------------------------------------- results
def environment(params: Any, strategies: dict[str, Strategy],
                **extra: str) -> dict[str, Any]:
    """Where and how the experiment ran: kernel, CPU, versions, plugins, parameters
    (a dataclass), and ``extra`` notes."""
    import platform
    from dataclasses import asdict

    from pinnace import __version__

    cpu = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    uname = os.uname()
    return {
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "kernel": uname.release, "kernel_version": uname.version, "machine": uname.machine,
        "cpu": cpu, "cpus": os.cpu_count(), "python": platform.python_version(),
        "pinnace": __version__,
        "plugins": {name: s.plugin for name, s in strategies.items() if s.plugin},
        **extra,
        "parameters": asdict(params),
    }


def table(metrics: Sequence[Metric], strategies: dict[str, Strategy]) -> str:
    """Metrics down, strategies across, ``median / p95`` cells (``n/a`` when not measured),
    then the reasons."""
    names = list(strategies)
    header = ["metric", "unit", *names]
    rows = [[m.title, m.unit, *(strategies[n].summary(m.key).cell() for n in names)]
            for m in metrics]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
             for r in [header, *rows]]
    notes = [f"{s.name}: {s.reason}" for s in strategies.values() if s.reason]
    for s in strategies.values():
        for reason in dict.fromkeys(s.missing.values()):
            notes.append(f"{s.name}: n/a: {reason}")
    return "\n".join(["cells: median / p95 over runs", *lines, *notes])


def write_csv(path: Path, metrics: Sequence[Metric], strategies: dict[str, Strategy]) -> None:
    """One row per strategy and metric: samples, median, p95, min, max (``n/a`` when none)."""
    import csv

    with open(path, "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["strategy", "metric", "unit", "samples", "median", "p95", "min", "max",
                      "note"])
        for s in strategies.values():
            for m in metrics:
                summary = s.summary(m.key)
                if summary.available:
                    values = [f"{v:.6g}" for v in (summary.median, summary.percentile(95),
                                                    min(summary.samples), max(summary.samples))]
                    out.writerow([s.name, m.key, m.unit, len(summary.samples), *values, ""])
                else:
                    out.writerow([s.name, m.key, m.unit, 0, "n/a", "n/a", "n/a", "n/a",
                                  summary.reason])


def write_json(path: Path, env: dict[str, Any], metrics: Sequence[Metric],
               strategies: dict[str, Strategy]) -> None:
    """Environment, and per strategy and metric the samples and summary or the n/a reason."""
    data: dict[str, Any] = {"environment": env, "metrics": {
        m.key: {"title": m.title, "unit": m.unit} for m in metrics}, "strategies": {}}
    for s in strategies.values():
        entry: dict[str, Any] = {"available": not s.reason, "reason": s.reason,
                                 "plugin": s.plugin, "metrics": {}}
        for m in metrics:
            summary = s.summary(m.key)
            entry["metrics"][m.key] = (
                {"samples": list(summary.samples), "median": summary.median,
                 "p95": summary.percentile(95)} if summary.available
                else {"value": "n/a", "reason": summary.reason})
        data["strategies"][s.name] = entry
    path.write_text(json.dumps(data, indent=2) + "\n")


def plot(path: Path, metrics: Sequence[Metric], strategies: dict[str, Strategy]) -> str | None:
    """Draw one bar chart per metric (median, error bars from p5 to p95) into ``path``.

    Returns None, or a one-line message saying why there is no plot.
    """
    try:
        import matplotlib
    except ImportError:
        return f"no plot: {PLOT_HINT}"
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(strategies)
    columns = 4
    rows = len(metrics) // columns + 1  # one cell more than the metrics, for the legend
    fig, axes = plt.subplots(rows, columns, figsize=(16, 3.5 * rows), constrained_layout=True)
    for ax, metric in zip(axes.flat, metrics, strict=False):
        for x, name in enumerate(names):
            summary = strategies[name].summary(metric.key)
            if not summary.available:
                ax.text(x, 0, "n/a", ha="center", va="bottom", color="gray")
                continue
            mid = summary.median
            errors = [[mid - summary.percentile(5)], [summary.percentile(95) - mid]]
            ax.bar(x, mid, yerr=errors, capsize=4, color=f"C{x}")
        ax.set_xticks(range(len(names)), names)
        ax.set_title(metric.title, fontsize=9)
        ax.set_ylabel(metric.unit)
    for ax in list(axes.flat)[len(metrics):]:
        ax.axis("off")
    axes.flat[len(metrics)].text(0, 0.5, "bars: median over runs\nerror bars: 5th to 95th "
                                 "percentile\nn/a: the strategy cannot make it", fontsize=9,
                                 va="center")
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return None


def write_results(out_dir: Path, name: str, metrics: Sequence[Metric], env: dict[str, Any],
                  strategies: dict[str, Strategy]) -> list[str]:
    """The table, then NAME.csv, NAME.json and NAME.png in ``out_dir``: the lines to print
    (the table, what was written, and why there is no plot when there is none)."""
    write_csv(out_dir / f"{name}.csv", metrics, strategies)
    write_json(out_dir / f"{name}.json", env, metrics, strategies)
    missing = plot(out_dir / f"{name}.png", metrics, strategies)
    written = [out_dir / f"{name}.{ext}" for ext in ("csv", "json", "png")]
    lines = [table(metrics, strategies),
             "wrote " + ", ".join(str(p) for p in (written[:2] if missing else written))]
    return [*lines, missing] if missing else lines
