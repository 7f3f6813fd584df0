"""The bridge, host and container: networks, each test inside a private network namespace
of its own (the ``netns``/``npn`` fixtures): real bridges, veths and iptables rules there.

Long-running containers run detached (``run -d``) and are removed at the end.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import Pinnace

from pinnace import netns as netns_mod
from pinnace.testing.netns import http_get, leftovers, run_in

GET = 'printf "GET / HTTP/1.0\\r\\n\\r\\n" | nc -w 3 {host} {port}'


def httpd(text: str, port: int = 80) -> list[str]:
    """A busybox command serving ``text`` over HTTP on ``port``."""
    return ["sh", "-c", f"mkdir -p /www && echo {text} > /www/index.html && "
                        f"exec httpd -f -p {port} -h /www"]


def wait_until(check: Callable[[], Any], what: str, timeout: float = 60) -> Any:
    """Poll ``check`` until it returns something true; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, AssertionError):
            result = check()
            if result:
                return result
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def from_another_host(netns: Path, port: int) -> str:
    """GET / on the test namespace's address from a second namespace wired to it by a veth
    pair (192.0.2.0/24, TEST-NET-1): another host, as far as the published port knows."""
    from pinnace.testing.netns import private_netns

    with private_netns(netns.with_name("remote")) as remote:
        holder = subprocess.Popen(["nsenter", f"--net={remote}", "sleep", "60"])
        try:
            run_in(netns, "ip", "link", "add", "rmt0", "type", "veth", "peer", "name", "rmt1")
            run_in(netns, "ip", "link", "set", "rmt1", "netns", str(holder.pid))
            run_in(netns, "ip", "addr", "add", "192.0.2.1/24", "dev", "rmt0")
            run_in(netns, "ip", "link", "set", "rmt0", "up")
            run_in(remote, "ip", "addr", "add", "192.0.2.2/24", "dev", "rmt1")
            run_in(remote, "ip", "link", "set", "rmt1", "up")
            return wait_until(lambda: http_get(remote, "192.0.2.1", port), "the remote GET", 20)
        finally:
            holder.kill()
            holder.wait()
            run_in(netns, "ip", "link", "del", "rmt0", check=False)


class Containers:
    """Detached containers of one test (``run -d``), removed at its end."""

    def __init__(self, pn: Pinnace, image: str) -> None:
        self.pn, self.image = pn, image
        self.names: list[str] = []

    def start(self, name: str, *args: str, command: list[str] | None = None,
              ready_port: int | None = None) -> dict[str, Any]:
        """Run container ``name`` detached; wait until it runs (and serves on ``ready_port``)."""
        self.names.append(name)
        self.pn("run", "-d", "--name", name, *args, self.image, *(command or ["sleep", "1000"]))
        info = wait_until(lambda: self.running(name), f"container {name} to run")
        if ready_port:
            ip = next(iter(info["Networks"].values()))["IPAddress"]
            wait_until(lambda: "200 OK" in self.exec(name, GET.format(host=ip, port=ready_port)),
                       f"{name} to serve on {ready_port}")
        return info

    def running(self, name: str) -> dict[str, Any] | None:
        """The container's network settings once it runs, else None."""
        rows = json.loads(self.pn("ps", "-a", "--format", "json").stdout)
        state = next(r["State"] for r in rows if r["Names"] == [name])
        if state == "exited":
            raise AssertionError(f"{name} exited: {self.pn('logs', name, check=False).stderr}")
        return settings(self.pn, name) if state == "running" else None

    def exec(self, name: str, script: str, check: bool = False) -> str:
        """Run ``sh -c script`` in a new container sharing ``name``'s network; its output."""
        proc = self.pn("run", "--rm", f"--net=container:{name}", self.image, "sh", "-c", script,
                       check=check)
        return proc.stdout + proc.stderr

    def remove_all(self) -> None:
        """rm -f every container started here."""
        for name in self.names:
            self.pn("rm", "-f", name, check=False)
        self.names.clear()


def settings(pn: Pinnace, name: str) -> dict[str, Any]:
    """A container's network settings, read through the engine API."""
    from pinnace import config
    from pinnace.engine import Engine

    engine = Engine(config.load(None, {"root": str(pn.root)}))
    return engine.networks.settings(engine.container(name))


