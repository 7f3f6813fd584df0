"""``--filter`` on ``ps``, ``images``, ``network ls`` and ``volume ls`` with docker's keys
and rules (values of one key OR-ed, keys AND-ed), on real containers, images, networks
and volumes; each bad filter a one-line error."""

from __future__ import annotations

import time

import pytest
from conftest import Pinnace


def fails(pn: Pinnace, *args: str) -> str:
    """The one-line error of a command that must fail with 125."""
    proc = pn(*args, check=False)
    assert proc.returncode == 125, proc
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), proc.stderr
    return lines[0]


def names(pn: Pinnace, *args: str) -> list[str]:
    return sorted(pn("ps", "-a", "--format", "{{.Names}}", *args).stdout.split())


@pytest.fixture
def three(pn: Pinnace, busybox: str) -> Pinnace:
    """``one`` (exited 0, label tier=web), ``two`` (exited 3, tier=db) and ``three``
    (running, tier=web, on volume ``data``), made in that order."""
    pn("run", "--name", "one", "-l", "tier=web", "-l", "solo", busybox, "true")
    time.sleep(0.05)
    assert pn("run", "--name", "two", "--label", "tier=db", busybox, "sh", "-c", "exit 3",
              check=False).returncode == 3
    time.sleep(0.05)
    pn("run", "-d", "--name", "three", "-l", "tier=web", "-v", "data:/data", busybox,
       "sleep", "600")
    return pn


def test_ps_filters(three: Pinnace) -> None:
    pn = three
    assert names(pn, "-f", "label=tier=web") == ["one", "three"]
    assert names(pn, "-f", "label=tier") == ["one", "three", "two"]
    assert names(pn, "-f", "label=solo") == ["one"]
    assert names(pn, "-f", "label!=tier=web") == ["two"]
    # one key twice: either; two keys: both
    assert names(pn, "-f", "name=one", "-f", "name=two") == ["one", "two"]
    assert names(pn, "-f", "label=tier=web", "-f", "status=exited") == ["one"]
    assert names(pn, "-f", "name=^t") == ["three", "two"]
    assert names(pn, "-f", "exited=3") == ["two"]
    assert names(pn, "-f", "exited=0") == ["one"]
    assert names(pn, "-f", "status=running") == ["three"]
    # a status filter lists stopped containers without -a, as docker's does
    assert sorted(pn("ps", "--format", "{{.Names}}", "-f", "status=exited").stdout.split()) \
        == ["one", "two"]
    assert names(pn, "-f", "before=two") == ["one"]
    assert names(pn, "-f", "since=one") == ["three", "two"]
    assert names(pn, "-f", "ancestor=busybox:latest") == ["one", "three", "two"]
    assert names(pn, "-f", "ancestor=other") == []
    assert names(pn, "-f", "volume=data") == ["three"]
    assert names(pn, "-f", "volume=/data") == ["three"]
    assert names(pn, "-f", "health=none") == ["one", "three", "two"]
    assert names(pn, "-f", "health=healthy") == []
    cid = pn("ps", "-aq", "--no-trunc", "-f", "name=three").stdout.strip()
    assert names(pn, "-f", f"id={cid[:6]}") == ["three"]
    assert pn("ps", "-q", "-f", "label=tier=db").stdout == ""  # exited: not without -a


def test_ps_bad_filters(three: Pinnace) -> None:
    pn = three
    assert "invalid filter 'colour' for ps" in fails(pn, "ps", "-f", "colour=red")
    assert "expected KEY=VALUE" in fails(pn, "ps", "-f", "status")
    assert "expected one of" in fails(pn, "ps", "-f", "status=sleeping")
    assert "expected an exit code" in fails(pn, "ps", "-f", "exited=x")
    assert "no such container" in fails(pn, "ps", "-f", "before=nobody").lower()
    assert "invalid filter 'name=(('" in fails(pn, "ps", "-f", "name=((")
    assert "expected PORT" in fails(pn, "ps", "-f", "publish=http")


def test_images_filters_and_repository(pn: Pinnace, busybox: str) -> None:
    pn("tag", busybox, "busybox:old")
    pn("tag", busybox, "app:1")
    pn("commit", "-c", "LABEL tier=web", pn("create", busybox, "true").stdout.strip(),
       "web:2")

    def repos(*args: str) -> list[str]:
        return sorted(pn("images", "--format", "{{.Repository}}:{{.Tag}}", *args)
                      .stdout.split())

    assert repos("busybox") == ["busybox:latest", "busybox:old"]
    assert repos("busybox:old") == ["busybox:old"]
    assert repos("-f", "reference=busy*") == ["busybox:latest", "busybox:old"]
    assert repos("-f", "reference=app", "-f", "reference=web") == ["app:1", "web:2"]
    assert repos("-f", "label=tier=web") == ["web:2"]
    assert repos("-f", "label!=tier") == ["app:1", "busybox:latest", "busybox:old"]
    assert repos("-f", "dangling=true") == []
    assert repos("-f", "since=busybox:latest") == ["web:2"]
    assert repos("-f", "before=web:2") == ["app:1", "busybox:latest", "busybox:old"]
    assert repos("nothing") == []
    assert "invalid filter 'size' for images" in fails(pn, "images", "-f", "size=1")
    assert "expected true or false" in fails(pn, "images", "-f", "dangling=maybe")


def test_network_and_volume_filters(pn: Pinnace, busybox: str) -> None:
    pn("network", "create", "--label", "env=test", "front")
    pn("network", "create", "back")
    pn("volume", "create", "-l", "env=test", "v1")
    pn("volume", "create", "v2")
    pn("create", "--name", "user", "--network", "front", "-v", "v2:/v", busybox, "true")

    def nets(*args: str) -> list[str]:
        return sorted(pn("network", "ls", "-q", *args).stdout.split())

    def vols(*args: str) -> list[str]:
        return sorted(pn("volume", "ls", "-q", *args).stdout.split())

    assert nets("-f", "label=env=test") == ["front"]
    default = "pinnace0"  # the bridge driver's own network, made when a network first is
    assert nets("-f", "label!=env") == ["back", default]
    assert nets("-f", "name=fr", "-f", "name=ba") == ["back", "front"]
    assert nets("-f", "dangling=true", "-f", "type=custom") == ["back"]
    assert nets("-f", "type=custom", "-f", "driver=bridge") == ["back", "front"]
    assert nets("-f", "type=builtin") == [default]
    front_id = pn("network", "inspect", "-f", "{{.Id}}", "front").stdout.strip()
    assert nets("-f", f"id={front_id[:8]}") == ["front"]
    assert pn("network", "inspect", "-f", "{{json .Labels}}", "front").stdout.strip() == \
        '{"env":"test"}'
    assert vols("-f", "label=env=test") == ["v1"]
    assert vols("-f", "dangling=true") == ["v1"]
    assert vols("-f", "dangling=false") == ["v2"]
    assert "invalid filter 'scope' for network ls" in fails(pn, "network", "ls", "-f",
                                                           "scope=local")
    assert "expected one of" in fails(pn, "network", "ls", "-f", "type=other")
    assert "invalid filter 'until' for volume ls" in fails(pn, "volume", "ls", "-f",
                                                          "until=1h")
