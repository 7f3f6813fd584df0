"""Resource limits on a container's cgroup, v1 and v2: parsed from docker's flags,
written before the container's first process runs, and the OOM-kill check.

v1 writes each controller's files in its own hierarchy (memory, cpu, cpuset,
pids, devices); v2 writes the unified tree's (memory.max, cpu.max, ...). v2 has
no devices file (its allowlist is an eBPF program): there the allowlist is not
applied, as podman without crun's eBPF support does.
"""

from __future__ import annotations

import os

from pinnace.errors import InvalidConfig, Unavailable
from pinnace.runtime import cgroups
from pinnace.runtime.spec import Resources
from pinnace.units import parse_bytes

CPU_PERIOD = 100_000
MIN_MEMORY = 6 * 1024 * 1024
SWAP_FILES = ("memory.memsw.limit_in_bytes", "memory.swap.max")
"""Present only with swap accounting; without it the swap limit is skipped, as docker does."""


def online_cpus() -> set[int]:
    """The host's online CPUs."""
    return _cpu_list(_read("/sys/devices/system/cpu/online") or f"0-{(os.cpu_count() or 1) - 1}")


def _cpu_list(text: str) -> set[int]:
    cpus: set[int] = set()
    for part in text.strip().split(","):
        first, _, last = part.partition("-")
        if not first.isdigit() or (last and not last.isdigit()):
            raise InvalidConfig(f"invalid --cpuset-cpus {text!r} (use e.g. 0-1 or 0,2)")
        cpus.update(range(int(first), int(last or first) + 1))
    return cpus


def resources(memory: str | None = None, memory_swap: str | None = None,
              cpus: float | None = None, cpu_shares: int | None = None,
              cpuset_cpus: str | None = None, pids_limit: int | None = None,
              privileged: bool = False) -> Resources:
    """Limits from ``run``'s flags, checked as docker checks them."""
    res = Resources()
    if privileged:
        res.devices = ["a *:* rwm"]
    if memory:
        res.memory = parse_bytes(memory, "--memory")
        if res.memory < MIN_MEMORY:
            raise InvalidConfig("minimum memory limit allowed is 6MB")
    if memory_swap:
        if memory_swap.strip() == "-1":
            res.memory_swap = -1
        else:
            res.memory_swap = parse_bytes(memory_swap, "--memory-swap")
            if not res.memory:
                raise InvalidConfig("--memory-swap needs --memory as well")
            if res.memory_swap < res.memory:
                raise InvalidConfig("--memory-swap must be at least --memory (it counts both)")
    elif res.memory:
        res.memory_swap = 2 * res.memory  # docker: as much swap as memory
    if cpus is not None:
        available = len(online_cpus())
        if not 0.01 <= cpus <= available:
            raise InvalidConfig(f"--cpus must be from 0.01 to {available} (this host's CPUs)")
        res.cpu_period, res.cpu_quota = CPU_PERIOD, int(cpus * CPU_PERIOD)
    if cpu_shares:
        res.cpu_shares = min(max(cpu_shares, 2), 262144)
    if cpuset_cpus:
        missing = _cpu_list(cpuset_cpus) - online_cpus()
        if missing:
            raise InvalidConfig(f"--cpuset-cpus {cpuset_cpus}: CPUs {sorted(missing)} are not "
                                "available on this host")
        res.cpuset_cpus = cpuset_cpus.strip()
    if pids_limit is not None and pids_limit > 0:
        res.pids_limit = pids_limit
    return res


def apply(cg: cgroups.Cgroup, res: Resources) -> None:
    """Write the limits into ``cg`` (before any process of the container runs). A cgroup
    in no hierarchy (a rootless pinnace without delegation) takes nothing: a run with
    limits was refused before, and a user namespace's root cannot make device nodes."""
    if not cg.dirs:
        return
    writes = _v1_writes(res) if cgroups.version() == "v1" else _v2_writes(res)
    for name, value in writes:
        _write(cg, name, value, optional=name in SWAP_FILES)


def update(cg: cgroups.Cgroup, res: Resources, changed: set[str]) -> None:
    """Write the ``changed`` limits (``memory``, ``cpus``, ``cpu_shares``, ``cpuset``,
    ``pids``) of
    a running container (``update``); a pids limit of 0 is lifted. The device allowlist
    is left alone (rewriting it denies every device for a moment); on v1 memory and
    memory+swap go in the order the kernel accepts (memory never above memory+swap)."""
    v1 = cgroups.version() == "v1"
    writes = [(name, value) for name, value in (_v1_writes(res, devices=False) if v1
                                                else _v2_writes(res))
              if _controls(name) in changed]
    if "pids" in changed and not res.pids_limit:
        writes.append(("pids.max", "max"))
    if v1 and "memory" in changed and res.memory > _current(cg, "memory.limit_in_bytes"):
        writes.sort(key=lambda w: w[0] != "memory.memsw.limit_in_bytes")
    for name, value in writes:
        _write(cg, name, value, optional=name in SWAP_FILES)


def _controls(name: str) -> str:
    """What ``update`` calls the limit a cgroup file holds."""
    if name.startswith("memory."):
        return "memory"
    if name in ("cpu.shares", "cpu.weight"):
        return "cpu_shares"
    return "cpus" if name.startswith("cpu.") else name.split(".")[0]


