"""``pinnace experiment storage``: compare storage strategies (storage plugins).

Two images are compared: the small one given (busybox) and a large one the
experiment commits from it first (``--large-mib`` of random data in
``/big``), removed at the end. For each strategy and each run (after one
untimed container of each image, which unpacks the images for the strategy):

- create latency of each image: the wall time of ``pinnace create``;
- disk used per container of the large image: how much the used space of the
  filesystem under the strategy's data directory grows for two containers;
- file write and read throughput and many small files, in a running container
  of the large image, through ``/proc/PID/root`` (the container's own mounts):
  a file written and fsynced, ``/big`` read with its page cache dropped first,
  and small files created, read back and removed;
- commit time: ``pinnace commit`` of that container once stopped (the written
  file is its change).

A measurement a strategy cannot make is n/a with the reason, never zero.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pinnace.errors import PinnaceError
from pinnace.experiments import framework
from pinnace.experiments.framework import Metric, Strategy, StrategyFailed

METRICS = (
    Metric("create_small", "create latency, small image", "ms"),
    Metric("create_large", "create latency, large image", "ms"),
    Metric("disk_used", "disk used per container (large image)", "MiB"),
    Metric("write", "file write throughput (fsync)", "MB/s"),
    Metric("read", "file read throughput (cold)", "MB/s"),
    Metric("small_files", "many small files: create, read, remove", "ms"),
    Metric("commit", "commit of the written file", "ms"),
)
LARGE = "pinnace-experiment-large:latest"
BLOCK = 1 << 20
MIB = 1 << 20


@dataclass
class Parameters(framework.Parameters):
    """The strategies, runs and small image, and the sizes of the large image and files."""

    large_mib: int = 64
    """MiB of random data in ``/big`` of the large image."""
    write_mib: int = 32
    """MiB written for the write throughput (and committed)."""
    small_files: int = 1000
    """Files of 1 KiB for the many-small-files measurement."""


class StorageExperiment(framework.Experiment):
    """Containers of a small and a large image per run of each storage plugin, measured;
    everything the experiment made is removed at the end."""

    role = "storage"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.made: list[str] = []
        """Containers and images of this experiment still to remove."""

    def prepare(self, strategies: dict[str, Strategy]) -> None:
        """The large image, committed on the first available strategy."""
        ready = [name for name, s in strategies.items() if not s.reason]
        if ready:
            self._make_large_image(ready[0])

    def clean_up(self) -> None:
        """Whatever is left after a failure: containers first, then images."""
        for entry in sorted(self.made, key=lambda e: e.startswith("rmi")):
            verb, name = entry.split(" ", 1)
            with contextlib.suppress(PinnaceError):
                self._remove(verb, name)

    def _make_large_image(self, storage: str) -> None:
        """The large image, committed from a container on ``storage``."""
        p = self.params
        name = "storexp-build"
        self._remember("rm", name)
        self.cli("run", "--name", name, "--net=none", f"--storage={storage}", p.image, "dd",
                 "if=/dev/urandom",
                 "of=/big", f"bs={BLOCK}", f"count={p.large_mib}")
        self._remember("rmi", LARGE)
        self.cli("commit", name, LARGE)
        self._remove("rm", name)

    def measure(self, strategy: Strategy, number: int) -> None:
        """Create latencies, disk used, file throughput, small files and commit."""
        p, s = self.params, strategy.name
        if number == 0:  # unpack both images for this strategy, untimed
            for image in (p.image, LARGE):
                self._create(f"storexp-{s}-warm", s, image)
                self._remove("rm", f"storexp-{s}-warm")
        strategy.add("create_small", self._create(f"storexp-{s}-small", s, p.image))
        self._remove("rm", f"storexp-{s}-small")
        self._disk_used(strategy)
        box = f"storexp-{s}-{number}"
        self._create(box, s, LARGE, "sh", "-c", framework.IDLE)
        self.cli("start", box)
        record = self.engine.containers.get(self.engine.resolve(box))
        if record.status != "running" or not record.pid:
            raise StrategyFailed(f"container {box} is {record.status} after pinnace start")
        root = Path(f"/proc/{record.pid}/root")
        strategy.add("write", _write(root / "written", p.write_mib))
        strategy.add("read", _read(root / "big"))
        strategy.add("small_files", _small_files(root / "many", p.small_files))
        self.cli("stop", "-t", "10", box)
        image = f"storexp-{s}-commit:{number}"
        self._remember("rmi", image)
        strategy.add("commit", self.cli.timed("commit", box, image)[0])
        self._remove("rmi", image)
        self._remove("rm", box)

    def _disk_used(self, strategy: Strategy) -> None:
        """The growth of the used space under the strategy's data directory for two
        containers of the large image, per container (the first create's latency too)."""
        place = self.engine.paths.root / "storage" / strategy.name
        names = [f"storexp-{strategy.name}-disk{i}" for i in range(2)]
        os.sync()
        before = _used(place)
        times = [self._create(name, strategy.name, LARGE) for name in names]
        os.sync()
        grown = _used(place) - before
        for name in names:
            self._remove("rm", name)
        strategy.add("create_large", statistics.median(times))
        strategy.add("disk_used", max(grown, 0) / len(names) / MIB)

    # ----------------------------------------------------------- containers
    def _create(self, name: str, storage: str, image: str, *command: str) -> float:
        """``pinnace create``; milliseconds it took."""
        self._remember("rm", name)
        return self.cli.timed("create", "--name", name, "--net=none", f"--storage={storage}",
                              image, *(command or ("true",)))[0]

    def _remember(self, verb: str, name: str) -> None:
        self.made.append(f"{verb} {name}")

    def _remove(self, verb: str, name: str) -> None:
        """``pinnace rm -f`` a container or ``rmi`` an image; it is forgotten."""
        self.cli(*(("rm", "-f") if verb == "rm" else (verb,)), name)
        self.made.remove(f"{verb} {name}")


def _used(path: Path) -> int:
    """Bytes used on the filesystem holding ``path`` (its nearest existing parent)."""
    while not path.exists():
        path = path.parent
    st = os.statvfs(path)
    return (st.f_blocks - st.f_bfree) * st.f_frsize


def _write(path: Path, mib: int) -> float:
    """MB/s writing ``mib`` MiB of zeros to ``path`` and fsyncing it."""
    block = bytes(BLOCK)
    start = time.perf_counter()
    with open(path, "wb") as f:
        for _ in range(mib):
            f.write(block)
        os.fsync(f.fileno())
    return mib * BLOCK / (time.perf_counter() - start) / 1e6


def _read(path: Path) -> float:
    """MB/s reading ``path`` to the end, its pages dropped from the cache first."""
    with open(path, "rb", buffering=0) as f:
        os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
        start, size = time.perf_counter(), 0
        while chunk := f.read(BLOCK):
            size += len(chunk)
        elapsed = time.perf_counter() - start
    if not size:
        raise StrategyFailed(f"{path.name} is empty in the container")
    return size / elapsed / 1e6


def _small_files(directory: Path, count: int) -> float:
    """Milliseconds to create ``count`` files of 1 KiB in ``directory``, read them back and
    remove them (and the directory)."""
    data = os.urandom(1024)
    start = time.perf_counter()
    directory.mkdir()
    for i in range(count):
        (directory / str(i)).write_bytes(data)
    for i in range(count):
        if (directory / str(i)).read_bytes() != data:
            raise StrategyFailed(f"small file {i} read back differs")
    for i in range(count):
        (directory / str(i)).unlink()
    directory.rmdir()
    return (time.perf_counter() - start) * 1000
