"""Rootless networking: the user-mode networks (``slirp4netns``, ``pasta``) for an ordinary
user (``pinnace-test``) and for root: published ports reached on the host's loopback,
the network contract suite passed inside the user's own namespaces, and what such a user
cannot have (a privileged port, a tun device it may not open) refused in one line with
nothing left behind. Traffic goes to loopback and into namespaces the tests make."""

from __future__ import annotations

import inspect
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Pinnace
from test_rootless import User, user_home

from pinnace.plugin import netns as namespaces
from pinnace.testing.network import NetworkContract

NETWORKS = ("slirp4netns", "pasta")
HELPERS = "^(slirp4netns|pasta) "
"""``pgrep -f``'s pattern for the command lines of both networks' helper processes."""
SERVE = "while true; do echo published-$((6*7)) | nc -l -p 80; done"
"""A busybox shell loop answering every TCP connection on port 80 with one line."""


@pytest.fixture
def user(busybox_tar: Path) -> Iterator[User]:
    """``pinnace-test`` with busybox:latest imported."""
    for made in user_home("pinnace-test"):
        (made.home / "busybox.tar").write_bytes(busybox_tar.read_bytes())
        os.chmod(made.home / "busybox.tar", 0o644)
        made("import", "-c", 'CMD ["sh"]', str(made.home / "busybox.tar"), "busybox:latest")
        yield made


def free_port() -> int:
    """A TCP port nothing listens on at 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def fetch(port: int, netns: Path | None = None) -> str:
    """What busybox nc reads from 127.0.0.1:``port`` (in ``netns``, else here), retried
    for 10 s while the container's server is not listening yet."""
    enter = ["nsenter", f"--net={netns}"] if netns else []
    deadline = time.monotonic() + 10
    while True:
        got = subprocess.run([*enter, "busybox", "nc", "127.0.0.1", str(port)],
                             stdin=subprocess.DEVNULL, capture_output=True, text=True,
                             timeout=10).stdout
        if got or time.monotonic() > deadline:
            return got
        time.sleep(0.1)


def listening(port: int) -> bool:
    """Whether something accepts connections at 127.0.0.1:``port``."""
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def helpers_of(user: User) -> list[str]:
    """slirp4netns and pasta processes running as ``user`` for containers of its home
    (their command lines name the namespace file under it)."""
    found = subprocess.run(["pgrep", "-a", "-u", str(user.uid), "-f", HELPERS],
                           capture_output=True, text=True).stdout.splitlines()
    return [line for line in found if f" {user.home}/" in line]


def assert_nothing_left(user: User) -> None:
    """No container, helper process, namespace file, PID file, socket or log of the user's."""
    assert user("ps", "-aq").stdout == ""
    assert helpers_of(user) == []
    run = user.home / "run" / "pinnace"
    files = sorted(str(p.relative_to(run)) for p in run.rglob("*") if not p.is_dir())
    assert files == ["pause.pid"], files
    containers = user.home / "data" / "pinnace" / "containers"
    assert not containers.exists() or not any(containers.iterdir())


@pytest.mark.parametrize("network", NETWORKS)
def test_an_ordinary_user_publishes_a_port(user: User, network: str) -> None:
    port = free_port()
    cid = user("run", "-d", f"--net={network}", "-p", f"127.0.0.1:{port}:80", "busybox",
               "sh", "-c", SERVE).stdout.strip()
    assert fetch(port) == "published-42\n"
    assert f"127.0.0.1:{port}" in user("port", cid).stdout
    (helper,) = helpers_of(user)  # one helper, the user's (not root's)
    assert f" {network} " in helper
    user("rm", "-f", cid)
    assert not listening(port)
    assert_nothing_left(user)


def sockets(flag: str, port: int) -> list[str]:
    """``ss FLAG -lnp`` lines of sockets on local port ``port`` (-t TCP, -u UDP)."""
    return subprocess.run(["ss", "-H", flag, "-lnp", f"sport = :{port}"], capture_output=True,
                          text=True, check=True).stdout.splitlines()


@pytest.mark.parametrize("network", NETWORKS)
def test_udp_and_tcp_ports_are_opened_by_the_helper(user: User, network: str) -> None:
    """``-p .../udp`` opens a UDP socket and a TCP one only TCP, both the helper's."""
    udp, tcp = free_port(), free_port()
    cid = user("run", "-d", f"--net={network}", "-p", f"127.0.0.1:{udp}:53/udp", "-p",
               f"127.0.0.1:{tcp}:80", "busybox", "sleep", "60").stdout.strip()
    (helper,) = helpers_of(user)
    pid = helper.split()[0]
    assert [f"pid={pid}," in line for line in sockets("-u", udp)] == [True]
    assert [f"pid={pid}," in line for line in sockets("-t", tcp)] == [True]
    assert sockets("-t", udp) == [] and sockets("-u", tcp) == []
    user("rm", "-f", cid)
    assert sockets("-u", udp) == [] and sockets("-t", tcp) == []
    assert_nothing_left(user)