@pytest.fixture
def ctrs(npn: Pinnace, busybox: str) -> Iterator[Containers]:
    """Background containers inside the test's namespace."""
    c = Containers(npn, busybox)
    try:
        yield c
    finally:
        c.remove_all()


def ipv4(output: str) -> str:
    """The first ``inet A.B.C.D/N`` in ``ip addr`` output."""
    return next(w.split()[1] for w in output.splitlines() if w.strip().startswith("inet ")
                and not w.split()[1].startswith("127."))


# --------------------------------------------------------------------------- basics
def test_bridge_gives_address_route_hosts_resolv_and_cleans_up(npn: Pinnace, busybox: str,
                                                                netns: Path) -> None:
    out = npn("run", "--rm", "--net=bridge", "--name", "box", "--hostname", "boxhost",
              "--dns", "192.0.2.53", "--add-host", "db.example:192.0.2.7", busybox,
              "sh", "-c", "ip -4 addr show eth0; echo ---; ip route; echo ---; cat /etc/hosts;"
              " echo ---; cat /etc/resolv.conf; echo ---; cat /etc/hostname").stdout
    addr, routes, hosts, resolv, hostname = out.split("---\n")
    iface = ipaddress.ip_interface(ipv4(addr))
    assert iface.network == ipaddress.ip_network("10.90.0.0/16") and str(iface.ip) != "10.90.0.1"
    assert "default via 10.90.0.1 dev eth0" in routes
    assert f"{iface.ip}\tboxhost box" in hosts and "192.0.2.7\tdb.example" in hosts
    assert "127.0.0.1\tlocalhost" in hosts
    assert [line for line in resolv.splitlines() if line.startswith("nameserver")] == [
        "nameserver 192.0.2.53"]
    assert hostname.strip() == "boxhost"
    assert leftovers(netns) == []
    assert "pinnace0" in run_in(netns, "ip", "-o", "link").stdout  # the network stays
    assert f"{iface.ip}" not in run_in(netns, "ip", "route").stdout


def test_reachability_both_ways_and_hairpin(ctrs: Containers, netns: Path) -> None:
    info = ctrs.start("web", "--net=bridge", "-p", "8080:80", command=httpd("hello-web"),
                      ready_port=80)
    ip = info["Networks"]["pinnace0"]["IPAddress"]
    shown = json.loads(ctrs.pn("inspect", "web").stdout)[0]["NetworkSettings"]
    assert shown["Networks"]["pinnace0"]["IPAddress"] == ip == shown["IPAddress"]
    assert shown["Networks"]["pinnace0"]["MacAddress"].count(":") == 5
    assert shown["Ports"] == {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}]}
    assert "hello-web" in http_get(netns, ip, 80)               # host -> container
    assert "hello-web" in http_get(netns, "127.0.0.1", 8080)    # published, from loopback
    # container -> host: a server in the test's namespace on the gateway's address
    with netns_mod.entered(str(netns)):
        server = socket.create_server(("10.90.0.1", 7070))
    got: list[bytes] = []

    def accept() -> None:
        server.settimeout(30)
        conn, _ = server.accept()
        with conn:
            got.append(conn.recv(100))

    thread = threading.Thread(target=accept)
    thread.start()
    ctrs.exec("web", "echo from-container | nc -w 3 10.90.0.1 7070")
    thread.join()
    server.close()
    assert got == [b"from-container\n"]
    assert "hello-web" in from_another_host(netns, 8080)       # published, from outside
    # hairpin: a container reaching a published port through the host's address
    out = ctrs.pn("run", "--rm", "--net=bridge", ctrs.image, "sh", "-c",
                  GET.format(host="10.90.0.1", port=8080)).stdout
    assert "hello-web" in out
    assert "hello-web" in ctrs.exec("web", GET.format(host="10.90.0.1", port=8080))


