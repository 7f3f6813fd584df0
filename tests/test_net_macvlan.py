"""A network driver that changes nothing on the host, written as a third-party plugin
would be: each container gets a macvlan on a parent link of the host, moved into its
namespace, and an address the core leases from the driver's named network. The
network contract suite holds it to the same rules as ``bridge`` and ``routed``.

The parent is a veth pair the test makes inside the suite's private host namespace
(the kernel here has no ``dummy`` links); macvlans in ``bridge`` mode on one parent
reach each other directly, without the host routing or bridging anything.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import json
import os
import subprocess
from dataclasses import replace
from pathlib import Path

from pinnace.plugin import (
    Attachment,
    FailedPrecondition,
    Interface,
    InvalidConfig,
    IPConfig,
    Network,
    NetworkResult,
    Option,
    Plugin,
    PluginContext,
    Route,
    Unavailable,
    hookimpl,
    netns,
)
from pinnace.testing.network import Containers, NetworkContract, exchange, host_leftovers

PARENT = "mvparent"


def ip(*commands: str) -> None:
    """Run iproute2 commands in one ``ip -batch`` (in the calling thread's netns)."""
    try:
        proc = subprocess.run(["ip", "-batch", "-"], input="\n".join(commands) + "\n",
                              capture_output=True, text=True)
    except FileNotFoundError:
        raise Unavailable("macvlan: the ip command (Debian package iproute2) is missing") from None
    if proc.returncode != 0:
        raise FailedPrecondition(f"macvlan: ip failed: {' '.join(proc.stderr.split())}")


def link(name: str) -> dict | None:
    """``ip -d -j link show dev NAME`` in the calling thread's netns, or None when absent."""
    proc = subprocess.run(["ip", "-d", "-j", "link", "show", "dev", name],
                          capture_output=True, text=True)
    found = json.loads(proc.stdout or "[]") if proc.returncode == 0 else []
    return found[0] if found else None


class MacvlanNetwork(Plugin):
    """A macvlan per container on the ``parent`` link; nothing of it stays on the host."""

    options = (
        Option("parent", "", "the host link containers' macvlans hang off"),
        Option("subnet", "", "the parent's LAN: the subnet of the default network"),
    )

    @staticmethod
    def staging_name(attachment: Attachment) -> str:
        """The macvlan's name on the host for the moment between its creation and its move."""
        return "mv" + attachment.container_id[:12]

    # ------------------------------------------------------------ named networks
    @hookimpl
    def pinnace_network_default(self) -> Network:
        """``macvlan0``: the parent's LAN, its first address the gateway."""
        if not self.opt("parent") or not self.opt("subnet"):
            raise InvalidConfig("macvlan: set the parent and subnet options")
        subnet = ipaddress.ip_network(self.opt("subnet"))
        return Network(name="macvlan0", id=hashlib.sha256(b"macvlan0").hexdigest(),
                       driver=self.ctx.name, subnet=str(subnet), gateway=str(subnet[1]),
                       options={"parent": self.opt("parent")})

    @hookimpl
    def pinnace_network_create(self, network: Network, taken: list[str]) -> Network:
        """Another subnet on the parent's LAN; the driver cannot choose one itself."""
        if not network.subnet:
            raise InvalidConfig("macvlan: a network is a subnet of the parent's LAN: "
                                "pass --subnet")
        gateway = network.gateway or str(ipaddress.ip_network(network.subnet)[1])
        return replace(network, gateway=gateway, options={"parent": self.opt("parent")})

    @hookimpl
    def pinnace_network_remove(self, network: Network) -> None:
        """Nothing to remove: a network puts nothing on the host."""

    # ------------------------------------------------------------ one container
    @hookimpl
    def pinnace_network_add(self, attachment: Attachment) -> NetworkResult:
        """A macvlan on the parent, moved into the container, renamed, addressed, up."""
        if not attachment.address or "parent" not in attachment.options:
            raise FailedPrecondition("macvlan needs a named network and an address")
        staging = self.staging_name(attachment)
        ip(f"link add {staging} link {attachment.options['parent']} type macvlan mode bridge",
           f"link set {staging} netns {attachment.netns}")
        inside = attachment.ifname
        with netns.entered(attachment.netns):
            commands = ["link set lo up", f"link set {staging} name {inside}",
                        f"address add {attachment.address} dev {inside}", f"link set {inside} up"]
            if attachment.gateway:
                commands.append(f"route add default via {attachment.gateway} dev {inside}")
            ip(*commands)
            mac = (link(inside) or {}).get("address", "")
        return NetworkResult(
            interfaces=(Interface(inside, mac, attachment.netns),),
            ips=(IPConfig(attachment.address, attachment.gateway, interface=0),),
            routes=(Route("0.0.0.0/0", attachment.gateway),) if attachment.gateway else (),
        )

    @hookimpl
    def pinnace_network_del(self, attachment: Attachment) -> None:
        """Delete the macvlan wherever an earlier ``add`` left it: still on the host, or in
        the container's namespace when that exists; nothing there is not an error."""
        staging = self.staging_name(attachment)
        if link(staging):
            with contextlib.suppress(FailedPrecondition):  # gone meanwhile
                ip(f"link del {staging}")
        if not os.path.exists(attachment.netns):
            return
        with contextlib.suppress(OSError), netns.entered(attachment.netns):
            found = link(attachment.ifname)
            if found and found.get("linkinfo", {}).get("info_kind") == "macvlan":
                with contextlib.suppress(FailedPrecondition):
                    ip(f"link del {attachment.ifname}")

    @hookimpl
    def pinnace_network_check(self, attachment: Attachment) -> None:
        """The container's interface is an up macvlan carrying its address."""
        with netns.entered(attachment.netns):
            found = link(attachment.ifname)
            proc = subprocess.run(["ip", "-j", "address", "show", "dev", attachment.ifname],
                                  capture_output=True, text=True)
        where = f"{attachment.ifname} in {attachment.netns}"
        if not found or found.get("linkinfo", {}).get("info_kind") != "macvlan":
            raise FailedPrecondition(f"macvlan: {where} is missing or not a macvlan")
        if "UP" not in found.get("flags", []):
            raise FailedPrecondition(f"macvlan: {where} is down")
        addresses = json.loads(proc.stdout or "[]") if proc.returncode == 0 else []
        local = {f"{a['local']}/{a['prefixlen']}" for i in addresses for a in i["addr_info"]}
        if attachment.address not in local:
            raise FailedPrecondition(f"macvlan: {where} lacks {attachment.address}")


class TestMacvlanContract(NetworkContract):
    """The contract holds for a driver whose containers are connected without any
    change to the host."""

    connected = True

    def prepare_host(self) -> None:
        """The parent link: one end of a veth pair, both ends up (a macvlan needs a carrier),
        without IPv6: the kernel would add a link-local address and routes some time after
        the link came up, which the suite would see as changes made by the plugin."""
        subprocess.run(["ip", "link", "add", PARENT, "type", "veth", "peer", "name",
                        PARENT + "-peer"], check=True)
        for name in (PARENT, PARENT + "-peer"):
            subprocess.run(["sysctl", "-qw", f"net.ipv6.conf.{name}.disable_ipv6=1"], check=True)
            subprocess.run(["ip", "link", "set", name, "up"], check=True)

    def make_plugin(self, tmp_path: Path) -> MacvlanNetwork:
        """A macvlan driver on the test's parent link."""
        return MacvlanNetwork(PluginContext.for_plugin(
            MacvlanNetwork, "macvlan", "network", {"parent": PARENT, "subnet": "10.66.0.0/24"},
            data_dir=tmp_path / "data", run_dir=tmp_path / "run"))

    def test_the_host_is_untouched_while_containers_are_attached(self, net: Containers) -> None:
        """What sets this driver apart: with two containers attached and talking, the
        host's links, addresses, routes and rules are as before the first ``add``."""
        before = host_leftovers()
        a, b = net.new(), net.new()
        net.add(a)
        to_b = net.add(b).ips[0].address.split("/")[0]
        assert exchange(a.netns, b.netns, to_b, b"no host hop") == b"no host hop"
        assert host_leftovers() == before
