"""The network contract: tests every network plugin must pass (``pinnace.testing.network``),
the way CNI plugins are held to the CNI spec.

Subclass :class:`NetworkContract` in a test module, build your plugin in
``make_plugin``, say whether it connects containers to each other, and run
pytest as root::

    from pinnace.plugin import PluginContext
    from pinnace.testing.network import NetworkContract
    from my_plugin import MyNetwork

    class TestMyNetwork(NetworkContract):
        connected = True

        def make_plugin(self, tmp_path):
            return MyNetwork(PluginContext.for_plugin(
                MyNetwork, "mine", "network", {"pool": "10.9.0.0/24"},
                data_dir=tmp_path / "data", run_dir=tmp_path / "run"))

What is checked follows from the contract, not from how a driver works:
``add`` configures the container's namespace as its result says, ``check``
notices a broken container, ``del`` is idempotent, runs without ``add`` and
after the namespace vanished, nothing is left on the host after ``del`` (a
driver may change nothing on the host at all, like a macvlan), concurrent
adds get distinct addresses, containers reach each other when
``connected`` (and cannot when not), and a driver with named networks
completes, serves and removes a network cleanly.

Every test first creates a private network namespace and moves the test's
thread into it: that namespace plays the host, so the plugin's veths, routes
and rules are made there and the machine's own network is never touched.
Override :meth:`NetworkContract.prepare_host` to make what the plugin expects
to find on a host (a parent link for a macvlan). Each container is a network
namespace of its own, bind-mounted on a file (:mod:`pinnace.netns`), as the
engine makes them. The suite calls the hook methods on the instance directly,
by keyword, as pinnace does, and stands in for the core where the core has a
part: for a driver with named networks it takes the driver's default network
and leases addresses from its subnet (``Attachment.address``), as the engine
does. It reads the namespaces with iproute2's ``ip -j`` and sends traffic only
between the namespaces it made. A plugin that shares the host's namespace
(``host_netns`` set on its class, like ``host``) gets the host namespace as
every container's.
"""

from __future__ import annotations

import ipaddress
import json
import shutil
import socket
import subprocess
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from pinnace.plugin import (
    Attachment,
    FailedPrecondition,
    InvalidConfig,
    Network,
    NetworkResult,
    netns,
    routable_ipv4,
)
from pinnace.testing import assert_implements_role


def ip_json(*args: str) -> list[dict[str, Any]]:
    """``ip -j ARGS`` in the calling thread's network namespace, parsed."""
    proc = subprocess.run(["ip", "-j", *args], capture_output=True, text=True, check=True)
    return json.loads(proc.stdout or "[]")


def links_up(path: str) -> dict[str, bool]:
    """Interface name -> whether it is up, in the namespace at ``path``."""
    with netns.entered(path):
        return {link["ifname"]: "UP" in link.get("flags", []) for link in ip_json("link", "show")}


def host_leftovers() -> dict[str, list[str]]:
    """What a plugin can leave in the calling thread's namespace: links, addresses,
    routes and policy rules (IPv4 and IPv6), and iptables and nft rules when those
    tools are installed, without packet counters. Comparable between two calls."""
    state = {
        "links": sorted(f"{ln['ifname']} {ln.get('link_type', '')}" for ln in ip_json("link")),
        "addresses": sorted(f"{a['ifname']} {i['local']}/{i['prefixlen']}"
                            for a in ip_json("address") for i in a.get("addr_info", [])),
    }
    for family in ("-4", "-6"):
        state[f"routes{family}"] = sorted(  # flags: link state (linkdown), not configuration
            json.dumps({k: v for k, v in r.items() if k != "flags"}, sort_keys=True)
            for r in ip_json(family, "route", "show", "table", "all"))
        state[f"rules{family}"] = sorted(json.dumps(r, sort_keys=True)
                                         for r in ip_json(family, "rule"))
    for tool in ("iptables-save", "ip6tables-save"):
        if shutil.which(tool):
            out = subprocess.run([tool], capture_output=True, text=True).stdout
            state[tool] = sorted(line.split(" [")[0] for line in out.splitlines()
                                 if line and not line.startswith("#"))
    if shutil.which("nft"):
        out = subprocess.run(["nft", "--stateless", "list", "ruleset"], capture_output=True,
                             text=True).stdout
        state["nft"] = [line.strip() for line in out.splitlines() if line.strip()]
    return state


