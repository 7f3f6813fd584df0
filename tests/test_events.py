"""``pinnace events``: the recorded events of containers, images and networks, filtered,
formatted, and followed live until Ctrl-C or SIGTERM."""

from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import Pinnace

from pinnace.cli.events import Actor, EventRow, event_filter, point_in_time, row_of
from pinnace.errors import InvalidConfig
from pinnace.events import Event, last_id, read
from pinnace.state import State

NOW = 1_700_000_000.0


def test_points_in_time() -> None:
    assert point_in_time("2023-11-14T22:13:20Z", "--since", NOW) == NOW
    assert point_in_time("2023-11-14T22:13:20.5+00:00", "--since", NOW) == NOW + 0.5
    assert point_in_time("2023-11-14T23:13:20.250000000+01:00", "--since", NOW) == NOW + 0.25
    assert point_in_time("1700000000", "--since", 0) == NOW
    assert point_in_time("1700000000.5", "--since", 0) == NOW + 0.5
    assert point_in_time("10m", "--since", NOW) == NOW - 600
    assert point_in_time("1h30m", "--since", NOW) == NOW - 5400
    assert point_in_time("1.5s", "--until", NOW) == NOW - 1.5
    assert point_in_time("0s", "--until", NOW) == NOW
    for bad in ("yesterday", "10x", "", "2023-13-45T00:00:00Z", "-5m"):
        with pytest.raises(InvalidConfig, match=r"invalid --since .*: expected an RFC 3339"):
            point_in_time(bad, "--since", NOW)


def row(type_: str, action: str, actor: str, **attrs: str) -> EventRow:
    return EventRow(type_, action, Actor(actor, attrs), actor, "local", "")


CID = "c0ffee" + "0" * 58
IMG = "sha256:" + "ab" * 32


@pytest.mark.parametrize(("filters", "event", "expected"), [
    (["type=container"], row("container", "start", CID), True),
    (["type=image"], row("container", "start", CID), False),
    (["type=image", "type=container"], row("container", "start", CID), True),
    (["event=start"], row("container", "start", CID), True),
    (["event=die"], row("container", "start", CID), False),
    (["container=web"], row("container", "start", CID, name="web"), True),
    (["container=c0ffee"], row("container", "start", CID), True),
    (["container=" + CID[:12]], row("container", "start", CID), True),
    (["container=db"], row("container", "start", CID, name="web"), False),
    (["container=web"], row("network", "create", CID, name="web"), False),
    (["image=busybox"], row("container", "create", CID, image="busybox"), True),
    (["image=busybox:latest"], row("container", "create", CID, image="busybox:latest"), True),
    (["image=busybox"], row("container", "create", CID, image="busybox:latest"), True),
    (["image=abab"], row("image", "tag", IMG, name="x:1"), True),
    (["image=x:1"], row("image", "tag", IMG, name="x:1"), True),
    (["image=alpine"], row("image", "tag", IMG, name="x:1"), False),
    (["network=spare"], row("network", "create", "n" * 64, name="spare"), True),
    (["label=tier"], row("container", "start", CID, tier="front"), True),
    (["label=tier=front"], row("container", "start", CID, tier="front"), True),
    (["label=tier=back"], row("container", "start", CID, tier="front"), False),
    (["type=container", "event=die"], row("container", "start", CID), False),
])
def test_filters(filters: list[str], event: EventRow, expected: bool) -> None:
    assert event_filter(filters)(event) is expected


def test_bad_filters_are_one_line_errors() -> None:
    for bad in ("type", "=x"):
        with pytest.raises(InvalidConfig, match=r"invalid filter .*: expected KEY=VALUE$"):
            event_filter([bad])
    with pytest.raises(InvalidConfig, match=r"invalid filter 'colour' for events \(known: "
                                            r"container, event, image, label, network, type\)"):
        event_filter(["colour=red"])


def test_reading_the_state(tmp_path: Path) -> None:
    state = State(tmp_path / "state.db")
    assert last_id(state) == 0 and read(state) == []
    state.event("container", "create", CID, image="busybox")
    state.event("container", "start", CID)
    state.event("network", "create", "n1", name="spare")
    events = read(state)
    assert [(e.type, e.action) for e in events] == [("container", "create"),
                                                    ("container", "start"),
                                                    ("network", "create")]
    assert events[0].attributes == {"image": "busybox"}
    assert last_id(state) == events[-1].id
    assert [e.action for e in read(state, after=events[0].id)] == ["start", "create"]
    assert read(state, since=time.time() + 60) == []
    assert len(read(state, until=time.time() + 1)) == 3
    assert read(state, until=events[0].time - 1) == []
    shown = row_of(events[1], {CID: "web"})
    assert shown.Actor.Attributes == {"name": "web"} and shown.Type == "container"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z", shown.Time)
    assert row_of(Event(9, NOW, "image", "tag", IMG, {}), {CID: "web"}).Actor.Attributes == {}
    state.close()


