"""``--format`` on real containers, images and networks: docker's fields and headers,
inspect of found and missing objects, RFC 3339 times in every JSON output, the image
CREATED column, default networks that prune keeps, and shell completion."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import Pinnace, complete

import pinnace

RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?(Z|[+-]\d\d:\d\d)")
PS_FIELDS = ["ID", "Image", "Command", "CreatedAt", "RunningFor", "Ports", "Status", "Size",
             "Names", "Labels", "Mounts", "Networks", "State"]


@pytest.fixture
def two(pn: Pinnace, busybox_tar: Path) -> Pinnace:
    """A labelled image, a running container ``web`` and an exited one ``done``."""
    pn("import", "-c", 'CMD ["sh"]', "-c", "LABEL tier=front", str(busybox_tar), "busybox:latest")
    pn("run", "-d", "--net=none", "--name", "web", "busybox", "sleep", "300")
    pn("run", "--net=none", "--name", "done", "busybox", "true")
    return pn


def cells(line: str) -> list[str]:
    """The cells of an aligned table line (columns are at least three spaces apart)."""
    return re.split(r"\s{3,}", line.strip())


def test_ps_templates_use_docker_fields_and_headers(two: Pinnace) -> None:
    out = two("ps", "-a", "--format", "{{.Names}} {{.State}} {{.Command}}").stdout
    assert sorted(out.splitlines()) == ['done exited "true"', 'web running "sleep 300"']
    table = two("ps", "-a", "--format",
                r"table {{.ID}}\t{{.Names}}\t{{.Status}}\t{{.Networks}}").stdout.splitlines()
    assert cells(table[0]) == ["CONTAINER ID", "NAMES", "STATUS", "NETWORKS"]
    assert table[0].index("NAMES") == table[1].index(cells(table[1])[1])  # aligned columns
    rows = {cells(line)[1]: cells(line) for line in table[1:]}
    assert rows["web"][2].startswith("Up ") and rows["done"][2].startswith("Exited (0) ")
    assert rows["web"][3] == "none"
    everything = [json.loads(line) for line in
                  two("ps", "-a", "--format", "{{json .}}").stdout.splitlines()]
    assert all(list(r) == PS_FIELDS for r in everything)
    web = next(r for r in everything if r["Names"] == "web")
    assert web["Labels"] == "tier=front" and web["State"] == "running"
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \+0000 UTC", web["CreatedAt"])
    assert len(web["ID"]) == 12
    full = two("ps", "--no-trunc", "--format", "{{.ID}}").stdout.split()
    assert len(full) == 1 and len(full[0]) == 64 and full[0].startswith(web["ID"])
    # json and table still mean what they meant
    assert {r["Names"][0] for r in json.loads(two("ps", "-a", "--format", "json").stdout)} == \
        {"web", "done"}
    assert cells(two("ps", "--format", "table").stdout.splitlines()[0])[0] == "CONTAINER ID"


def test_unknown_field_is_one_line_naming_it(two: Pinnace) -> None:
    proc = two("ps", "--format", "{{.Foo}}", check=False)
    assert proc.returncode == 125 and proc.stdout == ""
    assert proc.stderr == ('Error: --format: no field "Foo" in container (fields: '
                           + ", ".join(PS_FIELDS) + ")\n")
    proc = two("images", "--format", "{{.Repository", check=False)
    assert proc.returncode == 125
    assert proc.stderr == "Error: --format: 1: unclosed action\n"


def test_images_fields_and_created_from_the_config(pn: Pinnace, busybox_tar: Path,
                                                   tmp_path: Path) -> None:
    old = tmp_path / "old.tar"
    old.write_bytes(busybox_tar.read_bytes())
    os.utime(old, (1_000_000_000, 1_000_000_000))  # 2001-09-09T01:46:40Z
    pn("pull", f"tar:{old}")
    pn("tag", pn("images", "-q", "--no-trunc").stdout.strip(), "old:1")
    out = pn("images", "--format", "{{.Repository}}:{{.Tag}} {{.CreatedAt}} {{.CreatedSince}}")
    years = round((time.time() - 1e9) / 3600) // (24 * 365)
    assert out.stdout == f"old:1 2001-09-09 01:46:40 +0000 UTC {years} years ago\n"
    table = pn("images").stdout.splitlines()
    assert cells(table[0]) == ["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"]
    assert cells(table[1])[3].endswith("years ago")
    listed = json.loads(pn("images", "--format", "json").stdout)
    assert listed[0]["Created"] == "2001-09-09T01:46:40.000000000Z"
    row = json.loads(pn("images", "--format", "{{json .}}").stdout)
    assert list(row) == ["ID", "Repository", "Tag", "Digest", "CreatedSince", "CreatedAt",
                         "Size"]
    assert row["Repository"] == "old" and row["Digest"].startswith("sha256:")
    table = pn("images", "--format", r"table {{.Repository}}\t{{.Size}}").stdout.splitlines()
    assert cells(table[0]) == ["REPOSITORY", "SIZE"] and cells(table[1])[0] == "old"
    steps = pn("history", "--format", "{{.CreatedAt}}|{{.CreatedSince}}|{{.CreatedBy}}", "old:1")
    assert steps.stdout == f"2001-09-09 01:46:40 +0000 UTC|{years} years ago|pinnace import\n"
    table = pn("history", "--format", r"table {{.ID}}\t{{.Size}}", "old:1").stdout.splitlines()
    assert cells(table[0]) == ["IMAGE", "SIZE"] and len(cells(table[1])[0]) == 12


def test_inspect_prints_what_it_finds_and_an_error_for_each_missing(two: Pinnace) -> None:
    proc = two("inspect", "web", "nope", "done", "gone", check=False)
    assert proc.returncode == 1
    assert [o["Name"] for o in json.loads(proc.stdout)] == ["/web", "/done"]
    assert proc.stderr == "Error: No such object: nope\nError: No such object: gone\n"
    proc = two("inspect", "nope", check=False)
    assert (proc.returncode, proc.stdout.strip()) == (1, "[]")
    proc = two("inspect", "-f", "{{.Name}} {{.State.Status}} {{json .Config.Cmd}}", "web",
               "nope", "done", check=False)
    assert proc.returncode == 1 and proc.stderr == "Error: No such object: nope\n"
    assert proc.stdout.splitlines() == ['/web running ["sleep","300"]', '/done exited ["true"]']
    # an image has no .Name: the error names what it does have
    proc = two("inspect", "-f", "{{.Name}}", "busybox", check=False)
    assert proc.returncode == 125 and 'no field "Name" in the object (fields: Id, ' in proc.stderr
    assert two("inspect", "-f", "{{index .RepoTags 0}}", "busybox").stdout == "busybox:latest\n"
    assert two("inspect", "--type", "image", "-f", "{{json .Config.Labels}}",
               "busybox").stdout == '{"tier":"front"}\n'
    proc = two("inspect", "--type", "container", "busybox", check=False)
    assert proc.returncode == 1 and proc.stderr.startswith("Error: No such container")
    proc = two("image", "inspect", "-f", "{{.Os}}", "busybox", "nope:1", check=False)
    assert proc.returncode == 1 and proc.stdout == "linux\n"
    assert proc.stderr == "Error: No such image: nope:1\n"
    assert two("container", "inspect", "--format", "{{.State.Running}}", "done").stdout == \
        "false\n"


def walk_times(data: Any, where: str = "") -> Iterator[tuple[str, Any]]:
    """Every (path, value) of a JSON document."""
    if isinstance(data, dict):
        for k, v in data.items():
            yield from walk_times(v, f"{where}.{k}")
    elif isinstance(data, list):
        for i, v in enumerate(data):
            yield from walk_times(v, f"{where}[{i}]")
    else:
        yield where, data


TIME_KEY = re.compile(r"(created|time|started|finished|date)(at)?$", re.I)


def assert_rfc3339_times(document: Any, what: str) -> int:
    """No float anywhere; every time-named value an RFC 3339 string. Returns how many."""
    found = 0
    for path, value in walk_times(document):
        assert not isinstance(value, float), f"{what}: float at {path}: {value}"
        key = path.rsplit(".", 1)[-1]
        if TIME_KEY.search(key):
            assert isinstance(value, str) and RFC3339.fullmatch(value), \
                f"{what}: {path} = {value!r} is not RFC 3339"
            found += 1
    return found


def test_every_json_output_has_rfc3339_times(npn: Pinnace, busybox: str) -> None:
    npn("network", "create", "spare")
    npn("run", "-d", "--network", "spare", "--name", "web", busybox, "sleep", "300")
    npn("run", "--net=none", "--name", "done", busybox, "true")
    outputs = {
        "ps": json.loads(npn("ps", "-a", "--format", "json").stdout),
        "images": json.loads(npn("images", "--format", "json").stdout),
        "inspect": json.loads(npn("inspect", "web", "done", busybox, "spare").stdout),
        "image inspect": json.loads(npn("image", "inspect", busybox).stdout),
        "network ls": json.loads(npn("network", "ls", "--format", "json").stdout),
        "network inspect": json.loads(npn("network", "inspect", "spare").stdout),
        "history": json.loads(npn("history", "--format", "json", busybox).stdout),
        "version": json.loads(npn("version", "--format", "json").stdout),
        "info": json.loads(npn("info", "--format", "json").stdout),
        "events": [json.loads(line) for line in npn(
            "events", "--since", "1h", "--until", "0s", "--format", "json").stdout.splitlines()],
        "stats": [json.loads(line) for line in npn(
            "stats", "--no-stream", "--format", "json").stdout.splitlines()],
    }
    counted = {what: assert_rfc3339_times(doc, what) for what, doc in outputs.items()}
    for what in ("ps", "images", "inspect", "image inspect", "network ls", "network inspect",
                 "history", "events"):
        assert counted[what] > 0, f"{what} shows no time at all"
    assert {e["Action"] for e in outputs["events"]} >= {"create", "start", "die", "import"}
    assert outputs["stats"][0]["Name"] == "web"
    nets = {n["Name"]: n for n in outputs["network inspect"] + outputs["network ls"]}
    assert nets["spare"]["Containers"] == ["web"] and nets["spare"]["Scope"] == "local"


def test_network_ls_formats_and_prune_keeps_the_default(npn: Pinnace, busybox: str) -> None:
    npn("network", "create", "spare")
    npn("network", "create", "--internal", "inner")
    names = npn("network", "ls", "--format", "{{.Name}} {{.Driver}} {{.Internal}}").stdout
    assert sorted(names.splitlines()) == ["inner bridge true", "pinnace0 bridge false",
                                          "spare bridge false"]
    table = npn("network", "ls", "--format", r"table {{.ID}}\t{{.Name}}\t{{.Scope}}").stdout
    lines = table.splitlines()
    assert cells(lines[0]) == ["NETWORK ID", "NAME", "SCOPE"] and len(lines) == 4
    assert all(len(cells(line)[0]) == 12 and cells(line)[2] == "local" for line in lines[1:])
    row = json.loads(npn("network", "ls", "--format", "{{json .}}").stdout.splitlines()[0])
    assert list(row) == ["ID", "Name", "Driver", "Scope", "IPv6", "Internal", "Labels",
                         "CreatedAt"]
    proc = npn("network", "inspect", "-f", "{{.Name}} {{(index .IPAM.Config 0).Subnet}}",
               "inner", "nope", check=False)
    assert proc.returncode == 1 and proc.stdout.startswith("inner ")
    assert proc.stderr == "Error: network nope not found\n"
    assert sorted(npn("network", "prune", "-f").stdout.split()) == ["inner", "spare"]
    assert npn("network", "ls", "--format", "{{.Name}}").stdout == "pinnace0\n"
    proc = npn("network", "rm", "pinnace0", check=False)
    assert proc.returncode == 125
    assert proc.stderr == ("Error: pinnace0 is the default network of driver bridge and "
                           "cannot be removed\n")
    assert npn("network", "ls", "-q").stdout == "pinnace0\n"


def test_stats_version_and_info_formats(two: Pinnace) -> None:
    out = two("stats", "--no-stream", "--format", "{{json .}}").stdout.splitlines()
    assert len(out) == 1
    row = json.loads(out[0])
    assert list(row) == ["ID", "Container", "Name", "CPUPerc", "MemUsage", "MemPerc", "NetIO",
                         "BlockIO", "PIDs"]
    assert row["Name"] == "web" and row["PIDs"] == "1" and row["CPUPerc"].endswith("%")
    table = two("stats", "--no-stream", "--format", r"table {{.Name}}\t{{.PIDs}}").stdout
    assert [cells(line) for line in table.splitlines()] == [["NAME", "PIDS"], ["web", "1"]]
    plain = two("stats", "--no-stream", "--format", "json").stdout.splitlines()
    assert [json.loads(line)["Name"] for line in plain] == ["web"]
    proc = two("stats", "--no-stream", "--format", "{{.Bogus}}", check=False)
    assert proc.returncode == 125 and 'no field "Bogus" in container stats' in proc.stderr

    assert two("version", "--format", "{{.Client.Version}}").stdout == \
        f"{pinnace.__version__}\n"
    server = json.loads(two("version", "--format", "{{json .Server}}").stdout)
    assert server["Version"] == pinnace.__version__ and server["StateSchema"] >= 5
    assert server["Plugins"]["storage.btrfs"].startswith("pinnace ")
    text = two("version").stdout
    assert text.startswith("Client:\n Version:") and "\nEngine:\n" in text
    assert f"Python version:  {sys.version.split()[0]}" in text

    assert two("info", "--format", "{{.Containers}} {{.ContainersRunning}} "
               "{{.ContainersStopped}} {{.Images}} {{.OSType}}").stdout == "2 1 1 1 linux\n"
    assert two("info", "--format", "{{.DockerRootDir}}").stdout == f"{two.root}\n"
    assert json.loads(two("info", "--format", "json").stdout)["containers"] == 2


def test_completion_of_names(two: Pinnace) -> None:
    assert complete(two, "stop ") == ["done", "web"]
    assert complete(two, "logs w") == ["web"]
    assert complete(two, "container rm d") == ["done"]
    assert complete(two, "run bu") == ["busybox:latest"]
    assert complete(two, "rmi ") == ["busybox:latest"]
    assert complete(two, "inspect ") == ["busybox:latest", "done", "web"]
    assert complete(two, "run --storage ") == ["btrfs", "dir"]
    assert "bridge" in complete(two, "run --net ")
    assert complete(two, "network rm ") == []
    other = Pinnace(two.root.parent / "never-made")
    assert complete(other, "stop ") == []
    assert not (two.root.parent / "never-made").exists()  # completing made nothing


def test_completion_builds_no_engine(two: Pinnace) -> None:
    line = f"pinnace --root {two.root} stop w"
    env = dict(two.env, _PINNACE_COMPLETE="bash_complete", COMP_WORDS=line, COMP_CWORD="4")
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "pinnace"], env=env,
                          capture_output=True, text=True, check=True, timeout=30)
    assert proc.stdout.split() == ["plain,web"]
    mods = {row.split("|")[-1].strip() for row in proc.stderr.splitlines()
            if row.startswith("import time:")}
    assert "sqlite3" in mods
    assert not mods & {"pinnace.engine", "pinnace.state", "pluggy", "stevedore",
                       "pinnace.images.store"}
