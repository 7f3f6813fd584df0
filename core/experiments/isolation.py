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
import time
from dataclasses import dataclass

from pinnace.errors import PinnaceError
from pinnace.experiments import framework
from pinnace.experiments.framework import Metric, Strategy, StrategyFailed

METRICS = (
    Metric("start", "container start (pinnace start)", "ms"),
    Metric("exec", "exec of true (pinnace exec)", "ms"),
    Metric("stop", "container stop on SIGTERM (pinnace stop)", "ms"),
    Metric("memory", "memory per container (cgroup)", "MiB"),
    Metric("rss", "resident memory of the container's processes", "MiB"),
    Metric("syscall", "CPU time per system call (dd bs=1)", "ns"),
)
MIB = 1 << 20


@dataclass
class Parameters(framework.Parameters):
    """The strategies, runs and image, and the workload."""

    records: int = 200_000
    """``dd bs=1`` records for the system call cost (two system calls each)."""
    execs: int = 5
    """``pinnace exec`` calls per run (the run's value is their median)."""


class IsolationExperiment(framework.Experiment):
    """One container per run of each isolation plugin, measured."""

    role = "isolation"

    def measure(self, strategy: Strategy, number: int) -> None:
        """Start, memory, exec, system calls and stop of one container."""
        name = f"isoexp-{strategy.name}-{number}"
        self.cli("create", "--name", name, "--net=none", f"--isolation={strategy.name}",
                 self.params.image, "sh", "-c", framework.IDLE)
        try:
            strategy.add("start", self.cli.timed("start", name)[0])
            self._memory(strategy, name)
            self._exec(strategy, name)
            strategy.add("stop", self.cli.timed("stop", "-t", "10", name)[0])
        finally:
            with contextlib.suppress(PinnaceError):
                self.cli("rm", "-f", name)

    def _memory(self, strategy: Strategy, name: str) -> None:
        """The cgroup's memory use and the processes' resident memory, once both the
        shell and its ``sleep`` are running."""
        from pinnace.runtime import cgroups, stats

        record = self.engine.containers.get(self.engine.resolve(name))
        if record.status != "running" or not record.pid:
            raise StrategyFailed(f"container {name} is {record.status} after pinnace start")
        cgroup = cgroups.container_cgroup(record.id)
        deadline = time.monotonic() + 10
        while (rss := [_rss(pid) for pid in cgroup.pids()]).count(0) or len(rss) < 2:
            if time.monotonic() > deadline:  # the shell and its sleep, each resident
                raise StrategyFailed(f"container {name} has {len(rss)} processes, not 2")
            time.sleep(0.01)
        strategy.add("memory", stats.read(cgroup, record.pid).memory / MIB)
        strategy.add("rss", sum(rss) / MIB)

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
