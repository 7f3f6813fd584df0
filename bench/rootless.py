"""What user namespaces cost: rootless ``pinnace run --rm busybox true`` (without a
network, with ``--net=slirp4netns`` and ``--net=pasta``, and with ``--userns=keep-id``,
whose rootfs is a shifted copy of the layer, made by the first run and reused) and
``exec`` against rootless podman as the same ordinary user (``pinnace-test``, made by
``make deps``, with a home of its own here), and a rootful run and exec with
``--userns=auto`` against the same without.

Run as root: ``python bench/rootless.py [--rounds N]``. Prints two tables. Not a test:
these machines are noisy.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import busybox_root, report, runner, time_runs

USER = "pinnace-test"
NETWORKS = ("slirp4netns", "pasta")
"""The user-mode networks a rootless run is also timed with (both tools start a helper
process per container; /dev/net/tun must be open to users, as ``make deps`` leaves it)."""


@contextmanager
def user_home(tar: Path) -> Iterator[Path]:
    """A home for USER holding the busybox tar; its pause process and files go after."""
    home = Path(tempfile.mkdtemp(prefix="rootless-bench-"))
    shutil.chown(home, USER, USER)
    shutil.copy(tar, home / "busybox.tar")
    os.chmod(home / "busybox.tar", 0o644)
    (home / "run").mkdir()
    shutil.chown(home / "run", USER, USER)
    try:
        yield home
    finally:
        for pause in (home / "run" / "pinnace" / "pause.pid",  # pinnace's and podman's
                      home / "run" / "libpod" / "tmp" / "pause.pid"):
            if pause.exists():
                os.kill(int(pause.read_text()), signal.SIGKILL)
        shutil.rmtree(home)


def as_user(home: Path, *argv: str) -> list[str]:
    """``argv`` run as USER with HOME and the XDG directories in ``home``."""
    return ["runuser", "-u", USER, "--", "env", f"HOME={home}", f"XDG_DATA_HOME={home}/data",
            f"XDG_RUNTIME_DIR={home}/run", "PATH=/usr/sbin:/usr/bin:/sbin:/bin", *argv]


def start(argv: list[str]) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True,
                          cwd="/").stdout.strip()


def rootless(rounds: int, pinnace: list[str], tar: Path) -> None:
    with user_home(tar) as home:
        mine = as_user(home, *pinnace)
        podman = as_user(home, "podman", "--root", f"{home}/podman", "--runroot",
                         f"{home}/run/podman")
        for tool in (mine, podman):
            start([*tool, "import", str(home / "busybox.tar"), "busybox"])
        boxes = [start([*tool, "run", "-d", "--net=none", "busybox", "sleep", "600"])
                 for tool in (mine, podman)]
        try:
            commands = {
                "pinnace run --rm true": runner([*mine, "run", "--rm", "--net=none",
                                                 "busybox", "true"], cwd="/"),
                "podman run --rm true": runner([*podman, "run", "--rm", "--net=none",
                                                "busybox", "true"], cwd="/"),
                "pinnace run --rm --userns=keep-id true": runner(
                    [*mine, "run", "--rm", "--net=none", "--userns=keep-id", "busybox", "true"],
                    cwd="/"),
                "podman run --rm --userns=keep-id true": runner(
                    [*podman, "run", "--rm", "--net=none", "--userns=keep-id", "busybox",
                     "true"], cwd="/"),
                "pinnace exec true": runner([*mine, "exec", boxes[0], "true"], cwd="/"),
                "podman exec true": runner([*podman, "exec", boxes[1], "true"], cwd="/"),
            }
            for net in NETWORKS:
                commands[f"pinnace run --rm --net={net} true"] = runner(
                    [*mine, "run", "--rm", f"--net={net}", "busybox", "true"], cwd="/")
                theirs = [*podman, "run", "--rm", f"--network={net}", "busybox", "true"]
                tried = subprocess.run(theirs, capture_output=True, text=True, cwd="/")
                if tried.returncode == 0:
                    commands[f"podman run --rm --network={net} true"] = runner(theirs, cwd="/")
                else:  # podman before 4.4 has no pasta
                    print(f"podman: no --network={net}: {tried.stderr.strip()}")
            for fn in commands.values():
                fn()
            report(f"rootless, as {USER}: {rounds} rounds", time_runs(commands, rounds),
                   baseline="podman run --rm true")
        finally:
            subprocess.run([*mine, "rm", "-f", boxes[0]], capture_output=True, cwd="/")
            subprocess.run([*podman, "rm", "-f", "-t", "0", boxes[1]], capture_output=True,
                           cwd="/")


def rootful(rounds: int) -> None:
    with busybox_root() as (pinnace, root, _):
        base = [*pinnace, "--root", str(root)]
        run = [*base, "run", "--rm", "--storage=btrfs", "--net=none"]
        boxes = {mode: start([*base, "run", "-d", "--net=none", f"--userns={mode}", "busybox",
                              "sleep", "600"]) for mode in ("host", "auto")}
        try:
            commands = {
                "run --rm true": runner([*run, "busybox", "true"]),
                "run --rm --userns=auto true": runner([*run, "--userns=auto", "busybox", "true"]),
                "exec true": runner([*base, "exec", boxes["host"], "true"]),
                "exec true (--userns=auto)": runner([*base, "exec", boxes["auto"], "true"]),
            }
            for fn in commands.values():
                fn()
            report(f"rootful, with and without a user namespace: {rounds} rounds",
                   time_runs(commands, rounds), baseline="run --rm true")
        finally:
            subprocess.run([*base, "rm", "-f", *boxes.values()], capture_output=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    pinnace = [sys.executable, "-m", "pinnace"]
    with busybox_root() as (_, _, work):
        tar = work / "busybox.tar"
        rootless(args.rounds, pinnace, tar)
    rootful(args.rounds)


if __name__ == "__main__":
    main()
