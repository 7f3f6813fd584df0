"""Network attachments and the CNI-shaped result a network plugin returns."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class PortMapping:
    """A published port: host_ip:host_port -> container_port/protocol."""

    host_port: int
    container_port: int
    protocol: str = "tcp"
    host_ip: str = ""


@dataclass
class Network:
    """A named network as the state records it; ``options`` belong to its driver (plugin)."""

    name: str
    id: str
    driver: str
    subnet: str
    gateway: str
    internal: bool = False
    options: dict[str, str] = field(default_factory=dict)
    created: float = 0.0
    labels: dict[str, str] = field(default_factory=dict)


@dataclass
class Attachment:
    """One container on one network: what ``network_add`` and ``network_del`` receive."""

    container_id: str
    netns: str
    network: str
    ifname: str = "eth0"
    ports: tuple[PortMapping, ...] = ()
    options: dict[str, str] = field(default_factory=dict)
    address: str = ""
    """The container's address as CIDR (``10.90.0.2/16``), leased by the core from the network."""
    gateway: str = ""
    """The network's gateway address; empty on ``internal`` networks' containers (no route out)."""
    internal: bool = False
    """No outbound NAT, no published ports, no route to anything outside the network."""


@dataclass
class Interface:
    """An interface the plugin created or configured (``sandbox`` is the netns path when inside)."""

    name: str
    mac: str = ""
    sandbox: str = ""


@dataclass
class IPConfig:
    """An address given to an interface (index into ``NetworkResult.interfaces``)."""

    address: str
    gateway: str = ""
    interface: int = 0


@dataclass
class Route:
    """A route installed in the container: destination CIDR via gateway."""

    dst: str
    gw: str = ""


@dataclass
class NetworkResult:
    """CNI-shaped result of ``network_add``; the core persists it with the container."""

    interfaces: tuple[Interface, ...] = ()
    ips: tuple[IPConfig, ...] = ()
    routes: tuple[Route, ...] = ()
    dns: dict[str, list[str]] = field(default_factory=dict)

    def to_dict(self) -> dict:
        """A JSON-ready dict (the shape stored in the state)."""
        from dataclasses import asdict

        return asdict(self)


def routable_ipv4(addresses: list[str]) -> str | None:
    """The first IPv4 address outside 127.0.0.0/8 among CIDRs like ``10.0.0.2/24``, or None."""
    import ipaddress

    for text in addresses:
        address = ipaddress.ip_interface(text).ip
        if address.version == 4 and not address.is_loopback:
            return str(address)
    return None