def assert_unchanged(before: dict[str, list[str]]) -> None:
    """The calling thread's namespace is as :func:`host_leftovers` saw it in ``before``;
    otherwise fail naming what appeared and what vanished."""
    after = host_leftovers()
    changes = []
    for key in sorted(set(before) | set(after)):
        old, new = before.get(key, []), after.get(key, [])
        changes += [f"{key}: left behind {item}" for item in new if item not in old]
        changes += [f"{key}: removed {item}" for item in old if item not in new]
    assert not changes, "\n".join(changes)


def peer_address(result: NetworkResult, shares_host: bool) -> str:
    """Where another container reaches this one: its first routable IPv4 address
    (loopback when the plugin puts every container in the host's namespace)."""
    address = "127.0.0.1" if shares_host else routable_ipv4([ip.address for ip in result.ips])
    assert address, f"network_add returned no routable IPv4 address: {result}"
    return address


def sandboxed_links(result: NetworkResult, path: str) -> list[str]:
    """The interfaces (other than ``lo``) that ``add`` said it made in the namespace at ``path``."""
    return [i.name for i in result.interfaces if i.sandbox == path and i.name != "lo"]


def default_network(plugin: Any) -> Network | None:
    """The network a container of this driver joins when none is named: the driver's
    ``pinnace_network_default`` (None for drivers without named networks)."""
    default = getattr(plugin, "pinnace_network_default", None)
    return default() if default is not None else None


def exchange(client_ns: str, server_ns: str, address: str, payload: bytes) -> bytes:
    """Listen on TCP in ``server_ns``, connect from ``client_ns`` to ``address``, send
    ``payload`` and have the server echo it; return what came back."""
    with netns.entered(server_ns):
        server = socket.create_server(("", 0))
    with server:
        with netns.entered(client_ns):
            client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        with client:
            client.settimeout(10)
            client.connect((address, server.getsockname()[1]))
            client.sendall(payload)
            server.settimeout(10)
            conn, _ = server.accept()
            with conn:
                conn.sendall(conn.recv(len(payload)))
            return client.recv(len(payload))


class Containers:
    """A plugin's network hooks for containers whose namespaces this class makes."""

    def __init__(self, plugin: Any, host: str, tmp_path: Path) -> None:
        self.plugin, self.host, self.dir = plugin, host, tmp_path
        self.shares_host = bool(getattr(plugin, "host_netns", False))
        self.network = None if self.shares_host else default_network(plugin)
        self.made: list[Attachment] = []
        self.leases: dict[tuple[str, str], str] = {}
        """(network name, container ID) -> leased address, as the core keeps them."""

    def new(self, network: Network | None = None) -> Attachment:
        """A container: a fresh ID and, unless the plugin shares the host's, a namespace.
        On a named network (``network``, else the driver's default) it gets an address
        leased from the subnet, and the network's gateway and options, as from the core."""
        cid = uuid.uuid4().hex + uuid.uuid4().hex
        path = self.host
        if not self.shares_host:
            path = str(self.dir / f"ns-{cid[:12]}")
            netns.create(path)
        network = network or self.network
        if network is None:  # as the core: one attachment named after the plugin
            attachment = Attachment(container_id=cid, netns=path,
                                    network=getattr(getattr(self.plugin, "ctx", None), "name",
                                                    "test"))
        else:
            attachment = Attachment(
                container_id=cid, netns=path, network=network.name,
                options=dict(network.options), address=self.lease(network, cid),
                gateway="" if network.internal else network.gateway, internal=network.internal)
        self.made.append(attachment)
        return attachment

    def lease(self, network: Network, container_id: str) -> str:
        """The first free address of ``network``'s subnet (not its gateway), as CIDR."""
        subnet = ipaddress.ip_network(network.subnet)
        taken = {ipaddress.ip_interface(a).ip for (name, _), a in self.leases.items()
                 if name == network.name}
        gateway = ipaddress.ip_address(network.gateway) if network.gateway else None
        free = next((h for h in subnet.hosts() if h != gateway and h not in taken), None)
        assert free is not None, f"the suite ran out of addresses in {subnet}"
        self.leases[network.name, container_id] = f"{free}/{subnet.prefixlen}"
        return self.leases[network.name, container_id]

    def add(self, attachment: Attachment) -> NetworkResult:
        """``network_add``; checks the result type."""
        result = self.plugin.pinnace_network_add(attachment=attachment)
        assert isinstance(result, NetworkResult), f"network_add returned {result!r}"
        return result

    def delete(self, attachment: Attachment) -> None:
        """``network_del``; then the address is free again, as the core releases it."""
        self.plugin.pinnace_network_del(attachment=attachment)
        self.leases.pop((attachment.network, attachment.container_id), None)

    def check(self, attachment: Attachment) -> None:
        """``network_check``."""
        self.plugin.pinnace_network_check(attachment=attachment)

    def gone(self, attachment: Attachment) -> None:
        """The container's namespace disappears (its last process exited)."""
        if attachment.netns != self.host:
            netns.delete(attachment.netns)

    def cleanup(self) -> None:
        """``del`` every container made and remove their namespaces."""
        for attachment in self.made:
            try:
                self.delete(attachment)
            finally:
                self.gone(attachment)


