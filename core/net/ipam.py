"""IP leases and published host ports, kept in the state database.

Each allocation runs in one ``BEGIN IMMEDIATE`` transaction, so concurrent
``pinnace`` processes never hand out an address or a host port twice. Leases
of containers whose row is gone (a crash between steps) are reclaimed first.
"""

from __future__ import annotations

import ipaddress
import time
from typing import TYPE_CHECKING, NamedTuple

from pinnace.errors import AlreadyExists, InvalidConfig, NotFound, Unavailable

if TYPE_CHECKING:
    from pinnace.network import Network, PortMapping
    from pinnace.state import State

_ORPHANS = "container_id NOT IN (SELECT id FROM containers)"
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def lease(state: State, network: Network, container_id: str, ifname: str,
          requested: str | None = None) -> str:
    """Lease an address on ``network`` (``requested`` if given) and return it as CIDR;
    ``NotFound`` when the network's row is gone (a concurrent ``network rm`` won)."""
    subnet = ipaddress.ip_network(network.subnet)
    gateway = ipaddress.ip_address(network.gateway)
    with state.tx() as db:
        if db.execute("SELECT 1 FROM networks WHERE name = ?", (network.name,)).fetchone() is None:
            raise NotFound(f"network {network.name} was removed")
        db.execute(f"DELETE FROM endpoints WHERE {_ORPHANS}")
        held = db.execute("SELECT address FROM endpoints WHERE container_id = ? AND network = ?",
                          (container_id, network.name)).fetchone()
        if held:
            return held["address"]
        taken = {ipaddress.ip_interface(r["address"]).ip for r in db.execute(
            "SELECT address FROM endpoints WHERE network = ?", (network.name,))}
        if requested:
            address = _requested(network, requested, subnet, gateway, taken)
        else:
            address = next((h for h in subnet.hosts() if h != gateway and h not in taken), None)
            if address is None:
                raise Unavailable(f"network {network.name} has no free address left ({subnet})")
        cidr = f"{address}/{subnet.prefixlen}"
        db.execute("INSERT INTO endpoints (container_id, network, ifname, address, created)"
                   " VALUES (?,?,?,?,?)", (container_id, network.name, ifname, cidr, time.time()))
    return cidr


def _requested(network: Network, requested: str, subnet: IPNetwork, gateway: IPAddress,
               taken: set[IPAddress]) -> IPAddress:
    try:
        address = ipaddress.ip_address(requested)
    except ValueError:
        raise InvalidConfig(f"invalid IP address {requested!r}") from None
    if address not in subnet or address in (subnet.network_address, subnet.broadcast_address):
        raise InvalidConfig(f"address {address} is outside network {network.name}'s usable "
                            f"range ({subnet})")
    if address == gateway:
        raise InvalidConfig(f"address {address} is network {network.name}'s gateway")
    if address in taken:
        raise AlreadyExists(f"address {address} is already in use on network {network.name}")
    return address


class Endpoint(NamedTuple):
    """One container's lease on one network: its interface and address (CIDR)."""

    container_id: str
    network: str
    ifname: str
    address: str

    @property
    def ip(self) -> str:
        """The address without its prefix length."""
        return str(ipaddress.ip_interface(self.address).ip)


def endpoints(state: State, container_id: str) -> list[Endpoint]:
    """The container's leases, by interface name."""
    return [Endpoint(r["container_id"], r["network"], r["ifname"], r["address"])
            for r in state.query("SELECT * FROM endpoints WHERE container_id = ? ORDER BY ifname",
                                 container_id)]


def on_network(state: State, network: str) -> list[str]:
    """IDs of the containers that hold a lease on ``network``."""
    return [r["container_id"] for r in state.query(
        "SELECT container_id FROM endpoints WHERE network = ?", network)]


def release(state: State, container_id: str, network: str | None = None) -> None:
    """Free the container's leases (on ``network`` only, if given) and, with all, its ports."""
    with state.tx() as db:
        if network is None:
            db.execute("DELETE FROM endpoints WHERE container_id = ?", (container_id,))
            db.execute("DELETE FROM ports WHERE container_id = ?", (container_id,))
        else:
            db.execute("DELETE FROM endpoints WHERE container_id = ? AND network = ?",
                       (container_id, network))


def reserve_ports(state: State, container_id: str,
                  ports: list[PortMapping]) -> list[PortMapping]:
    """Claim host ports (choosing free ones where ``host_port`` is 0) and return the mappings.

    A port another container publishes, or that a socket on this host holds,
    is an error.
    """
    from dataclasses import replace

    claimed: list[PortMapping] = []
    with state.tx() as db:
        db.execute(f"DELETE FROM ports WHERE {_ORPHANS}")
        db.execute("DELETE FROM ports WHERE container_id = ?", (container_id,))  # a restart
        rows = db.execute("SELECT host_ip, host_port, protocol, container_id FROM ports").fetchall()
        used = [(r["host_ip"], r["host_port"], r["protocol"]) for r in rows]
        for port in ports:
            if port.host_port == 0:
                port = replace(port, host_port=_free_port(port, used))
            for ip, number, proto in used:
                if number == port.host_port and proto == port.protocol and (
                        not ip or not port.host_ip or ip == port.host_ip):
                    raise AlreadyExists(f"host port {_where(port)} is already published by "
                                        f"another container")
            _check_bindable(port)
            used.append((port.host_ip, port.host_port, port.protocol))
            claimed.append(port)
            db.execute("INSERT INTO ports (host_ip, host_port, protocol, container_id,"
                       " container_port) VALUES (?,?,?,?,?)",
                       (port.host_ip, port.host_port, port.protocol, container_id,
                        port.container_port))
    return claimed


def ports_of(state: State, container_id: str) -> list[PortMapping]:
    """The ports ``container_id`` publishes."""
    from pinnace.network import PortMapping

    return [PortMapping(r["host_port"], r["container_port"], r["protocol"], r["host_ip"])
            for r in state.query("SELECT * FROM ports WHERE container_id = ?"
                                 " ORDER BY host_port", container_id)]


def _where(port: PortMapping) -> str:
    return f"{port.host_ip or '0.0.0.0'}:{port.host_port}/{port.protocol}"


def _socket(port: PortMapping, number: int):  # type: ignore[no-untyped-def]
    import socket

    kind = socket.SOCK_STREAM if port.protocol == "tcp" else socket.SOCK_DGRAM
    family = socket.AF_INET6 if ":" in port.host_ip else socket.AF_INET
    sock = socket.socket(family, kind)
    sock.bind((port.host_ip or "0.0.0.0", number))
    return sock


def _check_bindable(port: PortMapping) -> None:
    """A host socket already bound to the port would shadow the published one: refuse."""
    try:
        _socket(port, port.host_port).close()
    except OSError as err:
        raise AlreadyExists(f"host port {_where(port)} is already in use on this host "
                            f"({err.strerror})") from None


def _free_port(port: PortMapping, used: list[tuple[str, int, str]]) -> int:
    taken = {number for _, number, proto in used if proto == port.protocol}
    for _ in range(100):
        with _socket(port, 0) as sock:
            number = sock.getsockname()[1]
        if number not in taken:
            return number
    raise Unavailable(f"no free host port for {port.container_port}/{port.protocol}")
