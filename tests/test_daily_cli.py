"""The flags and commands of a docker user's day, through the real CLI with real
containers: ``--env-file``, labels, ``port`` and PORTS, ``system df``, ``system prune``,
``search`` against a loopback registry, completion of volumes and filter keys; each bad
input a one-line error."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Pinnace

from pinnace.testing.registry import Layout as RegistryLayout
from pinnace.testing.registry import (
    RegistryServer,
    busybox_layers,
    docker_registry,
    skopeo_copy,
)


def fails(pn: Pinnace, *args: str, code: int = 125) -> str:
    """The one-line error of a command that must fail."""
    proc = pn(*args, check=False)
    assert proc.returncode == code, proc
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), proc.stderr
    return lines[0]


def env_of(pn: Pinnace, *args: str) -> dict[str, str]:
    out = pn(*args).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


# ------------------------------------------------------------------ --env-file
def test_env_file_on_run_create_and_exec(pn: Pinnace, busybox: str, tmp_path: Path) -> None:
    envs = tmp_path / "app.env"
    envs.write_text("# settings\n\nGREETING=hello world\n  INDENTED=yes\nQUOTED=\"q\"\n"
                    "FROM_HOST\nNOT_ON_HOST\nEMPTY=\nOVERRIDDEN=file\n")
    pn.env.update(FROM_HOST="host-value")
    pn.env.pop("NOT_ON_HOST", None)
    env = env_of(pn, "run", "--rm", "--env-file", str(envs), "-e", "OVERRIDDEN=flag", busybox,
                 "env")
    assert env["GREETING"] == "hello world" and env["INDENTED"] == "yes"
    assert env["QUOTED"] == '"q"' and env["EMPTY"] == "" and env["FROM_HOST"] == "host-value"
    assert env["OVERRIDDEN"] == "flag" and "NOT_ON_HOST" not in env
    cid = pn("create", "--env-file", str(envs), busybox, "sleep", "600").stdout.strip()
    config = json.loads(pn("inspect", cid).stdout)[0]["Config"]
    assert "GREETING=hello world" in config["Env"]
    pn("start", cid)
    extra = tmp_path / "exec.env"
    extra.write_text("ONLY_IN_EXEC=1\n")
    env = env_of(pn, "exec", "--env-file", str(extra), cid, "env")
    assert env["ONLY_IN_EXEC"] == "1" and env["GREETING"] == "hello world"


def test_bad_env_files(pn: Pinnace, busybox: str, tmp_path: Path) -> None:
    bad = tmp_path / "bad.env"
    bad.write_text("OK=1\n# fine\nTWO WORDS=x\n")
    assert f"{bad}, line 3: variable 'TWO WORDS' contains whitespace" in \
        fails(pn, "run", "--rm", "--env-file", str(bad), busybox, "true")
    bad.write_text("=nothing\n")
    assert "line 1: no variable name" in fails(pn, "create", "--env-file", str(bad), busybox)
    assert "cannot read" in fails(pn, "run", "--env-file", str(tmp_path / "none"), busybox)
    assert pn("ps", "-aq").stdout == ""  # nothing was created


# ------------------------------------------------------------------ labels
def test_labels_on_containers_images_networks_volumes(pn: Pinnace, busybox: str,
                                                       tmp_path: Path) -> None:
    labels = tmp_path / "labels"
    labels.write_text("# team\nteam=core\nflag\n")
    pn("commit", "-c", "LABEL from=image tier=base",
       pn("create", busybox, "true").stdout.strip(), "based:1")
    pn("run", "--name", "c", "--label-file", str(labels), "-l", "tier=web", "--label",
       "team=edge", "based:1", "true")
    [info] = json.loads(pn("inspect", "c").stdout)
    assert info["Config"]["Labels"] == {"from": "image", "tier": "web", "team": "edge",
                                        "flag": ""}
    assert pn("ps", "-a", "--format", "{{.Labels}}", "-f", "name=^c$").stdout == \
        "flag=,from=image,team=edge,tier=web\n"
    assert pn("inspect", "-f", '{{index .Config.Labels "team"}}', "c").stdout == "edge\n"
    assert pn("ps", "-a", "-f", "name=^c$", "--format",
              '{{.Label "team"}}|{{.Label "none"}}|{{.Label "from" | upper}}').stdout == \
        "edge||IMAGE\n"
    assert "can't give argument to non-function .Names" in \
        fails(pn, "ps", "-a", "--format", '{{.Names "x"}}')
    assert "wrong arguments for .Label" in fails(pn, "ps", "-a", "--format", "{{.Label}}")
    [image] = json.loads(pn("image", "inspect", "based:1").stdout)
    assert image["Config"]["Labels"] == {"from": "image", "tier": "base"}
    pn("network", "create", "--label-file", str(labels), "--label", "x=1", "net1")
    assert pn("network", "ls", "--format", "{{.Name}} {{.Labels}}", "-f", "name=net1"
              ).stdout == "net1 flag=,team=core,x=1\n"
    assert pn("network", "ls", "--format", '{{.Name}}={{.Label "x"}}', "-f", "name=net1"
              ).stdout == "net1=1\n"
    pn("volume", "create", "--label-file", str(labels), "vol1")
    assert json.loads(pn("volume", "inspect", "vol1").stdout)[0]["Labels"] == \
        {"team": "core", "flag": ""}
    assert "invalid label '=v'" in fails(pn, "run", "-l", "=v", busybox, "true")
    assert "invalid label" in fails(pn, "network", "create", "--label", "=v", "net2")
    labels.write_text("bad key=1\n")
    assert "line 1: variable 'bad key'" in fails(pn, "run", "--label-file", str(labels),
                                                  busybox, "true")
    assert pn("ps", "-aq", "-f", "name=^c$").stdout.count("\n") == 1  # no second one


# ------------------------------------------------------------------ port and PORTS
def test_port_and_ps_ports(npn: Pinnace, busybox: str) -> None:
    npn("run", "-d", "--name", "web", "--net=bridge", "-p", "18080:80", "-p",
        "127.0.0.1:18053:53/udp", busybox, "sleep", "600")
    row = npn("ps").stdout.splitlines()
    assert row[0].split()[:6] == ["CONTAINER", "ID", "IMAGE", "COMMAND", "CREATED", "STATUS"]
    assert "PORTS" in row[0]
    assert "127.0.0.1:18053->53/udp, 0.0.0.0:18080->80/tcp" in row[1]  # by port
    assert npn("ps", "--format", "{{.Ports}}").stdout == \
        "127.0.0.1:18053->53/udp, 0.0.0.0:18080->80/tcp\n"
    assert npn("port", "web").stdout.splitlines() == \
        ["53/udp -> 127.0.0.1:18053", "80/tcp -> 0.0.0.0:18080"]
    assert npn("port", "web", "80").stdout == "0.0.0.0:18080\n"
    assert npn("port", "web", "53/udp").stdout == "127.0.0.1:18053\n"
    assert npn("ps", "-q", "-f", "publish=80").stdout.strip() != ""
    assert npn("ps", "-q", "-f", "publish=81-90/udp").stdout == ""
    assert npn("ps", "-q", "-f", "publish=50-60/udp").stdout.strip() != ""
    assert "no public port '81/tcp' published for web" in fails(npn, "port", "web", "81")
    assert "invalid port 'http'" in fails(npn, "port", "web", "http")
    assert "no such container" in fails(npn, "port", "nobody", code=125).lower()
    npn("stop", "web")
    assert npn("port", "web").stdout == ""


# ------------------------------------------------------------------ system df
def test_system_df(pn: Pinnace, busybox: str) -> None:
    pn("run", "--name", "writer", busybox, "sh", "-c",
       "dd if=/dev/zero of=/blob bs=1k count=300 2>/dev/null")
    pn("run", "-d", "--name", "sleeper", "-v", "data:/data", busybox, "sh", "-c",
       "dd if=/dev/zero of=/data/f bs=1k count=50 2>/dev/null; sleep 600")
    pn("volume", "create", "spare")
    rows = {r["Type"]: r for r in json.loads(pn("system", "df", "--format", "json").stdout)}
    assert list(rows) == ["Images", "Containers", "Local Volumes", "Build Cache"]
    assert rows["Images"]["TotalCount"] == 1 and rows["Images"]["Active"] == 1
    assert rows["Images"]["Size"] > 500_000 and rows["Images"]["Reclaimable"] == 0
    assert rows["Containers"]["TotalCount"] == 2 and rows["Containers"]["Active"] == 1
    assert rows["Containers"]["Reclaimable"] >= 300 * 1024  # the stopped writer's blob
    assert rows["Local Volumes"]["TotalCount"] == 2 and rows["Local Volumes"]["Active"] == 1
    # the sleeper's volume, once its dd is done
    for _ in range(50):
        rows = {r["Type"]: r for r in json.loads(pn("system", "df", "--format", "json").stdout)}
        if rows["Local Volumes"]["Size"] >= 50 * 1024:
            break
    assert rows["Local Volumes"]["Size"] == 50 * 1024
    assert rows["Local Volumes"]["Reclaimable"] == 0
    table = pn("system", "df").stdout.splitlines()
    assert table[0].split() == ["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"]
    assert [line.split()[0] for line in table[1:]] == ["Images", "Containers", "Local",
                                                       "Build"]
    assert re.search(r"\(\d+%\)", table[2])
    verbose = pn("system", "df", "-v").stdout
    for section in ("Images space usage:", "Containers space usage:",
                    "Local Volumes space usage:", "Build cache usage: 0B"):
        assert section in verbose
    assert re.search(r"^data\s+1\s+51\.2kB$", verbose, re.M)
    assert re.search(r"^spare\s+0\s+0B$", verbose, re.M)
    assert re.search(r"^busybox\s+latest\s+\w{12}\s.*\s2$", verbose, re.M)  # 2 containers
    storage = pn("system", "df", "--storage").stdout.splitlines()
    assert storage[0].split() == ["STORAGE", "CONTAINERS", "LAYERS", "SIZE", "INODES"]


# ------------------------------------------------------------------ system prune
def test_system_prune(pn: Pinnace, busybox: str) -> None:
    pn("run", "--name", "done", "-l", "keep=yes", busybox, "true")
    pn("run", "--name", "gone", busybox, "true")
    pn("run", "-d", "--name", "up", busybox, "sleep", "600")
    pn("network", "create", "unused")
    dangling = pn("commit", "gone").stdout.strip()
    pn("commit", "done", "extra:1")
    pn("run", "--name", "anon", "-v", "/scratch", busybox, "true")
    pn("volume", "create", "named")
    [anonymous] = set(pn("volume", "ls", "-q").stdout.split()) - {"named"}

    def images() -> list[str]:
        return sorted(pn("images", "-q", "--no-trunc").stdout.split())

    before = images()
    assert dangling in before and len(before) == 3
    # without a terminal and without -f: refused, nothing removed
    assert "pass -f/--force" in fails(pn, "system", "prune")
    assert len(pn("ps", "-aq").stdout.split()) == 4 and images() == before
    assert "invalid filter 'name' for system prune" in \
        fails(pn, "system", "prune", "-f", "--filter", "name=x")
    assert "invalid filter until 'yesterday'" in fails(pn, "system", "prune", "-f", "--filter",
                                             "until=yesterday")
    out = pn("system", "prune", "-f", "--filter", "label!=keep").stdout
    assert "Deleted Containers:" in out and "Deleted Networks:\nunused\n" in out
    assert f"deleted: {dangling}" in out and "Total reclaimed space:" in out
    assert sorted(pn("ps", "-a", "--format", "{{.Names}}").stdout.split()) == ["done", "up"]
    assert "unused" not in pn("network", "ls", "-q").stdout
    assert "pinnace0" not in out  # the default network stays
    assert dangling not in images() and len(images()) == 2  # busybox and extra:1 stay
    assert sorted(pn("volume", "ls", "-q").stdout.split()) == sorted([anonymous, "named"])
    out = pn("system", "prune", "-f", "--volumes", "-a").stdout
    assert f"Deleted Volumes:\n{anonymous}\n" in out and "untagged: extra:1" in out
    assert pn("volume", "ls", "-q").stdout.split() == ["named"]  # named volumes stay
    assert pn("ps", "-a", "--format", "{{.Names}}").stdout.split() == ["up"]
    # the running container's image stays
    assert pn("images", "--format", "{{.Repository}}").stdout.split() == ["busybox"]


# ------------------------------------------------------------------ search
@pytest.fixture(scope="module")
def catalog_registry(tmp_path_factory: pytest.TempPathFactory,
                     busybox_tar: Path) -> Iterator[RegistryServer]:
    """A loopback registry holding ``lib/bb:1``, ``lib/bb:2`` and ``tools/busy-box:1``."""
    lay = RegistryLayout(tmp_path_factory.mktemp("searchlayout"))
    lay.tag(lay.image(busybox_layers(busybox_tar)[:1]), "bb")
    with docker_registry(tmp_path_factory.mktemp("searchreg")) as reg:
        for target in ("lib/bb:1", "lib/bb:2", "tools/busy-box:1", "other/app:1"):
            skopeo_copy(f"oci:{lay.path}:bb", f"docker://{reg.host}/{target}")
        yield reg


def test_search(pn: Pinnace, catalog_registry: RegistryServer) -> None:
    host = catalog_registry.host
    table = pn("search", f"{host}/b").stdout.splitlines()
    assert table[0].split() == ["NAME", "DESCRIPTION", "STARS", "OFFICIAL", "TAGS"]
    assert [line.split()[0] for line in table[1:]] == [f"{host}/lib/bb",
                                                      f"{host}/tools/busy-box"]
    assert table[1].split()[1:] == ["0", "1,", "2"]
    assert pn("search", "--format", "{{.Name}}:{{.Tags}}", f"{host}/BUSY").stdout == \
        f"{host}/tools/busy-box:1\n"
    assert pn("search", "--limit", "1", "--format", "{{.Name}}", f"{host}/").stdout == \
        f"{host}/lib/bb\n"
    assert json.loads(pn("search", "--format", "json", f"{host}/app").stdout) == [
        {"Name": f"{host}/other/app", "Description": "", "StarCount": 0, "IsOfficial": False,
         "IsAutomated": False, "Tags": "1"}]
    assert pn("search", "-f", "stars=1", f"{host}/b").stdout.splitlines()[1:] == []
    assert len(pn("search", "-f", "is-official=false", f"{host}/b").stdout.splitlines()) == 3
    assert pn("search", "--format", "{{.Name}}", f"{host}/nothing").stdout == ""
    # a default registry from the config: TERM alone
    pn.env["PINNACE_IMAGE_SOURCE_DOCKER_DEFAULT_REGISTRY"] = host
    assert pn("search", "--format", "{{.Name}}", "app").stdout == f"{host}/other/app\n"
    del pn.env["PINNACE_IMAGE_SOURCE_DOCKER_DEFAULT_REGISTRY"]
    assert "names no registry" in fails(pn, "search", "app")
    assert "between 1 and 100" in fails(pn, "search", "--limit", "0", f"{host}/b")
    assert "invalid filter 'name' for search" in fails(pn, "search", "-f", "name=x",
                                                       f"{host}/b")
    assert "expected a number" in fails(pn, "search", "-f", "stars=many", f"{host}/b")


# ------------------------------------------------------------------ completion
def complete(pn: Pinnace, words: str) -> list[str]:
    """What bash completion offers for the last of ``words`` (after ``pinnace --root R``)."""
    line = f"pinnace --root {pn.root} {words}"
    count = len(line.split()) - (0 if line.endswith(" ") else 1)
    env = dict(pn.env, _PINNACE_COMPLETE="bash_complete", COMP_WORDS=line,
               COMP_CWORD=str(count))
    proc = subprocess.run([sys.executable, "-m", "pinnace"], env=env, capture_output=True,
                          text=True, check=True, timeout=30)
    return [item.partition(",")[2] for item in proc.stdout.splitlines() if item]


def test_completion_of_volumes_and_filter_keys(pn: Pinnace, busybox: str) -> None:
    pn("volume", "create", "alpha")
    pn("volume", "create", "beta")
    assert complete(pn, "volume rm ") == ["alpha", "beta"]
    assert complete(pn, "volume inspect b") == ["beta"]
    assert complete(pn, "ps --filter st") == ["status="]
    assert "label!=" in complete(pn, "ps -f la")
    assert complete(pn, "images --filter da") == ["dangling="]
    assert complete(pn, "network ls -f ty") == ["type="]
    assert complete(pn, "volume ls -f dr") == ["driver="]
    assert complete(pn, "system prune --filter u") == ["until="]
    assert complete(pn, "events -f ty") == ["type="]
    assert os.path.exists(pn.root / "state.db")
