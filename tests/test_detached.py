"""Detached containers under their own monitor: run -d, lifecycle commands, restarts, faults."""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from pathlib import Path

import pytest
from conftest import Pinnace, host_leftovers

LOOP = "i=0; while true; do echo out $i; echo err $i >&2; i=$((i+1)); sleep 0.1; done"


def until(predicate, timeout: float = 20.0, what: str = "condition") -> None:  # type: ignore[no-untyped-def]
    """Poll ``predicate`` until it is true (these machines are slow, not wrong)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def inspect(pn: Pinnace, ref: str) -> dict:
    return json.loads(pn("inspect", ref).stdout)[0]


def status(pn: Pinnace, ref: str) -> str:
    return inspect(pn, ref)["State"]["Status"]


def test_run_d_outlives_the_cli_and_logs_both_streams(pn: Pinnace, busybox: str) -> None:
    cid = pn("run", "-d", "--name", "web", busybox, "sh", "-c", LOOP).stdout.strip()
    assert len(cid) == 64
    until(lambda: "out 3" in pn("logs", "web").stdout, what="output in the log")
    logs = pn("logs", "web")
    assert "out 0\n" in logs.stdout and "err" not in logs.stdout
    assert "err 0\n" in logs.stderr and "out" not in logs.stderr
    state = inspect(pn, "web")["State"]
    assert state["Running"] and state["Pid"] > 0
    assert os.path.exists(f"/proc/{state['Pid']}")
    ps = pn("ps").stdout
    assert "web" in ps and "Up" in ps
    # the json-file format, as docker writes it
    entry = json.loads(Path(inspect(pn, "web")["LogPath"]).read_text().splitlines()[0])
    assert set(entry) == {"log", "stream", "time"} and entry["time"].endswith("Z")


def test_exit_code_times_and_wait(pn: Pinnace, busybox: str) -> None:
    pn("run", "-d", "--name", "job", busybox, "sh", "-c", "sleep 0.3; exit 3")
    assert pn("wait", "job").stdout.strip() == "3"
    state = inspect(pn, "job")["State"]
    assert state["Status"] == "exited" and state["ExitCode"] == 3 and not state["Running"]
    assert state["StartedAt"] < state["FinishedAt"]
    assert "Exited (3)" in pn("ps", "-a").stdout


def test_stop_sends_term_then_kill(pn: Pinnace, busybox: str) -> None:
    pn("run", "-d", "--name", "polite", busybox, "sh", "-c",
       "trap 'echo bye; exit 3' TERM; while true; do sleep 0.1; done")
    pn("run", "-d", "--name", "stubborn", busybox, "sh", "-c", "while true; do sleep 0.1; done")
    until(lambda: status(pn, "polite") == "running" and status(pn, "stubborn") == "running")
    pn("stop", "-t", "5", "polite")
    assert inspect(pn, "polite")["State"]["ExitCode"] == 3
    assert "bye" in pn("logs", "polite").stdout
    pn("stop", "-t", "1", "stubborn")  # sh as PID 1 ignores SIGTERM: killed after 1 s
    assert inspect(pn, "stubborn")["State"]["ExitCode"] == 137
    pn("stop", "stubborn")  # stopping a stopped container is fine, as with docker


def test_stop_of_several_shares_the_grace_period(pn: Pinnace, busybox: str) -> None:
    """``stop a b``: both get SIGTERM at once and SIGKILL when the one grace period ends
    (one after the other, the second would die a whole grace period after the first);
    an unknown name among them is one error line, the others still stop."""
    from datetime import datetime

    for name in ("s1", "s2"):
        pn("run", "-d", "--name", name, busybox, "sh", "-c", "while true; do sleep 0.1; done")
    until(lambda: status(pn, "s1") == "running" and status(pn, "s2") == "running")
    proc = pn("stop", "-t", "3", "s1", "nosuch", "s2", check=False)
    assert proc.returncode != 0 and proc.stdout.split() == ["s1", "s2"]
    assert proc.stderr.strip() == "Error: No such container: nosuch"
    finished = [datetime.fromisoformat(inspect(pn, name)["State"]["FinishedAt"]
                                       .replace("Z", "+00:00")) for name in ("s1", "s2")]
    assert [inspect(pn, name)["State"]["ExitCode"] for name in ("s1", "s2")] == [137, 137]
    assert abs((finished[0] - finished[1]).total_seconds()) < 3


def test_start_restart_and_kill_with_a_signal(pn: Pinnace, busybox: str) -> None:
    pn("run", "-d", "--name", "svc", busybox, "sh", "-c",
       "trap 'echo got-hup' HUP; echo started; while true; do sleep 0.1; done")
    until(lambda: "started" in pn("logs", "svc").stdout)
    pn("kill", "-s", "HUP", "svc")
    until(lambda: "got-hup" in pn("logs", "svc").stdout, what="HUP handled")
    assert status(pn, "svc") == "running"
    pn("kill", "svc")
    until(lambda: status(pn, "svc") == "exited")
    assert inspect(pn, "svc")["State"]["ExitCode"] == 137
    pn("start", "svc")
    assert status(pn, "svc") == "running"
    first_pid = inspect(pn, "svc")["State"]["Pid"]
    pn("restart", "-t", "1", "svc")
    assert status(pn, "svc") == "running"
    assert inspect(pn, "svc")["State"]["Pid"] != first_pid
    assert pn("logs", "svc").stdout.count("started") == 3
    out = pn("start", "svc", check=False)
    assert out.returncode == 125 and "already running" in out.stderr


def test_restart_on_failure_counts_and_stops(pn: Pinnace, busybox: str) -> None:
    pn("run", "-d", "--name", "flaky", "--restart", "on-failure:3", busybox,
       "sh", "-c", "echo try; exit 1")
    until(lambda: inspect(pn, "flaky")["RestartCount"] == 3 and status(pn, "flaky") == "exited"
          and pn("logs", "flaky").stdout.count("try") == 4, what="three restarts")
    time.sleep(1)
    assert inspect(pn, "flaky")["RestartCount"] == 3
    assert inspect(pn, "flaky")["State"]["ExitCode"] == 1
    pn("run", "-d", "--name", "fine", "--restart", "on-failure", busybox, "true")
    assert pn("wait", "fine").stdout.strip() == "0"
    time.sleep(0.5)
    assert inspect(pn, "fine")["RestartCount"] == 0


def test_restart_always_until_stopped(pn: Pinnace, busybox: str) -> None:
    pn("run", "-d", "--name", "loop", "--restart", "always", busybox, "sh", "-c",
       "echo run; sleep 0.2")
    until(lambda: inspect(pn, "loop")["RestartCount"] >= 2, what="restarts")
    pn("stop", "-t", "1", "loop")
    count = inspect(pn, "loop")["RestartCount"]
    time.sleep(1.5)
    assert status(pn, "loop") == "exited" and inspect(pn, "loop")["RestartCount"] == count


def test_pause_freezes_and_unpause_thaws(pn: Pinnace, busybox: str) -> None:
    pn("run", "-d", "--name", "tick", busybox, "sh", "-c", LOOP)
    until(lambda: "out 2" in pn("logs", "tick").stdout)
    pn("pause", "tick")
    assert status(pn, "tick") == "paused" and "(Paused)" in pn("ps").stdout
    before = pn("logs", "tick").stdout.count("\n")
    time.sleep(0.6)
    assert pn("logs", "tick").stdout.count("\n") == before
    out = pn("exec", "tick", "true", check=False)
    assert out.returncode != 0 and "paused" in out.stderr
    pn("unpause", "tick")
    until(lambda: pn("logs", "tick").stdout.count("\n") > before, what="output after unpause")
    assert pn("unpause", "tick", check=False).returncode == 125


def test_rename_top_rm_f_and_prune(pn: Pinnace, busybox: str, root: Path) -> None:
    pn("run", "-d", "--name", "a", busybox, "sh", "-c", "sleep 60")
    pn("run", "--name", "done", busybox, "true")
    pn("rename", "a", "b")
    assert inspect(pn, "b")["Name"] == "/b"
    assert pn("rename", "b", "done", check=False).returncode == 125
    top = pn("top", "b").stdout
    assert "sleep 60" in top and "PID" in top.splitlines()[0]
    assert "sleep 60" in pn("container", "top", "b").stdout
    out = pn("container", "prune", "-f").stdout
    assert "Total: 1" in out
    assert pn("ps", "-aq").stdout.split() == [inspect(pn, "b")["Id"][:12]]
    pid = inspect(pn, "b")["State"]["Pid"]
    pn("rm", "-f", "b")
    until(lambda: not os.path.exists(f"/proc/{pid}"))
    assert pn("ps", "-aq").stdout == ""
    assert host_leftovers(root) == []


def test_kill_9_of_the_monitor_reports_unknown_exit_and_leaks_nothing(
        pn: Pinnace, busybox: str, root: Path) -> None:
    cid = pn("run", "-d", "--name", "orphan", busybox, "sleep", "60").stdout.strip()
    pid = inspect(pn, "orphan")["State"]["Pid"]
    monitor = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    until(lambda: "watch.py" in Path(f"/proc/{monitor}/cmdline").read_text(),
          what="the monitor to exec the watcher after its first watch")
    os.kill(monitor, signal.SIGKILL)
    until(lambda: not os.path.exists(f"/proc/{pid}"), what="the container to die with its monitor")
    assert "Exited (unknown)" in pn("ps", "-a").stdout
    assert not any(Path("/sys/fs/cgroup").glob(f"*/pinnace/{cid}"))
    assert not (root / "run" / "netns" / cid).exists()
    assert host_leftovers(root) == []
    pn("start", "orphan")  # and it can run again
    assert status(pn, "orphan") == "running"


def test_wiped_runtime_dir_as_after_a_reboot(pn: Pinnace, busybox: str, root: Path) -> None:
    pn("run", "-d", "--name", "r1", busybox, "sleep", "60")
    pn("run", "-d", "--name", "r2", busybox, "sleep", "60")
    for name in ("r1", "r2"):  # a reboot: every process gone ...
        pid = inspect(pn, name)["State"]["Pid"]
        monitor = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        os.kill(monitor, signal.SIGKILL)
        until(lambda pid=pid: not os.path.exists(f"/proc/{pid}"))
    for ns in (root / "run" / "netns").iterdir():  # ... and /run empty
        os.system(f"umount {ns} 2>/dev/null")
    shutil.rmtree(root / "run")
    ps = pn("ps", "-a").stdout
    assert ps.count("Exited") == 2 and "Up" not in ps
    pn("start", "r1")
    assert status(pn, "r1") == "running"


@pytest.mark.parametrize("command", [("stop",), ("rm",), ("exec", "true"), ("kill",),
                                     ("logs",), ("start",), ("inspect",), ("pause",)])
def test_unknown_container_is_one_line(pn: Pinnace, busybox: str, command: tuple[str, ...]) -> None:
    args = [command[0], "nosuch", *command[1:]]
    out = pn(*args, check=False)
    assert out.returncode in (1, 125)
    assert out.stderr.strip().count("\n") == 0
    assert "nosuch" in out.stderr


def test_exec_kill_pause_on_a_stopped_container(pn: Pinnace, busybox: str) -> None:
    pn("run", "--name", "gone", busybox, "true")
    for args in (("exec", "gone", "true"), ("kill", "gone"), ("pause", "gone")):
        out = pn(*args, check=False)
        assert out.returncode == 125 and out.stderr.count("\n") == 1, out.stderr
        assert "gone" in out.stderr


def test_bad_restart_policy_and_log_opt_create_nothing(pn: Pinnace, busybox: str) -> None:
    for args in (("--restart", "sometimes"), ("--restart", "always:3"),
                 ("--log-opt", "max-size=lots"), ("--log-opt", "colour=red"),
                 ("--rm", "--restart", "always")):
        out = pn("run", "-d", *args, busybox, "true", check=False)
        assert out.returncode == 125 and out.stderr.startswith("Error: ")
    assert pn("ps", "-aq").stdout == ""


def test_run_d_rm_removes_the_container_when_it_exits(pn: Pinnace, busybox: str,
                                                      root: Path) -> None:
    pn("run", "-d", "--rm", "--name", "brief", busybox, "sh", "-c", "sleep 0.5")
    assert "brief" in pn("ps", "-a").stdout
    until(lambda: "brief" not in pn("ps", "-a").stdout, what="auto-removal")
    assert host_leftovers(root) == []
    assert not list((root / "containers").iterdir())  # its log went with it


def test_the_watcher_goes_on_with_the_monitors_log_and_attached_clients(
        pn: Pinnace, busybox: str) -> None:
    """The monitor watches a container for its first second, then execs the slim watcher:
    a line begun before, a client attached before and the exit after all carry over."""
    from pinnace.client import Client
    from pinnace.monitor.detached import FIRST_WATCH
    from pinnace.runtime.watch import frames

    script = f"printf be; sleep {FIRST_WATCH + 0.5}; echo fore; sleep 0.3; echo after; exit 3"
    cid = pn("run", "-d", busybox, "sh", "-c", script).stdout.strip()
    monitor = Client(root=pn.root).attach(cid)
    received = b""
    with monitor:
        while chunk := monitor.recv(65536):
            received += chunk
    payload = b"".join(data for _, data in frames(received)[0])
    assert payload.endswith(b"fore\nafter\n")
    assert pn("wait", cid).stdout.strip() == "3"
    assert pn("logs", cid).stdout == "before\nafter\n"


def test_a_short_run_is_logged_recorded_and_removed(pn: Pinnace, busybox: str, root: Path) -> None:
    """A container that exits within the first watch is finished, auto-removed and its
    output logged by the monitor that started it."""
    cid = pn("run", "-d", busybox, "sh", "-c", "echo quick; exit 4").stdout.strip()
    assert pn("wait", cid).stdout.strip() == "4"
    assert pn("logs", cid).stdout == "quick\n"
    assert pn("inspect", "--format", "{{.State.Status}}", cid).stdout.strip() == "exited"
    pn("run", "-d", "--rm", busybox, "true")
    until(lambda: pn("ps", "-aq").stdout.split() == [cid[:12]],
          what="the --rm container to be removed")
    assert host_leftovers(root) == []


def test_the_watcher_is_handed_only_the_streams_still_open(pn: Pinnace, busybox: str) -> None:
    """A container that closed its output within the monitor's first watch and runs on:
    the watcher goes on without those streams, and records its exit."""
    from pinnace.monitor.detached import FIRST_WATCH

    cid = pn("run", "-d", busybox, "sh", "-c",
             f"echo gone; exec >&- 2>&-; sleep {FIRST_WATCH + 0.5}; exit 5").stdout.strip()
    assert pn("wait", cid).stdout.strip() == "5"
    assert pn("logs", cid).stdout == "gone\n"
