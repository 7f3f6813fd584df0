"""Shared benchmark helpers: timing commands side by side, and printing the table."""

from __future__ import annotations

import statistics
import subprocess
import time
from collections.abc import Callable, Sequence


def time_runs(commands: dict[str, Callable[[], None]], rounds: int) -> dict[str, list[float]]:
    """Run each command ``rounds`` times, interleaved (A B C A B C ...), return seconds per run."""
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(rounds):
        for name, fn in commands.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return times


def runner(argv: Sequence[str], **kw: object) -> Callable[[], None]:
    """A callable that runs ``argv`` quietly and fails loudly if it exits non-zero."""
    def run() -> None:
        proc = subprocess.run(list(argv), capture_output=True, **kw)  # type: ignore[call-overload]
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr[-400:]!r}")
    return run


def report(title: str, times: dict[str, list[float]], baseline: str | None = None) -> None:
    """Print medians (ms), spread and the ratio of each to ``baseline``."""
    print(f"\n{title}")
    base = statistics.median(times[baseline]) if baseline else None
    print(f"{'command':<34}{'median ms':>10}{'min ms':>9}{'max ms':>9}{'ratio':>9}")
    for name, ts in times.items():
        med = statistics.median(ts)
        ratio = f"{med / base:.2f}x" if base else ""
        print(f"{name:<34}{med * 1000:>10.1f}{min(ts) * 1000:>9.1f}{max(ts) * 1000:>9.1f}{ratio:>9}")