class NetworkContract:
    """The tests a network plugin must pass. Subclass it as ``Test...``, implement
    :meth:`make_plugin` and set :attr:`connected`."""

    connected: bool = True
    """Whether the plugin connects containers to each other (``none`` does not)."""

    named_subnet: str = "10.199.0.0/24"
    """The subnet the suite asks for when it creates a named network (``--subnet``);
    it must not overlap the driver's default network."""

    def make_plugin(self, tmp_path: Path) -> Any:
        """A fresh instance of the plugin under test, with its data under ``tmp_path``."""
        raise NotImplementedError("subclasses of NetworkContract return their plugin here")

    def prepare_host(self) -> None:
        """Make what the plugin expects to find on a host before any container (a parent
        link for a macvlan driver, say). Runs inside the private host namespace, before
        :meth:`make_plugin`; what it makes goes with that namespace."""

    @pytest.fixture
    def host(self, tmp_path: Path) -> Iterator[str]:
        """A private network namespace with ``lo`` up, entered for the whole test."""
        if shutil.which("ip") is None:
            raise AssertionError("the network contract reads namespaces with ip (iproute2)")
        path = str(tmp_path / "host-netns")
        netns.create(path)
        try:
            with netns.entered(path):
                netns.loopback_up()
                self.prepare_host()
                yield path
        finally:
            netns.delete(path)

    @pytest.fixture
    def net(self, host: str, tmp_path: Path) -> Iterator[Containers]:
        """The plugin's hooks on containers made in ``host``; every one is deleted afterwards."""
        containers = Containers(self.make_plugin(tmp_path), host, tmp_path)
        try:
            yield containers
        finally:
            containers.cleanup()

    def settled(self, net: Containers) -> dict[str, list[str]]:
        """The host's state once the plugin's shared parts (a bridge...) exist:
        one container is added and deleted first, then the state is read."""
        first = net.new()
        net.add(first)
        net.delete(first)
        return host_leftovers()

    # ----------------------------------------------------------------- hooks
    def test_implements_every_network_hook(self, tmp_path: Path) -> None:
        """pluggy accepts the plugin and finds every required network hook on it."""
        assert_implements_role(self.make_plugin(tmp_path), "network")

    # ------------------------------------------------------------ add, check
    def test_add_configures_the_container_namespace(self, net: Containers) -> None:
        """Every address and route of the result is in the container's namespace,
        its interfaces and ``lo`` are up, and ``check`` is satisfied."""
        box = net.new()
        result = net.add(box)
        with netns.entered(box.netns):
            addresses = {(a["ifname"], f"{i['local']}/{i['prefixlen']}")
                         for a in ip_json("address") for i in a.get("addr_info", [])}
            routes = {r["dst"] for family in ("-4", "-6") for r in ip_json(family, "route")}
        up = links_up(box.netns)
        assert up.get("lo"), f"lo is not up in the container: {up}"
        for ip in result.ips:
            ifname = result.interfaces[ip.interface].name
            assert (ifname, ip.address) in addresses, f"{ip.address} not on {ifname}: {addresses}"
            assert up.get(ifname), f"{ifname} is not up in the container: {up}"
        for route in result.routes:
            dst = "default" if ipaddress.ip_network(route.dst).prefixlen == 0 else route.dst
            assert dst in routes, f"route {route.dst} missing in the container: {routes}"
        net.check(box)

    def test_check_notices_a_broken_container(self, net: Containers) -> None:
        """With the container's interfaces deleted and ``lo`` down, ``check`` raises
        FailedPrecondition (a plugin sharing the host's namespace owns nothing there,
        and stays satisfied)."""
        box = net.new()
        net.add(box)
        if net.shares_host:
            net.check(box)
            return
        with netns.entered(box.netns):
            for ifname in links_up(box.netns):
                how = ["set", ifname, "down"] if ifname == "lo" else ["delete", ifname]
                subprocess.run(["ip", "link", *how], check=True)
        with pytest.raises(FailedPrecondition):
            net.check(box)

    # ------------------------------------------------------------------- del
    def test_del_is_idempotent_and_runs_without_add(self, net: Containers) -> None:
        """``del`` of a container never added, and a second ``del``, succeed and change nothing."""
        before = self.settled(net)
        never = net.new()
        net.delete(never)
        box = net.new()
        net.add(box)
        net.delete(box)
        net.delete(box)
        assert_unchanged(before)

    def test_nothing_left_after_del(self, net: Containers) -> None:
        """After ``del`` no link, address, route, rule or firewall rule of the container
        remains on the host (whether or not ``add`` changed the host at all), and the
        interfaces ``add`` made in the container's namespace are gone from it (``del``
        also detaches a running container from one network)."""
        before = self.settled(net)
        boxes = [net.new() for _ in range(2)]
        results = [net.add(box) for box in boxes]
        for box, result in zip(boxes, results, strict=True):
            net.delete(box)
            if not net.shares_host:
                left = set(sandboxed_links(result, box.netns)) & set(links_up(box.netns))
                assert not left, f"del left {sorted(left)} in the container's namespace"
        assert_unchanged(before)

    def test_del_after_the_namespace_is_gone(self, net: Containers) -> None:
        """A container whose namespace vanished (a crash) is still cleaned up by ``del``,
        and what it held (its address) can be used again."""
        before = self.settled(net)
        box = net.new()
        first = net.add(box)
        net.gone(box)
        net.delete(box)
        assert_unchanged(before)
        again = net.new()
        second = net.add(again)
        net.check(again)
        assert len(second.ips) == len(first.ips)

    def test_concurrent_adds_get_distinct_addresses(self, net: Containers) -> None:
        """Six containers added at once each get addresses of their own, and all pass ``check``."""
        before = self.settled(net)
        boxes = [net.new() for _ in range(6)]
        with ThreadPoolExecutor(6) as pool:
            results = list(pool.map(net.add, boxes))
        for box in boxes:
            net.check(box)
        if self.connected and not net.shares_host:
            addresses = [peer_address(r, False) for r in results]
            assert len(set(addresses)) == len(addresses), f"duplicate addresses: {addresses}"
        for box in boxes:
            net.delete(box)
        assert_unchanged(before)

    # ----------------------------------------------------------- connectivity
    def test_containers_reach_each_other_or_are_isolated(self, net: Containers) -> None:
        """A connected plugin carries TCP between two containers both ways, at the
        addresses ``add`` returned; one that is not keeps each container to itself."""
        a, b = net.new(), net.new()
        ra, rb = net.add(a), net.add(b)
        if self.connected:
            to_b, to_a = peer_address(rb, net.shares_host), peer_address(ra, net.shares_host)
            assert exchange(a.netns, b.netns, to_b, b"ping a->b") == b"ping a->b"
            assert exchange(b.netns, a.netns, to_a, b"ping b->a") == b"ping b->a"
            return
        assert not net.shares_host, "a plugin sharing the host's namespace connects containers"
        with pytest.raises(OSError):  # b's loopback is not a's
            exchange(a.netns, b.netns, "127.0.0.1", b"leak")

    # ---------------------------------------------------------- named networks
    def test_named_networks_are_created_used_and_removed(self, net: Containers) -> None:
        """A driver with named networks implements ``create`` and ``remove`` (and ``default``
        only with them); ``create`` keeps the subnet asked for, puts the gateway in it and
        picks an untaken subnet when none is asked (or refuses with InvalidConfig);
        containers on the created network pass ``check`` and reach each other when
        ``connected``; and after ``del`` and ``remove`` (twice: it is idempotent) the host
        is as before the network existed. A driver without them implements none."""
        hooks = {verb for verb in ("default", "create", "remove")
                 if hasattr(net.plugin, f"pinnace_network_{verb}")}
        if "create" not in hooks:
            assert not hooks, f"named-network hooks without create and remove: {sorted(hooks)}"
            return
        assert "remove" in hooks, "a driver that creates networks must remove them"
        taken = [net.network.subnet] if net.network else []
        chosen = self.create_network(net, "", taken, "choose")
        if chosen is not None:
            subnet = ipaddress.ip_network(chosen.subnet)
            assert not any(subnet.overlaps(ipaddress.ip_network(t)) for t in taken), \
                f"create chose {subnet}, which overlaps a taken subnet {taken}"
            self.use_network(net, chosen)
            net.plugin.pinnace_network_remove(network=chosen)
        before = host_leftovers()  # what the driver shares between networks exists now
        asked = self.create_network(net, self.named_subnet, taken, "asked")
        assert asked is not None, f"create refused the subnet {self.named_subnet}"
        assert asked.subnet == self.named_subnet, \
            f"create changed the subnet asked for: {self.named_subnet} -> {asked.subnet}"
        assert ipaddress.ip_address(asked.gateway) in ipaddress.ip_network(asked.subnet), \
            f"gateway {asked.gateway} is outside {asked.subnet}"
        self.use_network(net, asked)
        net.plugin.pinnace_network_remove(network=asked)
        net.plugin.pinnace_network_remove(network=asked)
        assert_unchanged(before)

    def create_network(self, net: Containers, subnet: str, taken: list[str],
                       name: str) -> Network | None:
        """``pinnace_network_create`` of a draft as ``network create`` makes it; None when
        the driver refuses to choose a subnet itself (InvalidConfig: "pass --subnet")."""
        draft = Network(name=f"contract-{name}", id=uuid.uuid4().hex + uuid.uuid4().hex,
                        driver=getattr(getattr(net.plugin, "ctx", None), "name", "test"),
                        subnet=subnet, gateway="")
        try:
            network = net.plugin.pinnace_network_create(network=draft, taken=list(taken))
        except InvalidConfig:
            if subnet:
                raise
            return None
        assert isinstance(network, Network), f"network_create returned {network!r}"
        assert (network.name, network.id) == (draft.name, draft.id), \
            f"network_create renamed the network: {network}"
        return network

    def use_network(self, net: Containers, network: Network) -> None:
        """Two containers on ``network``: added, checked, connected if the driver connects
        containers, deleted."""
        a, b = net.new(network), net.new(network)
        ra, rb = net.add(a), net.add(b)
        net.check(a)
        net.check(b)
        if self.connected:
            to_b, to_a = peer_address(rb, False), peer_address(ra, False)
            assert ipaddress.ip_address(to_b) in ipaddress.ip_network(network.subnet), \
                f"{to_b} is outside network {network.name} ({network.subnet})"
            assert exchange(a.netns, b.netns, to_b, b"named a->b") == b"named a->b"
            assert exchange(b.netns, a.netns, to_a, b"named b->a") == b"named b->a"
        net.delete(a)
        net.delete(b)
