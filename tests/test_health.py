"""Health checks run by the container's monitor through the exec path: the status flips
with the check's result, shows in ps and inspect, makes ``health_status`` events; the
image's HEALTHCHECK is used, and overridden or disabled by the flags."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import Pinnace


def health(pn: Pinnace, ref: str) -> dict | None:
    """``.State.Health`` of the container (None without a check, or before it exists)."""
    proc = pn("inspect", ref, check=False)
    return json.loads(proc.stdout)[0]["State"].get("Health") if proc.returncode == 0 else None


def until_status(pn: Pinnace, ref: str, wanted: str, timeout: float = 20) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = health(pn, ref)
        if found and found["Status"] == wanted:
            return found
        time.sleep(0.1)
    raise AssertionError(f"{ref} never became {wanted}: {health(pn, ref)}")


def ps_status(pn: Pinnace, ref: str) -> str:
    """The container's line of ``ps``."""
    return next(line for line in pn("ps").stdout.splitlines() if ref[:12] in line)


def test_check_flips_from_healthy_to_unhealthy(pn: Pinnace, busybox: str) -> None:
    cid = pn("run", "-d", "--restart", "always", "--health-cmd", "cat /ok && echo fine",
             "--health-interval", "200ms",
             "--health-retries", "2", "--health-timeout", "5s", busybox, "sh", "-c",
             "touch /ok; sleep 120").stdout.strip()
    assert health(pn, cid)["Status"] in ("starting", "healthy")
    found = until_status(pn, cid, "healthy")
    assert found["FailingStreak"] == 0
    assert found["Log"][-1]["ExitCode"] == 0 and found["Log"][-1]["Output"] == "fine\n"
    assert "(healthy)" in ps_status(pn, cid)
    pn("exec", cid, "rm", "/ok")
    found = until_status(pn, cid, "unhealthy")
    assert found["FailingStreak"] >= 2
    assert found["Log"][-1]["ExitCode"] == 1 and "No such file" in found["Log"][-1]["Output"]
    assert len(found["Log"]) <= 5
    assert "(unhealthy)" in ps_status(pn, cid)
    # docker does not restart an unhealthy container, whatever its policy: it keeps running
    time.sleep(0.5)
    inspected = json.loads(pn("inspect", cid).stdout)[0]
    assert inspected["State"]["Running"] and inspected["RestartCount"] == 0
    events = pn("events", "--since", "0", "--until", str(int(time.time()) + 1),
                "--filter", f"container={cid}", "--format", "{{.Action}}").stdout.split("\n")
    flips = [e for e in events if e.startswith("health_status")]
    assert flips == ["health_status: healthy", "health_status: unhealthy"]
    # healthy again once the file is back
    pn("exec", cid, "touch", "/ok")
    until_status(pn, cid, "healthy")


def test_check_timeout_and_start_period(pn: Pinnace, busybox: str) -> None:
    cid = pn("run", "-d", "--health-cmd", "sleep 10", "--health-interval", "100ms",
             "--health-timeout", "300ms", "--health-retries", "1", busybox,
             "sleep", "120").stdout.strip()
    found = until_status(pn, cid, "unhealthy")
    assert found["Log"][-1]["ExitCode"] == -1
    assert "exceeded timeout" in found["Log"][-1]["Output"]
    # failures during the start period do not count
    cid = pn("run", "-d", "--health-cmd", "false", "--health-interval", "100ms",
             "--health-retries", "1", "--health-start-period", "60s", busybox,
             "sleep", "120").stdout.strip()
    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline:
        assert health(pn, cid)["Status"] == "starting"
        time.sleep(0.1)
    found = health(pn, cid)
    assert found["Log"] and found["FailingStreak"] == 0


def test_image_healthcheck_used_overridden_and_disabled(pn: Pinnace, busybox_tar: Path) -> None:
    pn("import", "-c", "HEALTHCHECK --interval=200ms --retries=1 CMD test -e /ready",
       "-c", 'CMD ["sh"]', str(busybox_tar), "checked")
    config = json.loads(pn("image", "inspect", "checked").stdout)[0]["Config"]["Healthcheck"]
    assert config == {"Test": ["CMD-SHELL", "test -e /ready"], "Interval": 200_000_000,
                      "Retries": 1}
    cid = pn("run", "-d", "checked", "sleep", "120").stdout.strip()
    until_status(pn, cid, "unhealthy")
    pn("exec", cid, "touch", "/ready")
    until_status(pn, cid, "healthy")
    inspected = json.loads(pn("inspect", cid).stdout)[0]["Config"]["Healthcheck"]
    assert inspected["Test"] == ["CMD-SHELL", "test -e /ready"]
    # a flag replaces the image's command, keeping its interval
    other = pn("run", "-d", "--health-cmd", "true", "checked", "sleep", "120").stdout.strip()
    until_status(pn, other, "healthy", timeout=5)
    # --no-healthcheck: none at all
    none = pn("run", "-d", "--no-healthcheck", "checked", "sleep", "120").stdout.strip()
    time.sleep(0.6)
    assert health(pn, none) is None
    assert "(health" not in ps_status(pn, none)


def test_foreground_run_checks_too(pn: Pinnace, busybox: str) -> None:
    proc = pn.popen("run", "--name", "fg", "--health-cmd", "true", "--health-interval",
                    "100ms", busybox, "sleep", "3")
    try:
        until_status(pn, "fg", "healthy", timeout=10)
    finally:
        assert proc.wait(timeout=30) == 0


@pytest.mark.parametrize("args,message", [
    (("--health-interval", "soon"), "invalid duration for --health-interval"),
    (("--health-cmd", "true", "--no-healthcheck"), "conflicts with --health-"),
    (("--health-retries", "2"), "need a check"),
    (("--health-cmd", "true", "--health-retries", "-1"), "cannot be negative"),
])
def test_bad_health_flags(pn: Pinnace, busybox: str, args: tuple, message: str) -> None:
    proc = pn("run", "-d", *args, busybox, "true", check=False)
    assert proc.returncode == 125
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr
    assert pn("ps", "-aq").stdout == ""


def test_no_health_module_without_a_check() -> None:
    """A run without a check never imports the health modules (start-up time)."""
    code = ("import sys\n"
            "from pinnace.containers.options import RunOptions\n"
            "from pinnace.containers.record import RunPolicy, ContainerConfig\n"
            "import pinnace.engine, pinnace.monitor.detached, pinnace.monitor.foreground\n"
            "RunPolicy.from_dict(RunPolicy().to_dict())\n"
            "print([m for m in sys.modules if 'health' in m])\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"
