"""``update``: limits of a running container written into its cgroup at once, kept in the
state (inspect shows them, the next start applies them), and the restart policy."""

from __future__ import annotations

import json
import time

from conftest import Pinnace
from test_limits import cgroup_file

from pinnace.runtime import cgroups

MIB = 1024 * 1024


def host_config(pn: Pinnace, ref: str) -> dict:
    return json.loads(pn("inspect", ref).stdout)[0]["HostConfig"]


def memory_limit(cid: str) -> int:
    name = "memory.limit_in_bytes" if cgroups.version() == "v1" else "memory.max"
    return int(cgroup_file(cid, name).read_text())


def test_update_a_running_container(pn: Pinnace, busybox: str) -> None:
    cid = pn("run", "-d", "--memory", "64m", busybox, "sleep", "120").stdout.strip()
    assert pn("update", "--memory", "128m", "--cpus", "0.5", "--cpu-shares", "512",
              "--pids-limit", "33", "--cpuset-cpus", "0", cid).stdout.split() == [cid]
    assert cgroup_file(cid, "cpuset.cpus").read_text().strip() == "0"
    assert pn("exec", cid, "grep", "Cpus_allowed_list",
              "/proc/self/status").stdout.split()[-1] == "0"
    assert memory_limit(cid) == 128 * MIB  # raised above the old memory+swap (128m) too
    assert cgroup_file(cid, "pids.max").read_text().strip() == "33"
    if cgroups.version() == "v1":
        assert cgroup_file(cid, "cpu.cfs_quota_us").read_text().strip() == "50000"
        assert cgroup_file(cid, "cpu.shares").read_text().strip() == "512"
    else:
        assert cgroup_file(cid, "cpu.max").read_text().split() == ["50000", "100000"]
    # the container's own view: its process count is limited now
    assert "can't fork" in pn("exec", cid, "sh", "-c",
                              "for i in $(seq 40); do sleep 5 & done; wait",
                              check=False).stderr.replace("Resource temporarily unavailable",
                                                          "can't fork")
    config = host_config(pn, cid)
    assert (config["Memory"], config["MemorySwap"]) == (128 * MIB, 256 * MIB)
    assert (config["NanoCpus"], config["CpuShares"], config["PidsLimit"],
            config["CpusetCpus"]) == (500_000_000, 512, 33, "0")
    pn("update", "--memory", "32m", "--pids-limit", "-1", cid)  # lowered below the old one
    assert memory_limit(cid) == 32 * MIB
    assert cgroup_file(cid, "pids.max").read_text().strip() == "max"
    assert host_config(pn, cid)["PidsLimit"] is None
    # kept for the next start
    pn("restart", "-t", "0", cid)
    assert memory_limit(cid) == 32 * MIB
    events = pn("events", "--since", "0", "--until", str(int(time.time()) + 1), "--filter",
                "event=update", "--format", "{{.Action}}").stdout.split()
    assert events == ["update", "update"]


def test_update_restart_policy(pn: Pinnace, busybox: str) -> None:
    cid = pn("run", "-d", busybox, "sleep", "120").stdout.strip()
    pn("update", "--restart", "on-failure:3", cid)
    policy = host_config(pn, cid)["RestartPolicy"]
    assert policy == {"Name": "on-failure", "MaximumRetryCount": 3}


def test_update_errors(pn: Pinnace, busybox: str) -> None:
    cid = pn("run", "-d", "--rm", busybox, "sleep", "120").stdout.strip()
    before = pn("inspect", cid).stdout

    def fails(*args: str) -> str:
        proc = pn("update", *args, check=False)
        assert proc.returncode != 0
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: "), proc.stderr
        return lines[0]

    assert "one or more flags" in fails(cid)
    assert "AutoRemove" in fails("--restart", "always", cid)
    assert "minimum memory limit" in fails("--memory", "1k", cid)
    assert "invalid size for --memory" in fails("--memory", "lots", cid)
    assert "nope" in fails("--memory", "64m", "nope")
    assert pn("inspect", cid).stdout == before  # nothing changed by a refused update
