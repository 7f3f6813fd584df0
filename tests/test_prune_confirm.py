"""The prune commands ask before removing: on a terminal they ask ``[y/N]``; without one
and without ``-f`` they refuse with one line and remove nothing. Each runs inside the test's
own network namespace (``network prune`` removes bridges and their rules)."""

from __future__ import annotations

import json
import shlex
import subprocess
from pathlib import Path

import pytest
from conftest import Pinnace

PRUNES = {"container": ("container", "prune"), "image": ("image", "prune", "-a"),
          "network": ("network", "prune"), "volume": ("volume", "prune", "-a")}
WHAT = {"container": "all stopped containers",
        "image": "all images without at least one container associated to them",
        "network": "all custom networks not used by at least one container",
        "volume": "all local volumes not used by at least one container"}


@pytest.fixture
def prunable(npn: Pinnace, busybox: str, busybox_tar: Path) -> Pinnace:
    """A stopped container, an image no container uses, an unused network and volume."""
    npn("run", "--net=none", busybox, "true")
    npn("import", "-c", 'CMD ["true"]', str(busybox_tar), "spare:1")
    npn("network", "create", "spare")
    npn("volume", "create", "spare")
    return npn


def what_is_left(pn: Pinnace) -> dict[str, list[str]]:
    """Stopped containers, images, custom networks and volumes of this root."""
    nets = json.loads(pn("network", "ls", "--format", "json").stdout)
    return {"container": pn("ps", "-aq").stdout.split(),
            "image": pn("images", "-q").stdout.split(),
            "network": [n["Name"] for n in nets if n["Name"] == "spare"],
            "volume": pn("volume", "ls", "-q").stdout.split()}


def on_a_terminal(pn: Pinnace, args: tuple[str, ...], answer: str) -> str:
    """Run ``pinnace args`` on a pseudo-terminal (``script``), typing ``answer``."""
    proc = subprocess.run(["script", "-qec", shlex.join(pn.argv(*args)), "/dev/null"],
                          input=answer + "\n", capture_output=True, text=True, env=pn.env,
                          timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


@pytest.mark.parametrize("kind", PRUNES)
def test_without_a_terminal_prune_refuses(prunable: Pinnace, kind: str) -> None:
    before = what_is_left(prunable)
    assert before[kind]
    proc = prunable(*PRUNES[kind], check=False, input="y\n")
    assert proc.returncode == 125, proc.stderr
    assert proc.stderr.splitlines() == [
        f"Error: refusing to remove {WHAT[kind]} without confirmation: stdin is not a "
        f"terminal; pass -f/--force"]
    assert proc.stdout == ""
    assert what_is_left(prunable) == before


@pytest.mark.parametrize("kind", PRUNES)
def test_prune_f_removes_without_asking(prunable: Pinnace, kind: str) -> None:
    before = what_is_left(prunable)
    out = prunable(*PRUNES[kind], "-f").stdout
    assert "WARNING" not in out
    left = what_is_left(prunable)
    if kind == "image":  # the stopped container keeps busybox
        assert len(left["image"]) == 1 and len(before["image"]) == 2
    else:
        assert left[kind] == []
    assert {k: v for k, v in left.items() if k != kind} == \
        {k: v for k, v in before.items() if k != kind}


@pytest.mark.parametrize("kind", PRUNES)
def test_on_a_terminal_prune_asks(prunable: Pinnace, kind: str) -> None:
    before = what_is_left(prunable)
    out = on_a_terminal(prunable, PRUNES[kind], "N")
    assert f"WARNING! This will remove {WHAT[kind]}." in out and \
        "Are you sure you want to continue? [y/N]" in out, out
    assert what_is_left(prunable) == before
    out = on_a_terminal(prunable, PRUNES[kind], "y")
    assert "Are you sure you want to continue? [y/N]" in out, out
    assert len(what_is_left(prunable)[kind]) < len(before[kind])
