"""A docker user's working day, one command after another as the docker documentation's
examples type them, against pinnace: a web service with a volume, an env file and
labels, looked at with filters and templates, files copied in and out, changes
listed, cleaned up with prune at the end of the day."""

from __future__ import annotations

import json
import time
from pathlib import Path

from conftest import Pinnace

from pinnace.testing.netns import http_get


def test_a_working_day(npn: Pinnace, busybox: str, netns: Path, tmp_path: Path) -> None:
    day_began = time.time() - 1
    env = tmp_path / "web.env"
    env.write_text("# the service's settings\nGREETING=hello from the env file\n\nTIER\n")
    npn.env["TIER"] = "frontend"

    # docker volume create; docker run -d --name -v -p --env-file -l
    npn("volume", "create", "site")
    npn("run", "--rm", "--env-file", str(env), "-v", "site:/www", busybox, "sh", "-c",
        'echo "$GREETING ($TIER)" > /www/index.html')
    web = npn("run", "-d", "--name", "web", "-v", "site:/www:ro", "-p", "8080:80",
              "--env-file", str(env), "-l", "com.example.tier=frontend",
              "-l", "com.example.owner=ops", "--net=bridge", busybox,
              "httpd", "-f", "-p", "80", "-h", "/www").stdout.strip()
    npn("run", "-d", "--name", "worker", "-l", "com.example.tier=backend", "--net=none",
        busybox, "sleep", "600")

    # docker ps --filter / --format; docker inspect -f; docker port
    assert npn("ps", "--filter", "label=com.example.tier=frontend", "--format",
               "{{.Names}}").stdout.split() == ["web"]
    assert sorted(npn("ps", "--format", "{{.Names}}: {{.Label \"com.example.tier\"}}")
                  .stdout.splitlines()) == ["web: frontend", "worker: backend"]
    assert npn("ps", "-q", "--no-trunc", "--filter", "name=web").stdout.split() == [web]
    assert npn("inspect", "-f", "{{.State.Status}} {{.Config.Labels}}", "web").stdout \
        .startswith("running map[")
    assert npn("port", "web").stdout.strip() == "80/tcp -> 0.0.0.0:8080"
    table = npn("ps", "--format", "table {{.Names}}\t{{.Ports}}").stdout.splitlines()
    assert table[0].split() == ["NAMES", "PORTS"]
    assert "0.0.0.0:8080->80/tcp" in next(line for line in table if line.startswith("web"))

    # the service answers on the published port, with what the env file said
    reply = http_get(netns, "127.0.0.1", 8080)
    assert "hello from the env file (frontend)" in reply

    # docker exec; docker cp both ways; docker diff
    assert npn("exec", "web", "sh", "-c", "echo $TIER").stdout.strip() == "frontend"
    notes = tmp_path / "notes.txt"
    notes.write_text("remember the milk\n")
    npn("cp", str(notes), "web:/tmp/notes.txt")
    npn("cp", "web:/tmp/notes.txt", str(tmp_path / "back.txt"))
    assert (tmp_path / "back.txt").read_text() == "remember the milk\n"
    assert "A /tmp/notes.txt" in npn("diff", "web").stdout.splitlines()

    # docker logs; docker events --since --until --filter
    npn("stop", "worker")
    events = [json.loads(line) for line in npn(
        "events", "--since", str(int(day_began)), "--until", str(int(time.time()) + 1),
        "--filter", "type=container", "--filter", "event=die", "--format", "json",
    ).stdout.splitlines()]
    assert len(events) == 2  # the --rm writer and the worker
    assert npn("events", "--since", "1h", "--until", str(int(time.time()) + 1), "--filter",
               "container=worker", "--filter", "event=die", "--format",
               "{{.Actor.Attributes.name}} {{.Action}}").stdout.split() == ["worker", "die"]

    # docker system df; docker volume ls --filter dangling
    df = npn("system", "df").stdout.splitlines()
    assert df[0].split()[:2] == ["TYPE", "TOTAL"]
    assert npn("volume", "ls", "-q", "--filter", "dangling=true").stdout.split() == []

    # the end of the day: docker rm -f; docker system prune -f --volumes; docker volume prune -a
    npn("rm", "-f", "web")
    assert npn("ps", "-aq", "--filter", "status=exited").stdout.strip() != ""  # worker
    npn("system", "prune", "-f", "--volumes")
    assert npn("ps", "-aq").stdout.strip() == ""
    assert npn("volume", "ls", "-q").stdout.split() == ["site"]  # named: kept
    npn("volume", "prune", "-f", "-a")
    assert npn("volume", "ls", "-q").stdout.strip() == ""