def _current(cg: cgroups.Cgroup, name: str) -> int:
    for d in cg.dirs:
        text = _read(os.path.join(d, name))
        if text and text.strip().isdigit():
            return int(text)
    return 0


def _v1_writes(res: Resources, devices: bool = True) -> list[tuple[str, str]]:
    writes = [("devices.deny", "a"), *(("devices.allow", rule) for rule in res.devices)] \
        if devices else []
    if res.memory:
        writes += [("memory.limit_in_bytes", str(res.memory)),
                   ("memory.memsw.limit_in_bytes", str(res.memory_swap))]
    if res.cpu_period:
        writes.append(("cpu.cfs_period_us", str(res.cpu_period)))
    if res.cpu_quota:
        writes.append(("cpu.cfs_quota_us", str(res.cpu_quota)))
    if res.cpu_shares:
        writes.append(("cpu.shares", str(res.cpu_shares)))
    if res.cpuset_cpus:
        writes.append(("cpuset.cpus", res.cpuset_cpus))
    if res.pids_limit:
        writes.append(("pids.max", str(res.pids_limit)))
    further = (("memory.soft_limit_in_bytes", res.memory_reservation or None),
               ("memory.kmem.limit_in_bytes", res.memory_kernel or None),
               ("memory.kmem.tcp.limit_in_bytes", res.memory_kernel_tcp or None),
               ("memory.swappiness", res.memory_swappiness),
               ("memory.oom_control", 1 if res.oom_kill_disable else None),
               ("cpuset.mems", res.cpuset_mems or None),
               ("cpu.rt_period_us", res.cpu_rt_period or None),
               ("cpu.rt_runtime_us", res.cpu_rt_runtime or None),
               ("blkio.weight", res.blkio_weight or None),
               ("blkio.leaf_weight", res.blkio_leaf_weight or None),
               *res.blkio_devices,
               *((f"hugetlb.{size}.limit_in_bytes", limit)
                 for size, limit in res.hugepage_limits.items()),
               ("net_cls.classid", res.net_classid or None),
               *(("net_prio.ifpriomap", f"{name} {priority}")
                 for name, priority in res.net_priorities.items()))
    return writes + [(name, str(value)) for name, value in further if value is not None]


V1_ONLY = {"memory_kernel": "memory.kmem.limit_in_bytes",
           "memory_kernel_tcp": "memory.kmem.tcp.limit_in_bytes",
           "memory_swappiness": "memory.swappiness", "oom_kill_disable": "memory.oom_control",
           "cpu_rt_period": "cpu.rt_period_us", "cpu_rt_runtime": "cpu.rt_runtime_us",
           "blkio_weight": "blkio.weight", "blkio_leaf_weight": "blkio.leaf_weight",
           "blkio_devices": "blkio.*_device", "hugepage_limits": "hugetlb.*.limit_in_bytes",
           "net_classid": "net_cls.classid", "net_priorities": "net_prio.ifpriomap"}
"""Limits pinnace applies on cgroup v1 only, and their files."""


def _v2_writes(res: Resources) -> list[tuple[str, str]]:
    for name, file in V1_ONLY.items():
        value = getattr(res, name)
        if value or (name == "memory_swappiness" and value is not None):
            raise InvalidConfig(f"{file} is a cgroup v1 limit: not available on cgroup v2")
    writes = []
    if res.memory_reservation:
        writes.append(("memory.low", str(res.memory_reservation)))
    if res.cpuset_mems:
        writes.append(("cpuset.mems", res.cpuset_mems))
    if res.memory:
        writes.append(("memory.max", str(res.memory)))
        swap = "max" if res.memory_swap < 0 else str(res.memory_swap - res.memory)
        writes.append(("memory.swap.max", swap))
    if res.cpu_quota:
        writes.append(("cpu.max", f"{res.cpu_quota} {res.cpu_period}"))
    if res.cpu_shares:  # v1 shares 2..262144 onto v2 weights 1..10000, as runc maps them
        writes.append(("cpu.weight", str(1 + ((res.cpu_shares - 2) * 9999) // 262142)))
    if res.cpuset_cpus:
        writes.append(("cpuset.cpus", res.cpuset_cpus))
    if res.pids_limit:
        writes.append(("pids.max", str(res.pids_limit)))
    return writes


def _write(cg: cgroups.Cgroup, name: str, value: str, optional: bool = False) -> None:
    for d in cg.dirs:
        path = os.path.join(d, name)
        if os.path.exists(path):
            try:
                with open(path, "w") as f:
                    f.write(value)
            except OSError as err:
                raise InvalidConfig(f"cannot set {name} to {value}: {err.strerror}") from None
            return
    if optional:
        return
    controller = name.split(".")[0]
    raise Unavailable(f"the {controller} cgroup controller is not available here: "
                      f"cannot set {name}")


def oom_killed(cg: cgroups.Cgroup) -> bool:
    """True when the kernel's OOM killer killed a process of ``cg`` (v1 memory.oom_control,
    v2 memory.events); read before the cgroup is removed."""
    for d in cg.dirs:
        for name in ("memory.oom_control", "memory.events"):
            for line in (_read(os.path.join(d, name)) or "").splitlines():
                key, _, count = line.partition(" ")
                if key == "oom_kill" and count.strip().isdigit() and int(count) > 0:
                    return True
    return False


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None