@pytest.mark.parametrize("network", NETWORKS)
def test_a_privileged_port_is_refused_naming_the_sysctl(user: User, network: str) -> None:
    proc = user("run", "--rm", f"--net={network}", "-p", "80:80", "busybox", "true",
                check=False)
    assert proc.returncode == 125 and proc.stderr.count("\n") == 1, proc.stderr
    assert "host port 80 is privileged" in proc.stderr
    assert "sysctl net.ipv4.ip_unprivileged_port_start=80" in proc.stderr
    assert_nothing_left(user)


@pytest.mark.parametrize("network", NETWORKS)
def test_a_port_taken_on_the_host_is_refused(user: User, network: str) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        proc = user("run", "--rm", f"--net={network}", "-p", f"127.0.0.1:{port}:80",
                    "busybox", "true", check=False)
    assert proc.returncode == 125 and proc.stderr.count("\n") == 1, proc.stderr
    assert f"127.0.0.1:{port}/tcp is already in use" in proc.stderr
    assert_nothing_left(user)


class ClosedTun(User):
    """``user`` whose pinnace starts (and makes its pause process) in a mount namespace
    where /dev/net/tun is ``tun``, a tun device node of mode 0600: what a host without
    udev's 0666 gives an ordinary user."""

    def __init__(self, user: User, tun: Path) -> None:
        super().__init__(user.name, user.home)
        self.tun = tun

    def argv(self, *args: str) -> list[str]:
        return ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                'mount --bind "$0" /dev/net/tun && exec "$@"', str(self.tun),
                *super().argv(*args)]


@pytest.mark.parametrize("network", NETWORKS)
def test_a_tun_device_the_user_may_not_open_is_explained(busybox_tar: Path, tmp_path: Path,
                                                         network: str) -> None:
    tun = tmp_path / "tun"
    subprocess.run(["mknod", "-m", "600", str(tun), "c", "10", "200"], check=True)
    for made in user_home("pinnace-test"):
        user = ClosedTun(made, tun)
        (user.home / "busybox.tar").write_bytes(busybox_tar.read_bytes())
        os.chmod(user.home / "busybox.tar", 0o644)
        user("import", str(user.home / "busybox.tar"), "busybox:latest")
        proc = user("run", "--rm", f"--net={network}", "busybox", "true", check=False)
        assert proc.returncode == 125 and proc.stderr.count("\n") == 1, proc.stderr
        assert f"{network} needs /dev/net/tun, which this user may not open (mode 600): " \
               "root: chmod 666 /dev/net/tun" in proc.stderr
        assert_nothing_left(user)
        checks = {c["check"]: c for c in json.loads(user("doctor", "--format", "json",
                                                         check=False).stdout)}
        check = checks[f"network {network}: /dev/net/tun"]
        assert check["ok"] == "warn" and "may not open it" in check["detail"]
        assert "make deps" in check["fix"]
        assert user("run", "--rm", "busybox", "true").returncode == 0  # --net=none works


def test_the_contract_suite_passes_as_an_ordinary_user() -> None:
    """The network contract suite for both networks, run by pinnace-test in a user, mount
    and network namespace of its own (root there is the user, as in a rootless pinnace)."""
    tests = Path(__file__).parent
    for user in user_home("pinnace-test"):
        proc = subprocess.run(
            ["runuser", "-u", user.name, "--", "env", "-i", f"PATH={user.env['PATH']}",
             f"HOME={user.home}", "unshare", "--user", "--map-root-user", "--mount", "--net",
             sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q",
             f"--basetemp={user.home / 'pytest'}", str(tests / "test_net_contract.py"),
             "-k", "Slirp4netnsContract or PastaContract"],
            capture_output=True, text=True, timeout=600, cwd=tests.parent)
        count = 2 * sum(1 for name, _ in inspect.getmembers(NetworkContract)
                        if name.startswith("test_"))
        assert proc.returncode == 0 and f"{count} passed" in proc.stdout, proc.stdout[-3000:]
        assert helpers_of(user) == []


@pytest.mark.parametrize("network", NETWORKS)
def test_root_publishes_a_port_with_a_user_mode_network(npn: Pinnace, busybox: str,
                                                         netns: Path, network: str) -> None:
    """As root, in the test's network namespace (with an uplink, which pasta needs)."""
    namespaces.run_in(str(netns), namespaces.add_uplink)
    cid = npn("run", "-d", f"--net={network}", "-p", "127.0.0.1:18080:80", busybox, "sh",
              "-c", SERVE).stdout.strip()
    assert fetch(18080, netns) == "published-42\n"
    assert "10.0.2.100/24" in npn("exec", cid, "ip", "-4", "-o", "addr").stdout
    npn("rm", "-f", cid)
    assert subprocess.run(["pgrep", "-f", f"{HELPERS}.*{cid[:12]}"],
                          capture_output=True).returncode == 1  # stopped with the container
