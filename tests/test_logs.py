"""``pinnace logs``: tail, timestamps, time windows, follow, rotation."""

from __future__ import annotations

import json
import time
from pathlib import Path

from conftest import Pinnace
from test_detached import inspect, until


def test_tail_timestamps_and_foreground_runs_are_logged(pn: Pinnace, busybox: str) -> None:
    out = pn("run", "--name", "fg", busybox, "sh", "-c", "for i in 1 2 3 4 5; do echo l$i; done")
    assert out.stdout.split() == ["l1", "l2", "l3", "l4", "l5"]  # shown in the foreground ...
    assert pn("logs", "fg").stdout.split() == ["l1", "l2", "l3", "l4", "l5"]  # ... and logged
    assert pn("logs", "--tail", "2", "fg").stdout.split() == ["l4", "l5"]
    assert pn("logs", "-n", "0", "fg").stdout == ""
    stamped = pn("logs", "-t", "--tail", "1", "fg").stdout
    stamp, _, text = stamped.partition(" ")
    assert text == "l5\n" and stamp.endswith("Z") and stamp[:2] == "20"
    assert pn("logs", "--tail", "x", "fg", check=False).returncode == 125


def test_since_and_until(pn: Pinnace, busybox: str) -> None:
    pn("run", "--name", "slow", busybox, "sh", "-c", "echo early; sleep 1.2; echo late")
    stamps = [line.split(" ", 1) for line in pn("logs", "-t", "slow").stdout.splitlines()]
    late_time = stamps[1][0]
    assert pn("logs", "--since", late_time, "slow").stdout == "late\n"
    assert pn("logs", "--until", late_time, "slow").stdout == "early\n"
    assert pn("logs", "--since", "1h", "slow").stdout == "early\nlate\n"
    assert pn("logs", "--since", str(time.time() + 60), "slow").stdout == ""
    bad = pn("logs", "--since", "yesterday-ish", "slow", check=False)
    assert bad.returncode == 125 and "invalid time" in bad.stderr


def test_follow_prints_new_lines_and_ends_with_the_container(pn: Pinnace, busybox: str) -> None:
    pn("run", "-d", "--name", "f", busybox, "sh", "-c",
       "echo one; sleep 1; echo two; sleep 1; echo three")
    proc = pn.popen("logs", "-f", "f", stdout=-1, stderr=-1)
    out, _ = proc.communicate(timeout=60)
    assert out.split() == ["one", "two", "three"]
    assert proc.returncode == 0


def test_rotation_by_size_keeps_max_files(pn: Pinnace, busybox: str) -> None:
    pn("run", "--name", "big", "--log-opt", "max-size=2k", "--log-opt", "max-file=3", busybox,
       "sh", "-c", "i=0; while [ $i -lt 400 ]; do echo line-$i; i=$((i+1)); done")
    log = Path(inspect(pn, "big")["LogPath"])
    files = sorted(p.name for p in log.parent.glob("json.log*"))
    assert files == ["json.log", "json.log.1", "json.log.2"]
    for f in log.parent.glob("json.log*"):
        assert f.stat().st_size <= 2048
        for line in f.read_text().splitlines():
            json.loads(line)
    lines = pn("logs", "big").stdout.split()
    assert lines[-1] == "line-399"
    assert lines == [f"line-{i}" for i in range(400 - len(lines), 400)]  # the newest, in order
    assert pn("logs", "--tail", "3", "big").stdout.split() == ["line-397", "line-398", "line-399"]


def test_partial_lines_and_tty_output(pn: Pinnace, busybox: str) -> None:
    pn("run", "--name", "p", busybox, "sh", "-c", "printf 'no newline'")
    assert pn("logs", "p").stdout == "no newline"
    pn("run", "-d", "-t", "--name", "t", busybox, "sh", "-c", "echo hi; tty")
    until(lambda: inspect(pn, "t")["State"]["Status"] == "exited")
    out = pn("logs", "t")
    assert "hi" in out.stdout and "/dev/pts/0" in out.stdout and out.stderr == ""
    raw = [json.loads(line) for line in Path(inspect(pn, "t")["LogPath"]).read_text().splitlines()]
    assert raw[0]["log"] == "hi\r\n" and {e["stream"] for e in raw} == {"stdout"}  # a pty's CRLF
