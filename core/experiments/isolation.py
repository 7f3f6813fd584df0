"""``pinnace experiment isolation``: compare isolation strategies (isolation plugins).

For each strategy and each run one real container (``--net=none``, a shell
that exits on SIGTERM) is made with ``pinnace create`` and measured:

- start, exec and stop latency: the wall time of ``pinnace start``, of
  ``pinnace exec NAME true`` (the median of a few) and of ``pinnace stop``;
- memory per container: the container cgroup's memory use (without inactive
  page cache) and the resident memory of the processes in it, once running;
- system call cost: the CPU time the container's cgroup spends on ``dd bs=1``
  from /dev/zero to /dev/null (a read and a write per byte) beyond one record,
  per system call: seccomp filters, namespaces and the runtime's setup show here.

A measurement a strategy cannot make (a plugin without exec) is n/a with the
reason, never zero.
"""

from __future__ import annotations

import contextlib
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pinnace.errors import PinnaceError
from pinnace.experiments.framework import Cli, Metric, Strategy, StrategyFailed

if TYPE_CHECKING:
    from pinnace.engine import Engine

METRICS = (
    Metric("start", "container start (pinnace start)", "ms"),
    Metric("exec", "exec of true (pinnace exec)", "ms"),
    Metric("stop", "container stop on SIGTERM (pinnace stop)", "ms"),
    Metric("memory", "memory per container (cgroup)", "MiB"),
    Metric("rss", "resident memory of the container's processes", "MiB"),
    Metric("syscall", "CPU time per system call (dd bs=1)", "ns"),
)
WORKLOAD = 'trap "exit 0" TERM; sleep 3600 & wait'
"""The container's first process: idle, and gone as soon as it is sent SIGTERM."""
MIB = 1 << 20


@dataclass
class Parameters:
    """What the experiment does: which strategies, how often, with what workload."""

    strategies: tuple[str, ...]
    runs: int
    image: str = "busybox:latest"
    records: int = 200_000
    """``dd bs=1`` records for the system call cost (two system calls each)."""
    execs: int = 5
    """``pinnace exec`` calls per run (the run's value is their median)."""


class IsolationExperiment:
    """Runs the measurements of :class:`Parameters` with ``pinnace`` processes started
    by ``argv`` (the command line up to the subcommand, with --root and friends)."""

    def __init__(self, engine: Engine, argv: list[str], params: Parameters,
                 say: Callable[[str], None]) -> None:
        self.engine, self.cli, self.params, self.say = engine, Cli(argv), params, say

    def run(self) -> dict[str, Strategy]:
        """Every run of every available strategy (in rotating order); the results."""
        from pinnace.experiments import framework

        strategies = framework.select(self.engine, "isolation", self.params.strategies)
        framework.run_rounds(strategies, self.params.runs, self._measure, self.say)
        return strategies

    def _measure(self, strategy: Strategy, number: int) -> None:
        name = f"isoexp-{strategy.name}-{number}"
        self.cli("create", "--name", name, "--net=none", f"--isolation={strategy.name}",
                 self.params.image, "sh", "-c", WORKLOAD)
        try:
            strategy.add("start", self.cli.timed("start", name)[0])
            self._memory(strategy, name)
            self._exec(strategy, name)
            strategy.add("stop", self.cli.timed("stop", "-t", "10", name)[0])
        finally:
            with contextlib.suppress(PinnaceError):
                self.cli("rm", "-f", name)

    def _memory(self, strategy: Strategy, name: str) -> None:
        """The cgroup's memory use and the processes' resident memory, once running."""
        from pinnace.runtime import cgroups, stats

        record = self.engine.containers.get(self.engine.resolve(name))
        if record.status != "running" or not record.pid:
            raise StrategyFailed(f"container {name} is {record.status} after pinnace start")
        cgroup = cgroups.container_cgroup(record.id)
        strategy.add("memory", stats.read(cgroup, record.pid).memory / MIB)
        strategy.add("rss", sum(_rss(pid) for pid in cgroup.pids()) / MIB)

    def _exec(self, strategy: Strategy, name: str) -> None:
        """Exec latency, and the system call cost measured by an exec'd ``dd``."""
        try:
            times = [self.cli.timed("exec", name, "true")[0] for _ in range(self.params.execs)]
        except StrategyFailed as err:
            if "does not support" not in str(err):
                raise
            strategy.missing["exec"] = strategy.missing["syscall"] = str(err)
            return
        strategy.add("exec", statistics.median(times))
        records = self.params.records
        spent = self._cpu_ns(name, records) - self._cpu_ns(name, 1)
        strategy.add("syscall", spent / (2 * (records - 1)))

    def _cpu_ns(self, name: str, records: int) -> int:
        """CPU time the container's cgroup spends on an exec'd ``dd bs=1 count=records``."""
        from pinnace.runtime import cgroups, stats

        record = self.engine.containers.get(self.engine.resolve(name))
        cgroup = cgroups.container_cgroup(record.id)
        before = stats.read(cgroup, record.pid).cpu_ns
        self.cli("exec", name, "dd", "if=/dev/zero", "of=/dev/null", "bs=1",
                 f"count={records}")
        return stats.read(cgroup, record.pid).cpu_ns - before


def _rss(pid: int) -> int:
    """Bytes of ``pid`` resident in memory (0 when it is gone)."""
    with contextlib.suppress(OSError), open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0
