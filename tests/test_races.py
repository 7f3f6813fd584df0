"""Concurrent pinnace processes racing each other over one thing: each race ends one way
or the other, with one-line errors only and nothing left behind."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

from conftest import Pinnace

from pinnace.testing.netns import leftovers, run_in

ROUNDS = 6
RUNNERS = 6


def clean_error(proc: subprocess.CompletedProcess[str] | tuple[int, str]) -> str:
    """The one ``Error:`` line of a failed command (asserting it is one line and expected)."""
    code, stderr = (proc.returncode, proc.stderr) if not isinstance(proc, tuple) else proc
    lines = stderr.strip().splitlines()
    assert code == 125 and len(lines) == 1 and lines[0].startswith("Error: "), stderr
    assert "unexpected" not in lines[0] and "IntegrityError" not in lines[0], stderr
    return lines[0]


def finished(procs: list[subprocess.Popen[str]]) -> list[tuple[int, str]]:
    """(exit status, stderr) of each process, once it ends."""
    results = []
    for proc in procs:
        _, stderr = proc.communicate(timeout=120)
        results.append((proc.returncode, stderr))
    return results


def has_link(netns: Path, name: str) -> bool:
    return run_in(netns, "ip", "link", "show", name, check=False).returncode == 0


def test_network_rm_racing_containers_that_join(npn: Pinnace, netns: Path,
                                                busybox: str) -> None:
    outcomes = set()
    for round_ in range(ROUNDS):
        npn("network", "create", "--opt", "bridge=pnrace0", "n1")
        npn("run", "--rm", "--network", "n1", busybox, "true")  # the bridge is made
        assert has_link(netns, "pnrace0")
        runners, removal = [], None
        for i in range(RUNNERS):  # staggered: the removal meets them at different steps
            if i == round_ % RUNNERS:
                removal = npn.popen("network", "rm", "n1", stdout=subprocess.DEVNULL,
                                    stderr=subprocess.PIPE)
            runners.append(npn.popen("run", "--rm", "--network", "n1", busybox, "true",
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
            time.sleep(0.15)
        assert removal is not None
        removed = finished([removal])[0]
        for code, stderr in finished(runners):
            if code:
                line = clean_error((code, stderr))
                assert "network n1 was removed" in line or "network n1 not found" in line, line
                outcomes.add(line)
        if removed[0]:
            assert "network n1 is in use by container" in clean_error(removed)
            outcomes.add("removal refused")
        names = {n["Name"] for n in json.loads(npn("network", "ls", "--format", "json").stdout)}
        exists = "n1" in names
        assert exists == bool(removed[0])
        assert has_link(netns, "pnrace0") == exists  # the network and its bridge, or neither
        assert npn("ps", "-aq").stdout.split() == []
        assert leftovers(netns) == []
        if exists:
            npn("network", "rm", "n1")
        assert not has_link(netns, "pnrace0")
        assert "pn:net:pnrace0" not in run_in(netns, "iptables-save").stdout
    print("outcomes:", sorted(outcomes))


def test_rmi_racing_runs_of_the_image(pn: Pinnace, root: Path, busybox_tar: Path) -> None:
    from plugin_checks import STORAGES, snapshots

    outcomes = set()
    for round_ in range(ROUNDS):
        pn("import", "-c", 'CMD ["sh"]', str(busybox_tar), "img:latest")
        runners, removal = [], None
        for i in range(RUNNERS):
            if i == round_ % RUNNERS:
                removal = pn.popen("rmi", "img:latest", stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE)
            runners.append(pn.popen("run", "--rm", "--net=none", "img:latest", "true",
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
            time.sleep(0.15)
        assert removal is not None
        removed = finished([removal])[0]
        for code, stderr in finished(runners):
            if code:
                line = clean_error((code, stderr))
                assert line in ("Error: image img:latest was removed",
                                "Error: No such image: img:latest"), line
                outcomes.add(line)
        if removed[0]:
            assert "is being used by container" in clean_error(removed)
            outcomes.add("removal refused")
        assert pn("ps", "-aq").stdout.split() == []
        images = pn("images", "-q").stdout.split()
        assert bool(images) == bool(removed[0])  # the image stays only when rmi refused
        if images:
            pn("rmi", "img:latest")
        assert pn("images", "-q").stdout.split() == []
        assert all(snapshots(root, storage) == [] for storage in STORAGES)
    print("outcomes:", sorted(outcomes))