@pytest.fixture
def history(pn: Pinnace, busybox: str) -> Pinnace:
    """An import, a container ``one`` that ran, and one ``two`` that was removed."""
    pn("run", "--net=none", "--name", "one", busybox, "true")
    pn("run", "--net=none", "--name", "two", busybox, "sh", "-c", "exit 3", check=False)
    pn("rm", "two")
    return pn


def past(pn: Pinnace, *args: str) -> list[str]:
    return pn("events", "--since", "10m", "--until", "0s", *args).stdout.splitlines()


def test_past_events_filtered_and_formatted(history: Pinnace) -> None:
    lines = past(history)
    assert len(lines) == 8
    assert re.fullmatch(r"\S+Z image import sha256:[0-9a-f]{64} \(name=busybox:latest\)",
                        lines[0])
    assert re.fullmatch(r"\S+Z container create [0-9a-f]{64} \(image=busybox:latest, "
                        r"name=one\)", lines[1])
    actions = past(history, "--format", "{{.Type}} {{.Action}} {{.Actor.Attributes.name}}",
                   "--filter", "container=one")
    assert actions == ["container create one", "container start one", "container die one"]
    assert past(history, "--filter", "event=die", "--format",
                "{{index .Actor.Attributes \"exit_code\"}}") == ["0", "3"]
    assert past(history, "--filter", "type=container", "--filter", "event=destroy",
                "--format", "{{.Action}}") == ["destroy"]
    assert past(history, "--filter", "container=two", "--format", "{{.Action}}") == [
        "create", "start", "die", "destroy"]
    assert past(history, "-f", "type=image", "--format", "{{.Action}}") == ["import"]
    assert past(history, "-f", "image=busybox", "--format", "{{.Type}}:{{.Action}}") == [
        "image:import", "container:create", "container:create"]
    rows = [json.loads(line) for line in past(history, "--format", "json")]
    assert [r["Action"] for r in rows] == ["import", "create", "start", "die", "create",
                                           "start", "die", "destroy"]
    assert {r["Actor"]["Attributes"].get("name") for r in rows[4:]} == {"two"}  # removed
    assert all(isinstance(r["Time"], str) and r["Time"].endswith("Z") for r in rows)
    assert list(rows[1]) == ["Type", "Action", "Actor", "ID", "Scope", "Time"]
    # a window with nothing in it
    assert history("events", "--since", str(time.time() + 3600), "--until", "0s").stdout == ""
    assert history("events", "--since", "1970-01-01T00:00:00Z", "--until",
                   "1970-01-01T00:00:01Z").stdout == ""


def test_bad_options_are_one_line_errors(pn: Pinnace) -> None:
    proc = pn("events", "--since", "soon", check=False)
    assert proc.returncode == 125 and proc.stderr.count("\n") == 1
    assert proc.stderr.startswith("Error: invalid --since 'soon': expected an RFC 3339")
    proc = pn("events", "--filter", "colour=red", "--until", "0s", check=False)
    assert proc.returncode == 125 and "invalid filter 'colour' for events" in proc.stderr
    proc = pn("events", "--format", "{{.Nope", "--until", "0s", check=False)
    assert proc.returncode == 125
    assert proc.stderr == "Error: --format: 1: unclosed action\n"


class Lines:
    """Lines of a process's stdout as they come (select on the descriptor itself: a
    buffered reader would hide lines it has already read ahead)."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        self.fd, self.buffer = proc.stdout.fileno(), b""

    def next(self, timeout: float = 30) -> str:
        """The next line (failing after ``timeout`` seconds without one)."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buffer:
            ready, _, _ = select.select([self.fd], [], [], max(0, deadline - time.monotonic()))
            assert ready, f"no event printed in time (so far {self.buffer!r})"
            chunk = os.read(self.fd, 4096)
            assert chunk, f"stdout closed (so far {self.buffer!r})"
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line.decode()


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_follows_new_events_until_stopped(pn: Pinnace, busybox: str,
                                          stop: signal.Signals) -> None:
    pn("run", "--net=none", "--name", "before", busybox, "true")
    watcher = subprocess.Popen(pn.argv("events", "--filter", "type=container", "--format",
                                       "{{.Action}} {{.Actor.Attributes.name}}"),
                               env=pn.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        lines = Lines(watcher)
        time.sleep(1)  # it starts after the events so far: "before" is not shown
        pn("run", "--net=none", "--name", "live", busybox, "true")
        assert [lines.next() for _ in range(3)] == ["create live", "start live", "die live"]
        pn("rm", "live")
        assert lines.next() == "destroy live"
        watcher.send_signal(stop)
        out, err = watcher.communicate(timeout=10)
        assert watcher.returncode == 0 and err == b"" and out == b"" and lines.buffer == b""
    finally:
        if watcher.poll() is None:
            watcher.kill()
            watcher.wait()