def test_publish_tcp_and_udp(ctrs: Containers, netns: Path) -> None:
    info = ctrs.start("svc", "--net=bridge", "-p", "127.0.0.1:8081:80", "-p", "9053:53/udp",
                      command=httpd("tcp-ok"), ready_port=80)
    assert info["Ports"] == {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8081"}],
                             "53/udp": [{"HostIp": "0.0.0.0", "HostPort": "9053"}]}
    assert "tcp-ok" in http_get(netns, "127.0.0.1", 8081)
    # UDP: a socket bound in the container's namespace receives what the host sends
    with netns_mod.entered(info["SandboxKey"]):
        listener = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    listener.bind(("0.0.0.0", 53))
    listener.settimeout(10)
    with netns_mod.entered(str(netns)):
        sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender.sendto(b"udp-ping", ("127.0.0.1", 9053))
    data, peer = listener.recvfrom(100)
    listener.sendto(b"udp-pong", peer)
    sender.settimeout(10)
    assert data == b"udp-ping" and sender.recv(100) == b"udp-pong"
    listener.close()
    sender.close()


def test_publish_all_uses_exposed_ports(npn: Pinnace, busybox_tar: Path, netns: Path) -> None:
    npn("import", "-c", 'CMD ["sh"]', "-c", "EXPOSE 80 53/udp", str(busybox_tar), "exposing")
    c = Containers(npn, "exposing")
    try:
        info = c.start("all", "-P")
        ports = info["Ports"]
        assert set(ports) == {"80/tcp", "53/udp"}
        assert all(int(p[0]["HostPort"]) > 0 for p in ports.values())
        rules = run_in(netns, "iptables-save", "-t", "nat").stdout
        for p in ports.values():
            assert f"--dport {p[0]['HostPort']} " in rules
    finally:
        c.remove_all()
    assert leftovers(netns) == []


def test_host_network_and_ip_flag(npn: Pinnace, busybox: str, netns: Path) -> None:
    run_in(netns, "ip", "link", "add", "pntesthost", "type", "bridge")
    out = npn("run", "--rm", "--net=host", busybox, "ip", "-o", "link").stdout
    assert "pntesthost" in out and "eth0" not in out
    out = npn("run", "--rm", "--ip", "10.90.3.4", busybox, "ip", "-4", "addr", "show",
              "eth0").stdout
    assert ipv4(out) == "10.90.3.4/16"


