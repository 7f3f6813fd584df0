"""The ``bridge`` network: a Linux bridge per network, a veth pair per container.

Netlink through pyroute2 (no ``ip`` subprocesses); iptables rules for NAT,
isolation and published ports (see ``firewall``). The bridge of a network is
made on first use, under a lock, so a host reboot or a crash costs nothing but
a re-creation; addresses come leased from the core (``Attachment.address``).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import ipaddress
import os
import socket
from collections.abc import Iterator

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
    Route,
    hookimpl,
)
from pinnace_plugins.net_bridge import firewall
from pinnace_plugins.net_bridge.netlink import Netlink

DEFAULT_NETWORK = "pinnace0"
VETH_PREFIX = "pnv"
LOOPBACK_INDEX = 1
"""``lo`` is the first link of every network namespace."""


def host_veth(attachment: Attachment) -> str:
    """The host end of the container's veth pair (15 characters at most)."""
    digest = hashlib.sha256(f"{attachment.container_id}/{attachment.ifname}".encode())
    return VETH_PREFIX + digest.hexdigest()[:11]


def _sysctl(path: str, value: str) -> None:
    with open(f"/proc/sys/net/{path}", "w") as f:
        f.write(value)


class BridgeNetwork(Plugin):
    """Docker's default network, done with netlink and iptables."""

    options = (
        Option("subnet", "10.90.0.0/16", f"subnet of the default network {DEFAULT_NETWORK}"),
        Option("pool", "10.91.0.0/16", "networks created without --subnet get a /24 from here"),
    )

    # ------------------------------------------------------------ named networks
    @hookimpl
    def pinnace_network_default(self) -> Network:
        """``pinnace0``, with the subnet from this plugin's options."""
        subnet = ipaddress.ip_network(self.opt("subnet"))
        return Network(name=DEFAULT_NETWORK, id=hashlib.sha256(b"pinnace0").hexdigest(),
                       driver=self.ctx.name, subnet=str(subnet), gateway=str(subnet[1]),
                       options={"bridge": DEFAULT_NETWORK})

    @hookimpl
    def pinnace_network_create(self, network: Network, taken: list[str]) -> Network:
        """Pick a free /24 from the pool when no subnet is given; name the bridge."""
        from dataclasses import replace

        subnet = network.subnet
        if not subnet:
            used = [ipaddress.ip_network(t) for t in taken]
            pool = ipaddress.ip_network(self.opt("pool"))
            choice = next((s for s in pool.subnets(new_prefix=max(24, pool.prefixlen))
                           if not any(s.overlaps(u) for u in used)), None)
            if choice is None:
                raise InvalidConfig(f"no free /24 left in the pool {pool}; pass --subnet")
            subnet = str(choice)
        gateway = network.gateway or str(ipaddress.ip_network(subnet)[1])
        unknown = sorted(set(network.options) - {"bridge"})
        if unknown:
            raise InvalidConfig(f"the {self.ctx.name} driver has no option {unknown[0]!r} "
                                f"(known: bridge, the bridge device's name)")
        bridge = network.options.get("bridge") or "pn-" + network.id[:12]
        if not 0 < len(bridge) < 16 or "/" in bridge or bridge.strip() != bridge:
            raise InvalidConfig(f"invalid bridge device name {bridge!r}")
        return replace(network, subnet=subnet, gateway=gateway, options={"bridge": bridge})

    @hookimpl
    def pinnace_network_remove(self, network: Network) -> None:
        """Delete the bridge, its rules and its lock file; idempotent. (No container can
        be setting the bridge up meanwhile: the core removes a network only when no
        container uses it, and its row first.)"""
        bridge = network.options["bridge"]
        with self._locked(bridge):
            with Netlink() as nl, contextlib.suppress(OSError):
                nl.delete_link(bridge)
            if firewall.available():
                with self._locked("firewall"):
                    firewall.delete(f"pn:net:{bridge}")
            (self.ctx.data_dir / f"{bridge}.lock").unlink(missing_ok=True)

    @contextlib.contextmanager
    def _locked(self, name: str) -> Iterator[None]:
        """An exclusive lock across pinnace processes (a bridge's setup, iptables changes)."""
        self.ctx.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.ctx.data_dir / f"{name}.lock", "w") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            yield

    def _ensure_bridge(self, nl: Netlink, attachment: Attachment) -> int:
        """The bridge's interface index, making the bridge and its rules when it is missing."""
        bridge = attachment.options["bridge"]
        with contextlib.suppress(OSError):
            return socket.if_nametoindex(bridge)
        with self._locked(bridge):
            with contextlib.suppress(OSError):
                return socket.if_nametoindex(bridge)
            subnet = ipaddress.ip_interface(attachment.address).network
            if firewall.available():  # rules first: an existing bridge means all is in place
                with self._locked("firewall"):
                    firewall.ensure_chains()
                    firewall.delete(f"pn:net:{bridge}")
                    firewall.add(firewall.network_rules(bridge, str(subnet), attachment.internal))
            nl.add_bridge(bridge)
            index = socket.if_nametoindex(bridge)
            if not attachment.internal:
                nl.add_address(index, attachment.gateway, subnet.prefixlen)
                _sysctl("ipv4/ip_forward", "1")
                _sysctl(f"ipv4/conf/{bridge}/route_localnet", "1")
            nl.set_up(index)
            return index

    # ------------------------------------------------------------ one container
    @hookimpl
    def pinnace_network_add(self, attachment: Attachment) -> NetworkResult:
        """A veth pair from the network's bridge into the container, its address and route
        (the default route goes through the first network that has a gateway)."""
        from pinnace.plugin import netns

        if not attachment.address or "bridge" not in attachment.options:
            raise FailedPrecondition("the bridge network needs a named network and an address")
        if attachment.ports:
            firewall.require()
        veth = host_veth(attachment)
        iface = ipaddress.ip_interface(attachment.address)
        with Netlink() as nl:
            bridge = self._ensure_bridge(nl, attachment)
            fd = os.open(attachment.netns, os.O_RDONLY | os.O_CLOEXEC)
            try:
                nl.add_veth(veth, attachment.ifname, fd)
            finally:
                os.close(fd)
            index = socket.if_nametoindex(veth)
            nl.set_up(index, master=bridge)
            nl.set_hairpin(index)
        with netns.entered(attachment.netns):
            inner = Netlink()
            index = socket.if_nametoindex(attachment.ifname)
        routes: tuple[Route, ...] = ()
        with inner:
            inner.set_up(LOOPBACK_INDEX)
            inner.add_address(index, str(iface.ip), iface.network.prefixlen)
            inner.set_up(index)
            mac = inner.link_attr(index, "IFLA_ADDRESS") or ""
            if attachment.gateway and inner.add_default_route(attachment.gateway, index):
                routes = (Route("0.0.0.0/0", attachment.gateway),)
        if attachment.ports:
            with self._locked("firewall"):
                firewall.ensure_chains()  # the bridge may predate iptables on this host
                firewall.add(firewall.port_rules(f"pn:ctr:{attachment.container_id[:12]}",
                                                 str(iface.ip), list(attachment.ports)))
        return NetworkResult(
            interfaces=(Interface(veth), Interface(attachment.ifname, mac, attachment.netns)),
            ips=(IPConfig(attachment.address, attachment.gateway, interface=1),),
            routes=routes,
        )

    @hookimpl
    def pinnace_network_del(self, attachment: Attachment) -> None:
        """Delete the veth pair and the container's port rules; idempotent."""
        if attachment.ports and firewall.available():
            with self._locked("firewall"):
                firewall.delete(f"pn:ctr:{attachment.container_id[:12]}")
        with Netlink() as nl, contextlib.suppress(OSError):  # gone already: nothing to undo
            nl.delete_link(host_veth(attachment))

    @hookimpl
    def pinnace_network_check(self, attachment: Attachment) -> None:
        """The host end of the veth must exist and be attached to the bridge."""
        veth = host_veth(attachment)
        try:
            with Netlink() as nl:
                bridge = socket.if_nametoindex(attachment.options.get("bridge", ""))
                if nl.link_attr(socket.if_nametoindex(veth), "IFLA_MASTER") == bridge:
                    return
        except OSError:
            pass
        raise FailedPrecondition(f"{veth} is not on its bridge")
