"""A container's resource usage read from its cgroup (v1 or v2) and its network namespace."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

from pinnace.runtime import cgroups


@dataclass
class Usage:
    """One reading; CPU is cumulative, so a percentage needs two (:func:`cpu_percent`)."""

    at: float
    cpu_ns: int = 0
    memory: int = 0
    memory_limit: int = 0
    pids: int = 0
    block_read: int = 0
    block_write: int = 0
    net_rx: int = 0
    net_tx: int = 0


def read(cgroup: cgroups.Cgroup, pid: int) -> Usage:
    """Usage of ``cgroup`` and of the network namespace of ``pid`` (net I/O is 0
    when the process is gone)."""
    files = _Files(cgroup.dirs)
    host_memory = _host_memory()
    if files.has("cpuacct.usage") or files.has("memory.usage_in_bytes"):  # v1
        cpu = _int(files.read("cpuacct.usage"))
        used = _int(files.read("memory.usage_in_bytes"))
        inactive = _keyed(files.read("memory.stat")).get("total_inactive_file", 0)
        limit = _int(files.read("memory.limit_in_bytes")) or host_memory
        rd, wr = _blkio_v1(files.read("blkio.throttle.io_service_bytes"))
    else:
        cpu = _keyed(files.read("cpu.stat")).get("usage_usec", 0) * 1000
        used = _int(files.read("memory.current"))
        inactive = _keyed(files.read("memory.stat")).get("inactive_file", 0)
        limit = _int(files.read("memory.max")) or host_memory
        rd, wr = _io_v2(files.read("io.stat"))
    rx, tx = _net(pid)
    return Usage(at=time.monotonic(), cpu_ns=cpu, memory=max(used - inactive, 0),
                 memory_limit=min(limit, host_memory), pids=_int(files.read("pids.current")),
                 block_read=rd, block_write=wr, net_rx=rx, net_tx=tx)


def cpu_percent(before: Usage, after: Usage) -> float:
    """CPU use between two readings, in percent of one CPU (200% is two CPUs busy)."""
    elapsed = after.at - before.at
    if elapsed <= 0 or after.cpu_ns < before.cpu_ns:
        return 0.0
    return (after.cpu_ns - before.cpu_ns) / (elapsed * 1e9) * 100


class _Files:
    """The cgroup's files, whichever hierarchy holds each (v1 has one per controller)."""

    def __init__(self, dirs: list[str]) -> None:
        self.dirs = dirs

    def has(self, name: str) -> bool:
        return any(os.path.exists(os.path.join(d, name)) for d in self.dirs)

    def read(self, name: str) -> str:
        for d in self.dirs:
            try:
                with open(os.path.join(d, name)) as f:
                    return f.read()
            except OSError:
                continue
        return ""


def _int(text: str) -> int:
    text = text.strip()
    return int(text) if text.isdigit() else 0


def _keyed(text: str) -> dict[str, int]:
    out = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if value.strip().isdigit():
            out[key] = int(value)
    return out


def _blkio_v1(text: str) -> tuple[int, int]:
    rd = wr = 0
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[2].isdigit():
            rd += int(parts[2]) if parts[1] == "Read" else 0
            wr += int(parts[2]) if parts[1] == "Write" else 0
    return rd, wr


def _io_v2(text: str) -> tuple[int, int]:
    rd = wr = 0
    for line in text.splitlines():
        for field in line.split()[1:]:
            key, _, value = field.partition("=")
            if value.isdigit():
                rd += int(value) if key == "rbytes" else 0
                wr += int(value) if key == "wbytes" else 0
    return rd, wr


def _net(pid: int) -> tuple[int, int]:
    """Bytes received and sent on every interface but loopback, in ``pid``'s netns."""
    rx = tx = 0
    try:
        with open(f"/proc/{pid}/net/dev") as f:
            lines = f.read().splitlines()[2:]
    except OSError:
        return 0, 0
    for line in lines:
        name, _, counters = line.partition(":")
        fields = counters.split()
        if name.strip() != "lo" and len(fields) >= 9:
            rx, tx = rx + int(fields[0]), tx + int(fields[8])
    return rx, tx


def _host_memory() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    return 0