def test_twenty_concurrent_runs_get_distinct_addresses(npn: Pinnace, busybox: str,
                                                       netns: Path) -> None:
    """Twenty ``run -d`` at once, all alive together at the end: twenty addresses."""
    procs = [npn.popen("run", "-d", "--net=bridge", busybox, "sleep", "600",
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(20)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0] * 20, [e for _, e in outs if e]
    ids = [out.strip() for out, _ in outs]
    addresses = {npn("exec", cid, "ip", "-4", "addr", "show", "eth0").stdout for cid in ids}
    assert len({ipv4(text) for text in addresses}) == 20
    npn("rm", "-f", *ids)
    assert leftovers(netns) == []
    assert npn("ps", "-a", "-q").stdout.strip() == ""
    from pinnace.state import State

    assert State(npn.root / "state.db").query("SELECT * FROM endpoints") == []


# --------------------------------------------------------------------------- the demo
def test_two_service_demo(ctrs: Containers, npn: Pinnace, netns: Path) -> None:
    """An internal API reachable only from the frontend, an external web on a host port."""
    npn("network", "create", "--subnet", "10.77.0.0/24", "--internal", "backend")
    npn("network", "create", "frontend")
    api = ctrs.start("api", "--network", "backend", command=httpd("internal-api"))
    ctrs.start("web", "--network", "frontend", "-p", "8080:80", command=httpd("external-web"),
               ready_port=80)
    npn("network", "connect", "backend", "web")
    api_ip = api["Networks"]["backend"]["IPAddress"]
    assert ipaddress.ip_address(api_ip) in ipaddress.ip_network("10.77.0.0/24")
    assert "external-web" in http_get(netns, "127.0.0.1", 8080)
    assert "internal-api" in ctrs.exec("web", GET.format(host="api", port=80))
    # api is unreachable from the host, from another network, and has no way out
    with pytest.raises(OSError):
        http_get(netns, api_ip, 80)
    other = npn("run", "--rm", "--net=bridge", ctrs.image, "sh", "-c",
                GET.format(host=api_ip, port=80), check=False)
    assert "internal-api" not in other.stdout
    web_front = settings(npn, "web")["Networks"]["frontend"]["IPAddress"]
    other = npn("run", "--rm", "--net=bridge", ctrs.image, "sh", "-c",
                GET.format(host=web_front, port=80), check=False)
    assert "external-web" not in other.stdout  # networks are isolated from each other
    out = ctrs.exec("api", "ip route; " + GET.format(host="10.90.0.1", port=8080))
    assert "default" not in out and "external-web" not in out
    # names: web's hosts file lists api; api's lists web once web joined
    assert "\tapi" in ctrs.exec("web", "cat /etc/hosts")
    assert "\tweb" in ctrs.exec("api", "cat /etc/hosts")
    # in use: rm refuses; after the containers go, rm and prune clean everything up
    proc = npn("network", "rm", "backend", check=False)
    assert proc.returncode == 125
    assert proc.stderr.strip() == "Error: network backend is in use by container api, web"
    ls = json.loads(npn("network", "ls", "--format", "json").stdout)
    assert {n["Name"] for n in ls} >= {"backend", "frontend"}
    ctrs.remove_all()
    assert npn("network", "rm", "backend").stdout.strip() == "backend"
    assert "frontend" in npn("network", "prune", "-f").stdout
    assert leftovers(netns) == []
    assert "pn-" not in run_in(netns, "ip", "-o", "link").stdout
    assert "pn:net:pn-" not in run_in(netns, "iptables-save").stdout
    assert "10.77.0." not in run_in(netns, "ip", "route").stdout


# --------------------------------------------------------------------------- bad input
def one_line_error(proc: subprocess.CompletedProcess[str], *words: str) -> None:
    """Exit 125 with one ``Error:`` line that contains ``words``."""
    assert proc.returncode == 125, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error:"), proc.stderr
    for word in words:
        assert word in lines[0], lines[0]


def test_overlapping_subnet_and_bad_gateway(npn: Pinnace, netns: Path) -> None:
    npn("network", "create", "--subnet", "10.77.0.0/24", "one")
    one_line_error(npn("network", "create", "--subnet", "10.77.0.0/16", "two", check=False),
                   "overlaps network one")
    one_line_error(npn("network", "create", "--subnet", "10.90.5.0/24", "three", check=False),
                   "overlaps network pinnace0")
    one_line_error(npn("network", "create", "--subnet", "10.78.0.0/24", "--gateway", "10.79.0.1",
                       "four", check=False), "outside subnet")
    one_line_error(npn("network", "create", "one", check=False), "already exists")
    assert npn("network", "ls", "-q").stdout.split() == ["one", "pinnace0"]


def test_address_outside_subnet_or_taken(ctrs: Containers, npn: Pinnace, netns: Path) -> None:
    npn("network", "create", "--subnet", "10.77.0.0/24", "small")
    one_line_error(npn("run", "--rm", "--network", "small", "--ip", "10.99.0.5", ctrs.image,
                       "true", check=False), "outside network small")
    one_line_error(npn("run", "--rm", "--network", "nope", ctrs.image, "true", check=False),
                   "network nope not found")
    npn("network", "create", "--internal", "closed")
    one_line_error(npn("run", "--rm", "--network", "closed", "-p", "8086:80", ctrs.image, "true",
                       check=False), "internal: it publishes no ports")
    ctrs.start("first", "--network", "small", "--ip", "10.77.0.9")
    one_line_error(npn("run", "--rm", "--network", "small", "--ip", "10.77.0.9", ctrs.image,
                       "true", check=False), "already in use")
    assert len(_veths(netns)) == 1  # only first's


def _veths(netns: Path) -> list[str]:
    return [line.split()[1].split("@")[0] for line in
            run_in(netns, "ip", "-o", "link").stdout.splitlines() if "pnv" in line]


def test_host_port_in_use(ctrs: Containers, npn: Pinnace, netns: Path) -> None:
    with netns_mod.entered(str(netns)):
        holder = socket.create_server(("0.0.0.0", 8082))
    try:
        one_line_error(npn("run", "--rm", "-p", "8082:80", ctrs.image, "true", check=False),
                       "8082/tcp is already in use")
    finally:
        holder.close()
    ctrs.start("owner", "-p", "8083:80")
    one_line_error(npn("run", "--rm", "-p", "8083:80", ctrs.image, "true", check=False),
                   "already published")
    assert npn("run", "--rm", "-p", "8083:80/udp", ctrs.image, "true").returncode == 0
    assert len(_veths(netns)) == 1
    assert [r for r in leftovers(netns) if "pn:ctr:" in r and "8083" not in r] == []


def test_kill_9_during_network_setup_is_cleaned_by_the_next_command(
        npn: Pinnace, busybox: str, netns: Path, tmp_path: Path) -> None:
    from test_plugins import install_fake

    site = tmp_path / "site"
    install_fake(site, "pinnace-stall", "pinnace_stall", '''
        import pathlib, time
        from pinnace.plugin import Plugin, hookimpl

        class Stall(Plugin):
            @hookimpl
            def pinnace_prepare_spec(self, spec):
                pathlib.Path(spec.netns).with_suffix(".stalled").touch()
                time.sleep(600)
        ''', {"pinnace.plugins": {"stall": "pinnace_stall:Stall"}})
    stalled = Pinnace(npn.root, env={"PYTHONPATH": str(site)}, prefix=tuple(npn.prefix))
    proc = stalled.popen("run", "--name", "victim", "-p", "8084:80", busybox, "true",
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_until(lambda: list((npn.root / "run" / "netns").glob("*.stalled")), "network setup")
    assert len(_veths(netns)) == 1 and "pn:ctr:" in run_in(netns, "iptables-save").stdout
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert npn("run", "--rm", "-p", "8084:80", busybox, "true").returncode == 0
    assert leftovers(netns) == []
    rows = json.loads(npn("ps", "-a", "--format", "json").stdout)
    assert [(r["Names"], r["State"]) for r in rows] == [(["victim"], "exited")]
    npn("rm", "victim")
    from pinnace.state import State

    state = State(npn.root / "state.db")
    assert state.query("SELECT * FROM ports") == [] and state.query("SELECT * FROM endpoints") == []


def test_without_iptables_ports_fail_clearly_and_the_rest_works(npn: Pinnace, busybox: str,
                                                                 netns: Path) -> None:
    npn.env["PATH"] = "/usr/bin:/bin"
    one_line_error(npn("run", "--rm", "-p", "8085:80", busybox, "true", check=False),
                   "publishing ports needs iptables")
    assert leftovers(netns) == []
    out = npn("run", "--rm", "--net=bridge", busybox, "ip", "-4", "addr", "show", "eth0").stdout
    assert ipaddress.ip_interface(ipv4(out)).network == ipaddress.ip_network("10.90.0.0/16")


def test_network_disconnect_and_container_mode_errors(ctrs: Containers, npn: Pinnace) -> None:
    npn("network", "create", "extra")
    ctrs.start("multi", "--net=bridge")
    npn("network", "connect", "extra", "multi")
    assert set(settings(npn, "multi")["Networks"]) == {"pinnace0", "extra"}
    assert "eth1" in ctrs.exec("multi", "ip -o link")
    npn("network", "disconnect", "extra", "multi")
    assert set(settings(npn, "multi")["Networks"]) == {"pinnace0"}
    assert "eth1" not in ctrs.exec("multi", "ip -o link")
    one_line_error(npn("network", "disconnect", "extra", "multi", check=False), "not connected")
    one_line_error(npn("run", "--rm", "--net=container:multi", "-p", "80:80", ctrs.image, "true",
                       check=False), "do not apply")
    one_line_error(npn("run", "--rm", "-p", "80:99999", ctrs.image, "true", check=False),
                   "1-65535")
    one_line_error(npn("run", "--rm", "--net=none", "-p", "80:80", ctrs.image, "true",
                       check=False), "--net=none has no addresses")
    one_line_error(npn("run", "--rm", "--add-host", "x", ctrs.image, "true", check=False),
                   "expected NAME:IP")


def test_subnet_and_gateway_of_a_network(npn: Pinnace, busybox: str, netns: Path) -> None:
    npn("network", "create", "--subnet", "10.78.0.0/24", "--gateway", "10.78.0.254", "gw")
    out = npn("run", "--rm", "--network", "gw", busybox, "sh", "-c",
              "ip -4 addr show eth0; ip route").stdout
    assert ipv4(out) == "10.78.0.1/24"  # the first address the gateway does not hold
    assert "default via 10.78.0.254 dev eth0" in out
    assert "inet 10.78.0.254/24" in run_in(netns, "ip", "-4", "addr").stdout
    shown = json.loads(npn("network", "inspect", "gw").stdout)[0]
    assert shown["IPAM"]["Config"] == [{"Subnet": "10.78.0.0/24", "Gateway": "10.78.0.254"}]
