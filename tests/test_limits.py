"""Resource limits on the host's real cgroups (v1 here; v2 where /sys/fs/cgroup is unified),
OOM kills, and ``pinnace stats``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

from conftest import Pinnace
from test_detached import inspect, until

from pinnace.runtime import cgroups

SPIN = "while :; do :; done"


def cgroup_file(cid: str, name: str) -> Path:
    """The container's cgroup file ``name``, in whichever hierarchy holds it."""
    for d in cgroups.Cgroup(f"pinnace/{cid}").dirs:
        if os.path.exists(os.path.join(d, name)):
            return Path(d) / name
    raise AssertionError(f"no {name} in the cgroup of {cid[:12]} (controller missing?)")


def cpu_usage_ns(cid: str) -> int:
    if cgroups.version() == "v1":
        return int(cgroup_file(cid, "cpuacct.usage").read_text())
    stat = dict(line.split() for line in cgroup_file(cid, "cpu.stat").read_text().splitlines())
    return int(stat["usage_usec"]) * 1000


def test_limits_are_written_to_the_cgroup(pn: Pinnace, busybox: str) -> None:
    cid = pn("run", "-d", "--memory", "64m", "--memory-swap", "96m", "--cpus", "0.5",
             "--cpu-shares", "512", "--cpuset-cpus", "0", "--pids-limit", "50",
             busybox, "sleep", "60").stdout.strip()
    mib = 1024 * 1024
    if cgroups.version() == "v1":
        assert int(cgroup_file(cid, "memory.limit_in_bytes").read_text()) == 64 * mib
        assert int(cgroup_file(cid, "memory.memsw.limit_in_bytes").read_text()) == 96 * mib
        assert cgroup_file(cid, "cpu.cfs_quota_us").read_text().strip() == "50000"
        assert cgroup_file(cid, "cpu.cfs_period_us").read_text().strip() == "100000"
        assert cgroup_file(cid, "cpu.shares").read_text().strip() == "512"
    else:
        assert int(cgroup_file(cid, "memory.max").read_text()) == 64 * mib
        assert int(cgroup_file(cid, "memory.swap.max").read_text()) == 32 * mib
        assert cgroup_file(cid, "cpu.max").read_text().split() == ["50000", "100000"]
        assert cgroup_file(cid, "cpu.weight").read_text().strip() == "20"
    assert cgroup_file(cid, "cpuset.cpus").read_text().strip() == "0"
    assert cgroup_file(cid, "pids.max").read_text().strip() == "50"
    # the container runs where its cgroup says (cpuset 0 only)
    assert pn("exec", cid, "grep", "Cpus_allowed_list",
              "/proc/self/status").stdout.split()[-1] == "0"


def test_memory_hog_is_oom_killed_and_reported(pn: Pinnace, busybox: str) -> None:
    hog = pn("run", "--name", "hog", "--memory", "32m", "--memory-swap", "32m", busybox,
             "dd", "if=/dev/zero", "of=/dev/null", "bs=96M", "count=1", check=False)
    assert hog.returncode == 137, hog.stderr
    state = inspect(pn, "hog")["State"]
    assert state["OOMKilled"] is True and state["ExitCode"] == 137
    assert "Exited (137)" in pn("ps", "-a").stdout
    # within its limit, the same program is not killed, and says so
    pn("run", "--name", "fits", "--memory", "32m", busybox,
       "dd", "if=/dev/zero", "of=/dev/null", "bs=4M", "count=1")
    assert inspect(pn, "fits")["State"]["OOMKilled"] is False


def test_fork_bomb_stops_at_the_pids_limit(pn: Pinnace, busybox: str) -> None:
    cid = pn("run", "-d", "--pids-limit", "30", busybox, "sh", "-c",
             "bomb() { bomb | bomb & }; bomb; sleep 60").stdout.strip()
    events = cgroup_file(cid, "pids.events")
    until(lambda: int(events.read_text().split()[-1]) > 0, what="a fork refused at pids.max")
    for _ in range(20):
        assert int(cgroup_file(cid, "pids.current").read_text()) <= 30
        time.sleep(0.05)
    pn("rm", "-f", cid)
    assert not cgroups.Cgroup(f"pinnace/{cid}").exists()


def test_cpu_spinner_stays_near_its_quota(pn: Pinnace, busybox: str) -> None:
    cid = pn("run", "-d", "--cpus", "0.5", busybox, "sh", "-c", SPIN).stdout.strip()
    time.sleep(0.3)
    used0, t0 = cpu_usage_ns(cid), time.monotonic()
    time.sleep(3)
    used1, t1 = cpu_usage_ns(cid), time.monotonic()
    share = (used1 - used0) / ((t1 - t0) * 1e9)
    # the quota caps it at half a CPU (plus one period of slack); a busy machine may give less
    assert 0.02 < share < 0.6, f"spinner used {share:.2f} CPUs with --cpus 0.5"


def test_bad_limits_are_one_line_and_leave_nothing(pn: Pinnace, busybox: str) -> None:
    cpus = os.cpu_count() or 1
    for flags, message in (
            (("--memory", "1k"), "minimum memory limit"),
            (("--memory", "lots"), "invalid size for --memory"),
            (("--memory", "64m", "--memory-swap", "32m"), "--memory-swap must be at least"),
            (("--memory-swap", "64m"), "needs --memory"),
            (("--cpus", str(cpus + 1)), "--cpus must be from 0.01"),
            (("--cpuset-cpus", f"0-{cpus + 3}"), "are not available"),
            (("--cpuset-cpus", "one"), "invalid --cpuset-cpus")):
        proc = pn("run", "--rm", *flags, busybox, "true", check=False)
        assert proc.returncode == 125, (flags, proc.stderr)
        assert proc.stderr.count("\n") == 1 and message in proc.stderr, (flags, proc.stderr)
    assert pn("ps", "-aq").stdout == ""


def test_stats(pn: Pinnace, busybox: str) -> None:
    pn("run", "-d", "--name", "spin", "--cpus", "0.5", "--memory", "64m", busybox, "sh", "-c",
       SPIN)
    pn("run", "-d", "--name", "idle", busybox, "sleep", "60")
    pn("run", "--name", "gone", busybox, "true")
    rows = {r["Name"]: r for r in map(json.loads, pn("stats", "--no-stream", "--format",
                                                     "json").stdout.splitlines())}
    assert set(rows) == {"spin", "idle"}  # running ones only
    spin, idle = rows["spin"], rows["idle"]
    assert spin["MemUsage"].endswith("/ 64MiB")
    assert 1.0 < float(spin["CPUPerc"].rstrip("%")) < 60.0, spin
    assert float(idle["CPUPerc"].rstrip("%")) < 5.0
    assert spin["PIDs"] == "1" and idle["PIDs"] == "1"
    table = pn("stats", "--no-stream", "idle").stdout.splitlines()
    assert table[0].split()[:3] == ["CONTAINER", "ID", "NAME"] and len(table) == 2
    assert "idle" in table[1]
    missing = pn("stats", "--no-stream", "nosuch", check=False)
    assert missing.returncode == 125 and "No such container: nosuch" in missing.stderr


def test_stats_streams_until_interrupted(pn: Pinnace, busybox: str) -> None:
    pn("run", "-d", "--name", "idle", busybox, "sleep", "60")
    proc = pn.popen("stats", "idle", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        lines = [proc.stdout.readline() for _ in range(4)]  # type: ignore[union-attr]
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=30)
    assert [line.split()[0] for line in lines] == ["CONTAINER", lines[1].split()[0]] * 2
    assert all("idle" in line for line in lines[1::2])
    assert code == 0
