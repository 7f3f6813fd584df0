"""``pinnace diff``: docker's A/C/D lines, from the same descriptor-by-descriptor walk
that commit uses, on stopped and running containers."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
from conftest import Pinnace

CHANGES = """
rm /etc/group
echo added > /etc/added
echo more >> /etc/passwd
mkdir -p /opt/deep
echo x > /opt/deep/f
rm /bin/ls
mkdir /bin/ls
echo y > /bin/ls/z
ln -s /etc/added /bin/added-link
"""

EXPECTED = """C /bin
A /bin/added-link
C /bin/ls
A /bin/ls/z
C /etc
A /etc/added
D /etc/group
C /etc/passwd
A /opt
A /opt/deep
A /opt/deep/f
"""


@pytest.mark.parametrize("storage", ["btrfs", "dir"])
def test_diff_lists_added_changed_and_deleted(pn: Pinnace, busybox: str, storage: str) -> None:
    pn("run", f"--storage={storage}", "--name", "c", busybox, "sh", "-c", CHANGES)
    assert pn("diff", "c").stdout == EXPECTED
    assert pn("container", "diff", "c").stdout == EXPECTED


def test_diff_of_an_unchanged_and_of_a_running_container(pn: Pinnace, busybox: str) -> None:
    pn("run", "--name", "same", busybox, "true")
    assert pn("diff", "same").stdout == ""  # /etc/hosts and friends are the engine's
    pn("run", "-d", "--name", "live", busybox, "sh", "-c", "touch /live; exec sleep 60")
    deadline = time.monotonic() + 30
    while "A /live\n" not in (out := pn("diff", "live").stdout):
        assert time.monotonic() < deadline, out
    assert out == "A /live\n"
    assert pn("ps", "-q").stdout.strip() != ""  # still running, never paused
    pn("rm", "-f", "live")


def test_diff_of_an_unknown_container(pn: Pinnace) -> None:
    proc = pn("diff", "ghost", check=False)
    assert proc.returncode == 125 and proc.stderr == "Error: No such container: ghost\n"


SWAPPER = """mkdir /d
echo inside > /d/inside
ln -s {host} /l
touch /ready
while :; do mv /d /x; mv /l /d; mv /d /l; mv /x /d; done
"""


def test_diff_of_a_swapping_container_lists_no_host_file(pn: Pinnace, busybox: str,
                                                          tmp_path: Path) -> None:
    """While the container swaps /d with a symlink to a host directory, diff never lists
    what is in the host directory."""
    host = tmp_path / "host"
    host.mkdir()
    (host / "HOST-ONLY").write_text("host\n")
    pn("run", "-d", "--name", "swap", busybox, "sh", "-c", SWAPPER.format(host=host))
    deadline = time.monotonic() + 30
    while "A /ready\n" not in pn("diff", "swap").stdout:
        assert time.monotonic() < deadline
    seen_dir = 0
    for _ in range(50):
        out = subprocess.run(pn.argv("diff", "swap"), capture_output=True, text=True,
                             check=True).stdout
        assert "HOST-ONLY" not in out
        seen_dir += "A /d/inside\n" in out or "A /x/inside\n" in out
    assert seen_dir > 0
    pn("rm", "-f", "swap")
