"""Shared benchmark helpers: timing commands side by side, and printing the table."""

from __future__ import annotations

import argparse
import contextlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

PODMAN_RUN = ["podman", "run", "--rm", "--runtime=runc",
              "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"]
"""``podman run`` as the benchmarks call it: podman asks runc for higher rlimits than a
process without CAP_SYS_RESOURCE may set, so it is asked for lower ones instead."""


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
    width = max(34, *(len(name) + 2 for name in times))
    print(f"{'command':<{width}}{'median ms':>10}{'min ms':>9}{'max ms':>9}{'ratio':>9}")
    for name, ts in times.items():
        med = statistics.median(ts)
        ratio = f"{med / base:.2f}x" if base else ""
        print(f"{name:<{width}}{med * 1000:>10.1f}{min(ts) * 1000:>9.1f}"
              f"{max(ts) * 1000:>9.1f}{ratio:>9}")


FLOOR = "floor: required imports"
FLOOR_MODULES = "click, pluggy, sqlite3, ctypes"


def floor_runner() -> Callable[[], None]:
    """The interpreter importing what every pinnace command needs and the design requires
    (click for the CLI, pluggy for hook calls, sqlite3 for the state, ctypes for the
    system calls) and doing nothing else: no pinnace command can start faster."""
    return runner([sys.executable, "-c", f"import {FLOOR_MODULES}"])


def print_floor(med: dict[str, float], pinnace: str, baseline: str) -> None:
    """Say how much of ``pinnace``'s median is the import floor and how it compares."""
    floor, own = med[FLOOR], med[pinnace] - med[FLOOR]
    print(f"{FLOOR}: python importing {FLOOR_MODULES} takes {floor * 1000:.1f} ms, "
          f"{floor / med[baseline]:.2f}x {baseline}; {pinnace} does its own work in "
          f"{own * 1000:.1f} ms on top ({own / med[baseline]:.2f}x {baseline})")


def cgroup_move_ms(probes: int = 5) -> float:
    """Median time to move a fresh process into a new cgroup on this host (ms): runc and
    pinnace pay it once per container start and exec. Fast hosts mount a hierarchy with
    ``favordynmods``; elsewhere the move waits for an RCU grace period."""
    import os
    import signal

    from pinnace.runtime import cgroups

    cg = cgroups.create("pinnace-bench-probe")
    took = []
    try:
        for _ in range(probes):
            pid = os.fork()
            if pid == 0:
                signal.pause()
                os._exit(0)
            start = time.perf_counter()
            cg.add(pid)
            took.append((time.perf_counter() - start) * 1000)
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            time.sleep(0.05)  # let the kernel leave its write-side mode, as between runs
    finally:
        cg.remove()
    return statistics.median(took)


COMPARED = " [compared]"
"""What the rows of the pinnace given with ``--compare`` end with."""


def add_compare_option(parser: argparse.ArgumentParser) -> None:
    """``--compare PYTHON``: time a second pinnace too, the one that interpreter runs."""
    parser.add_argument(
        "--compare", metavar="PYTHON", type=Path,
        help="also time the pinnace installed for this interpreter (another checkout's "
             "venv), with a root of its own, run for run alternating with this one; its "
             f"rows end with{COMPARED!r}")


def pinnace_command(python: str | Path = sys.executable) -> list[str]:
    """The command line that runs the pinnace installed for ``python``: its console
    script when it has one."""
    script = Path(python).parent / "pinnace"
    return [str(script)] if script.exists() else [str(python), "-m", "pinnace"]


def import_busybox(pinnace: list[str], root: Path, tar: Path) -> None:
    """Import the busybox tar as ``busybox`` into ``root``."""
    subprocess.run(pinnace + ["--root", str(root), "import", "-c", 'CMD ["sh"]', str(tar),
                              "busybox"], check=True, capture_output=True)


@contextlib.contextmanager
def busybox_root() -> Iterator[tuple[list[str], Path, Path]]:
    """A scratch directory with a pinnace root on a loop btrfs and busybox imported there.

    Yields the pinnace command line (without ``--root``), the root and the scratch
    directory (which holds ``busybox.tar``); everything goes afterwards. Another
    pinnace may make a root of its own beside ``root`` on the same filesystem.
    """
    from pinnace.testing.btrfs import loop_btrfs
    from pinnace.testing.busybox import build_busybox_tar

    pinnace = pinnace_command()
    work = Path(tempfile.mkdtemp(prefix="pinnace-bench-"))
    try:
        with loop_btrfs(work / "btrfs", "2G") as mnt:
            root = Path(mnt) / "root"
            build_busybox_tar(work / "busybox.tar")
            import_busybox(pinnace, root, work / "busybox.tar")
            yield pinnace, root, work
    finally:
        shutil.rmtree(work, ignore_errors=True)


def podman_store(work: Path) -> tuple[list[str], Callable[[], None]]:
    """A podman command line with a store of its own under ``work`` (and a short
    runroot, which podman wants), and the function that resets and removes it."""
    runroot = tempfile.mkdtemp(prefix="pd-")
    podman = ["podman", "--root", str(work / "podman"), "--runroot", runroot,
              "--storage-driver", "overlay", "--cgroup-manager", "cgroupfs",
              "--events-backend", "file", "--tmpdir", str(Path(runroot) / "tmp")]

    def cleanup() -> None:
        subprocess.run(podman + ["system", "reset", "--force"], capture_output=True)
        shutil.rmtree(runroot, ignore_errors=True)

    return podman, cleanup
