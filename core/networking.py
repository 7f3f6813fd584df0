"""The engine's side of networking: which networks a container joins, its
leases and published ports, its network namespace and ``/etc`` files, and
cleaning up after a ``pinnace`` that died half-way.

A container's network mode is the ``network`` column of its row: a network
plugin's name, or ``container:<id>`` to share another container's namespace.
Drivers with named networks (``pinnace_network_default``/``_create``) get one
attachment per network, each with an address leased here; others get one
attachment named after the plugin.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pinnace import etcfiles, ipam
from pinnace.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidConfig,
    NotFound,
)
from pinnace.network import Attachment, Network, NetworkResult, PortMapping

if TYPE_CHECKING:
    import sqlite3

    from pinnace.engine import Engine, RunOptions
    from pinnace.runtime.spec import ContainerSpec

DEFAULT_DRIVER = "bridge"
CONTAINER_MODE = "container:"


# --------------------------------------------------------------- run options
def parse_publish(text: str) -> PortMapping:
    """``[hostip:][hostport:]containerport[/tcp|/udp]`` as ``-p`` takes it (hostport 0: any)."""
    spec, _, proto = text.partition("/")
    proto = proto or "tcp"
    if proto not in ("tcp", "udp"):
        raise InvalidConfig(f"invalid protocol {proto!r} in -p {text} (tcp or udp)")
    parts = spec.rsplit(":", 2)
    host_ip = parts[0].strip("[]") if len(parts) == 3 else ""
    host = parts[-2] if len(parts) >= 2 else ""
    try:
        if host_ip:
            ipaddress.ip_address(host_ip)
        container = int(parts[-1])
        host_port = int(host) if host else 0
    except ValueError:
        raise InvalidConfig(f"invalid port mapping {text!r}: expected "
                            f"[hostip:]hostport:containerport[/tcp|/udp]") from None
    for number in (container, host_port):
        if not 0 <= number <= 65535 or container == 0:
            raise InvalidConfig(f"invalid port mapping {text!r}: ports are 1-65535")
    return PortMapping(host_port, container, proto, host_ip)


def run_options(engine: Engine, opts: RunOptions, image_config: dict[str, Any]) -> tuple[str, dict]:
    """Validate the network flags of ``run``; return the mode and what to keep in the spec."""
    mode = opts.network
    named = [get(engine, name) for name in opts.networks]
    wants_addresses = bool(named or opts.ports or opts.publish_all or opts.ip)
    if mode is None:  # a named network brings its driver
        mode = named[0].driver if named else \
            DEFAULT_DRIVER if wants_addresses else engine.selected("network")
    if mode.startswith(CONTAINER_MODE):
        other = engine.resolve(mode[len(CONTAINER_MODE):])
        if wants_addresses:
            raise InvalidConfig("--net=container: shares another container's network: "
                                "-p, -P, --ip and --network do not apply")
        mode = CONTAINER_MODE + other
    elif not has_networks(engine, mode) and wants_addresses:  # loads it: unknown fails
        raise InvalidConfig(f"--net={mode} has no addresses: -p, -P, --ip and --network "
                            f"need a driver with networks, such as bridge")
    if named and opts.network is not None and named[0].driver != mode:
        raise InvalidConfig(f"network {named[0].name} belongs to the {named[0].driver} driver, "
                            f"not --net={mode}")
    ports = [parse_publish(p) for p in opts.ports]
    publishes = opts.ports or opts.publish_all
    if publishes and opts.networks and get(engine, opts.networks[0]).internal:
        raise InvalidConfig(f"network {opts.networks[0]} is internal: it publishes no ports")
    if opts.publish_all:
        for exposed in (image_config.get("ExposedPorts") or {}):
            number, _, proto = exposed.partition("/")
            ports.append(PortMapping(0, int(number), proto or "tcp"))
    for text in opts.dns:
        _address(text, "--dns")
    hosts = []
    for text in opts.add_hosts:
        name, sep, addr = text.partition(":")
        if not sep or not name:
            raise InvalidConfig(f"invalid --add-host {text!r}: expected NAME:IP")
        hosts.append([name, _address(addr, "--add-host")])
    if opts.ip:
        _address(opts.ip, "--ip")
    return mode, {"networks": list(opts.networks), "ports": [asdict(p) for p in ports],
                  "ip": opts.ip or "", "dns": list(opts.dns), "add_hosts": hosts}


def _address(text: str, flag: str) -> str:
    try:
        return str(ipaddress.ip_address(text.strip("[]")))
    except ValueError:
        raise InvalidConfig(f"invalid IP address {text!r} for {flag}") from None


def _net_options(row: sqlite3.Row) -> dict[str, Any]:
    return json.loads(row["spec"]).get("net") or {}


# --------------------------------------------------------------- named networks
def has_networks(engine: Engine, driver: str) -> bool:
    """Whether network plugin ``driver`` has named networks (loading it: an unknown name
    fails here, before anything is made)."""
    return engine.plugins.implements("network", driver, "create")


def _optional(engine: Engine, driver: str, verb: str, **kwargs: Any) -> Any:
    """Call an optional network hook (named networks); None when the driver lacks it."""
    if not engine.plugins.implements("network", driver, verb):
        return None
    return engine.plugins.call("network", driver, verb, **kwargs)


def _network(row: sqlite3.Row) -> Network:
    return Network(row["name"], row["id"], row["driver"], row["subnet"], row["gateway"],
                   bool(row["internal"]), json.loads(row["options"]), row["created"])


def get(engine: Engine, name: str) -> Network:
    """The network called ``name`` (or whose ID starts with it)."""
    row = engine.state.one("SELECT * FROM networks WHERE name = ? OR id = ?", name, name)
    if row is None and len(name) >= 3:
        rows = engine.state.query("SELECT * FROM networks WHERE id LIKE ?", name + "%")
        row = rows[0] if len(rows) == 1 else None
    if row is None:
        raise NotFound(f"network {name} not found")
    return _network(row)


def networks(engine: Engine) -> list[Network]:
    """Every named network, by name."""
    return [_network(r) for r in engine.state.query("SELECT * FROM networks ORDER BY name")]


def _record(engine: Engine, network: Network) -> None:
    """Insert ``network`` unless its subnet overlaps another's (checked in the transaction)."""
    mine = ipaddress.ip_network(network.subnet)
    with engine.state.tx() as db:
        for other in db.execute("SELECT name, subnet FROM networks"):
            if other["name"] == network.name:
                raise AlreadyExists(f"network with name {network.name} already exists")
            if mine.overlaps(ipaddress.ip_network(other["subnet"])):
                raise InvalidConfig(f"subnet {mine} overlaps network {other['name']} "
                                    f"({other['subnet']})")
        db.execute("INSERT INTO networks (name, id, driver, subnet, gateway, internal, options,"
                   " created) VALUES (?,?,?,?,?,?,?,?)",
                   (network.name, network.id, network.driver, network.subnet, network.gateway,
                    int(network.internal), json.dumps(network.options), time.time()))


def create(engine: Engine, name: str, driver: str = DEFAULT_DRIVER, subnet: str = "",
           gateway: str = "", internal: bool = False,
           options: dict[str, str] | None = None) -> Network:
    """``network create``: validate, let the driver complete it, record it."""
    from pinnace import names

    names.validate(name)
    if engine.state.one("SELECT 1 FROM networks WHERE name = ?", name):
        raise AlreadyExists(f"network with name {name} already exists")
    for text, what in ((subnet, "subnet"), (gateway, "gateway")):
        if text:
            try:
                ipaddress.ip_network(text, strict=True) if what == "subnet" else \
                    ipaddress.ip_address(text)
            except ValueError as err:
                raise InvalidConfig(f"invalid {what} {text!r}: {err}") from None
    if gateway and not subnet:
        raise InvalidConfig("--gateway needs --subnet")
    taken = [n.subnet for n in networks(engine)]
    default = ensure_default(engine, driver)
    if default is not None and default.subnet not in taken:
        taken.append(default.subnet)
    draft = Network(name=name, id=names.new_id(), driver=driver, subnet=subnet,
                    gateway=gateway, internal=internal, options=dict(options or {}))
    network = _optional(engine, driver, "create", network=draft, taken=taken)
    if network is None:
        raise InvalidConfig(f"network driver {driver} has no named networks")
    if ipaddress.ip_address(network.gateway) not in ipaddress.ip_network(network.subnet):
        raise InvalidConfig(f"gateway {network.gateway} is outside subnet {network.subnet}")
    _record(engine, network)
    engine.state.event("network", "create", network.id, name=name)
    return get(engine, name)


def ensure_default(engine: Engine, driver: str) -> Network | None:
    """The driver's default network, recorded on first use (None when it has none)."""
    network = _optional(engine, driver, "default")
    if network is None:
        return None
    if engine.state.one("SELECT 1 FROM networks WHERE name = ?", network.name) is None:
        with contextlib.suppress(AlreadyExists):  # a concurrent pinnace recorded it first
            _record(engine, network)
    recorded = get(engine, network.name)
    if recorded.driver != driver:
        raise InvalidConfig(f"the default network of driver {driver}, {network.name}, "
                            f"belongs to driver {recorded.driver}: one of them must use "
                            f"another name")
    return recorded


def users(engine: Engine, name: str) -> list[str]:
    """Names of the containers configured to join network ``name``."""
    found = []
    for row in engine.state.query("SELECT * FROM containers"):
        joined = _net_options(row).get("networks") or []
        leased = engine.state.one("SELECT 1 FROM endpoints WHERE container_id = ? AND network = ?",
                                  row["id"], name)
        if name in joined or leased:
            found.append(row["name"])
    return found


def remove(engine: Engine, name: str) -> str:
    """``network rm``: refuse while a container uses it; remove the driver's side and the row."""
    reconcile(engine)
    network = get(engine, name)
    used = users(engine, network.name)
    if used:
        raise FailedPrecondition(f"network {network.name} is in use by container "
                                 f"{', '.join(sorted(used))}")
    _optional(engine, network.driver, "remove", network=network)
    with engine.state.tx() as db:
        db.execute("DELETE FROM networks WHERE name = ?", (network.name,))
    engine.state.event("network", "destroy", network.id, name=network.name)
    return network.name


def prune(engine: Engine) -> list[str]:
    """Remove every network no container uses; return their names."""
    reconcile(engine)
    return [remove(engine, n.name) for n in networks(engine) if not users(engine, n.name)]


# --------------------------------------------------------------- container side
def reconcile(engine: Engine) -> None:
    """Release what containers whose monitor died (mid-setup too) left: veths, rules, leases."""
    from pinnace.engine import ACTIVE

    for row in engine.state.query(
            f"SELECT * FROM containers WHERE status IN ({','.join('?' * len(ACTIVE))})", *ACTIVE):
        with contextlib.suppress(Exception):  # a stale container must not fail this command
            engine._reconcile(row)


def _running(engine: Engine, row: sqlite3.Row) -> bool:
    return engine._current(row["id"])["status"] == "running"


def _attachments(engine: Engine, row: sqlite3.Row, netns: str) -> list[tuple[str, Attachment]]:
    """(driver, attachment) for each network the container is attached to, from the state."""
    cid = row["id"]
    found = []
    ports = tuple(ipam.ports_of(engine.state, cid))
    for ep in engine.state.query(
            "SELECT * FROM endpoints WHERE container_id = ? ORDER BY ifname", cid):
        network = get(engine, ep["network"])
        found.append((network.driver, _attachment(cid, netns, network, ep["ifname"],
                                                  ep["address"], ports if ep["ifname"] == "eth0"
                                                  else ())))
    return found


def _attachment(cid: str, netns: str, network: Network, ifname: str, address: str,
                ports: tuple[PortMapping, ...]) -> Attachment:
    return Attachment(container_id=cid, netns=netns, network=network.name, ifname=ifname,
                      ports=() if network.internal else ports, options=dict(network.options),
                      address=address, gateway="" if network.internal else network.gateway,
                      internal=network.internal)


def setup(engine: Engine, row: sqlite3.Row, spec: ContainerSpec, bundle: Path,
          undo: list[Callable[[], None]]) -> NetworkResult:
    """Give the container its network namespace, attachments and /etc files; return the result."""
    from pinnace import netns

    cid, mode = row["id"], row["network"]
    net = _net_options(row)
    reconcile(engine)
    if mode.startswith(CONTAINER_MODE):
        other = engine._row(engine.resolve(mode[len(CONTAINER_MODE):]))
        if not _running(engine, other):
            raise FailedPrecondition(f"cannot join the network of container {other['name']}: "
                                     f"it is not running")
        spec.netns = str(engine.netns_path(other["id"]))
        _mount_etc(spec, engine.bundle(other["id"]))
        return NetworkResult()
    plugin = engine.plugins.load("network", mode)
    if getattr(plugin, "host_netns", False):
        spec.netns = f"/proc/{os.getpid()}/ns/net"
        result = engine.plugins.call("network", mode, "add",
                                     attachment=Attachment(cid, spec.netns, mode))
        etcfiles.write(bundle, etcfiles.host_hosts(net.get("add_hosts") or []),
                       etcfiles.resolv_conf(net.get("dns") or []), spec.hostname)
        _mount_etc(spec, bundle)
        return result
    ns = engine.netns_path(cid)
    ns.parent.mkdir(parents=True, exist_ok=True)
    netns.create(str(ns))
    undo.append(lambda: netns.delete(str(ns)))
    spec.netns = str(ns)
    undo.append(lambda: teardown(engine, row))
    names = list(net.get("networks") or [])
    if not names:
        default = ensure_default(engine, mode)
        names = [default.name] if default else []
    if not names:
        result = engine.plugins.call("network", mode, "add",
                                     attachment=Attachment(cid, str(ns), mode))
    else:
        ports = ipam.reserve_ports(engine.state, cid,
                                   [PortMapping(**p) for p in net.get("ports") or []])
        results = [_attach(engine, row, get(engine, name), f"eth{i}", str(ns),
                           net.get("ip") if i == 0 else None, tuple(ports) if i == 0 else ())
                   for i, name in enumerate(names)]
        result = _merge(results)
    write_etc(engine, row, result, bundle)
    _mount_etc(spec, bundle)
    _refresh_peers(engine, cid, _networks_of(engine, cid))
    return result


def _attach(engine: Engine, row: sqlite3.Row, network: Network, ifname: str, netns: str,
            ip: str | None, ports: tuple[PortMapping, ...]) -> NetworkResult:
    address = ipam.lease(engine.state, network, row["id"], ifname, ip)
    attachment = _attachment(row["id"], netns, network, ifname, address, ports)
    return engine.plugins.call("network", network.driver, "add", attachment=attachment)


def _merge(results: list[NetworkResult]) -> NetworkResult:
    interfaces: list = []
    ips: list = []
    for result in results:
        ips += [replace(ip, interface=ip.interface + len(interfaces)) for ip in result.ips]
        interfaces += result.interfaces
    return NetworkResult(tuple(interfaces), tuple(ips),
                         tuple(r for result in results for r in result.routes),
                         next((r.dns for r in results if r.dns), {}))


def teardown(engine: Engine, row: sqlite3.Row) -> None:
    """Detach the container from every network, free its leases and ports; idempotent."""
    cid, mode = row["id"], row["network"]
    if mode.startswith(CONTAINER_MODE):
        return
    ns = str(engine.netns_path(cid))
    attached = _attachments(engine, row, ns)
    if not attached and _optional(engine, mode, "default") is None:
        if getattr(engine.plugins.load("network", mode), "host_netns", False):
            ns = f"/proc/{os.getpid()}/ns/net"
        attached = [(mode, Attachment(cid, ns, mode))]  # a driver without leases
    joined = _networks_of(engine, cid)
    first: Exception | None = None
    for driver, attachment in attached:
        try:
            engine.plugins.call("network", driver, "del", attachment=attachment)
        except Exception as err:  # keep detaching the others
            first = first or err
    ipam.release(engine.state, cid)
    _refresh_peers(engine, cid, joined)
    if first is not None:
        raise first


def connect(engine: Engine, name: str, ref: str, ip: str | None = None) -> None:
    """``network connect``: add a network to a container (attached now when it runs)."""
    reconcile(engine)
    network = get(engine, name)
    row = engine._row(engine.resolve(ref))
    if row["network"].startswith(CONTAINER_MODE) or not has_networks(engine, row["network"]):
        raise InvalidConfig(f"container {row['name']} uses --net={row['network']}; "
                            f"it cannot join {network.driver} network {network.name}")
    spec = json.loads(row["spec"])
    net = spec.setdefault("net", {})
    joined = net.setdefault("networks", [])
    if not joined:
        default = ensure_default(engine, row["network"])
        joined += [default.name] if default else []
    if network.name in joined:
        raise AlreadyExists(f"container {row['name']} is already connected to {network.name}")
    if _running(engine, row):
        taken = {r["ifname"] for r in engine.state.query(
            "SELECT ifname FROM endpoints WHERE container_id = ?", row["id"])}
        ifname = next(f"eth{i}" for i in range(len(taken) + 1) if f"eth{i}" not in taken)
        try:
            _attach(engine, row, network, ifname, str(engine.netns_path(row["id"])), ip, ())
        except BaseException:
            _detach(engine, row, network)
            raise
    joined.append(network.name)
    with engine.state.tx() as db:
        db.execute("UPDATE containers SET spec = ? WHERE id = ?", (json.dumps(spec), row["id"]))
    if _running(engine, row):
        write_etc(engine, engine._row(row["id"]), None, engine.bundle(row["id"]))
        _refresh_peers(engine, row["id"], [network.name])


def disconnect(engine: Engine, name: str, ref: str) -> None:
    """``network disconnect``: remove a network from a container (detached now when it runs)."""
    network = get(engine, name)
    row = engine._row(engine.resolve(ref))
    spec = json.loads(row["spec"])
    joined = (spec.get("net") or {}).get("networks") or []
    leased = engine.state.one("SELECT 1 FROM endpoints WHERE container_id = ? AND network = ?",
                              row["id"], network.name)
    if network.name not in joined and not leased:
        raise NotFound(f"container {row['name']} is not connected to network {network.name}")
    _detach(engine, row, network)
    spec.setdefault("net", {})["networks"] = [n for n in joined if n != network.name]
    with engine.state.tx() as db:
        db.execute("UPDATE containers SET spec = ? WHERE id = ?", (json.dumps(spec), row["id"]))
    if _running(engine, row):
        write_etc(engine, engine._row(row["id"]), None, engine.bundle(row["id"]))
        _refresh_peers(engine, row["id"], [network.name])


def _detach(engine: Engine, row: sqlite3.Row, network: Network) -> None:
    ns = str(engine.netns_path(row["id"]))
    for driver, attachment in _attachments(engine, row, ns):
        if attachment.network == network.name:
            engine.plugins.call("network", driver, "del", attachment=attachment)
    ipam.release(engine.state, row["id"], network.name)


# --------------------------------------------------------------- /etc files
def _mount_etc(spec: ContainerSpec, bundle: Path) -> None:
    from pinnace.runtime.spec import MountPoint

    for name in etcfiles.FILES:
        spec.mounts.append(MountPoint(destination=f"/etc/{name}", source=str(bundle / name)))


def _peers(engine: Engine, cid: str) -> list[tuple[str, str]]:
    """(address, name) of the other containers on the networks ``cid`` is attached to."""
    rows = engine.state.query(
        "SELECT DISTINCT c.name, e.address FROM endpoints e JOIN containers c"
        " ON c.id = e.container_id WHERE e.container_id != ? AND e.network IN"
        " (SELECT network FROM endpoints WHERE container_id = ?) ORDER BY c.name, e.address",
        cid, cid)
    return [(str(ipaddress.ip_interface(r["address"]).ip), r["name"]) for r in rows]


def write_etc(engine: Engine, row: sqlite3.Row, result: NetworkResult | None,
              bundle: Path) -> None:
    """Write the container's hosts, hostname and resolv.conf into its bundle."""
    net = _net_options(row)
    spec = json.loads(row["spec"])["runtime"]
    own = [str(ipaddress.ip_interface(r["address"]).ip) for r in engine.state.query(
        "SELECT address FROM endpoints WHERE container_id = ? ORDER BY ifname", row["id"])]
    names = [spec.get("hostname") or row["id"][:12]] + ([row["name"]] if row["name"] else [])
    hosts = etcfiles.hosts(own, names, _peers(engine, row["id"]),
                           [tuple(h) for h in net.get("add_hosts") or []])
    dns = net.get("dns") or (result.dns.get("nameservers", []) if result else [])
    etcfiles.write(bundle, hosts, etcfiles.resolv_conf(dns, drop_loopback=bool(own)),
                   spec.get("hostname") or row["id"][:12])


def _networks_of(engine: Engine, cid: str) -> list[str]:
    return [r["network"] for r in engine.state.query(
        "SELECT network FROM endpoints WHERE container_id = ?", cid)]


def _refresh_peers(engine: Engine, cid: str, networks: list[str]) -> None:
    """Rewrite the hosts files of running containers on ``networks`` other than ``cid``."""
    if not networks:
        return
    for other in engine.state.query(
            "SELECT DISTINCT c.* FROM containers c JOIN endpoints e ON e.container_id = c.id"
            " WHERE c.id != ? AND c.status = 'running' AND e.network IN"
            f" ({','.join('?' * len(networks))})", cid, *networks):
        bundle = engine.bundle(other["id"])
        if (bundle / "hosts").exists():
            with contextlib.suppress(FileNotFoundError):  # it went away meanwhile
                write_etc(engine, other, None, bundle)


# --------------------------------------------------------------- inspect
def _from_result(result: dict[str, Any]) -> dict[str, Any] | None:
    """Docker's fields for the first address outside loopback that a plugin's
    ``network_add`` returned, or None."""
    interfaces = result.get("interfaces") or []
    for ip in result.get("ips") or []:
        address = ipaddress.ip_interface(ip["address"])
        if address.is_loopback:
            continue
        index = ip.get("interface", 0)
        iface = interfaces[index] if index < len(interfaces) else {}
        return {"NetworkID": "", "IPAddress": str(address.ip),
                "IPPrefixLen": address.network.prefixlen, "Interface": iface.get("name", ""),
                "Gateway": ip.get("gateway", ""), "MacAddress": iface.get("mac", "")}
    return None


def settings(engine: Engine, ref: str) -> dict[str, Any]:
    """A container's network settings, shaped like docker's ``NetworkSettings``."""
    from pinnace.engine import ACTIVE

    row = engine._current(engine.resolve(ref))
    running = row["status"] in ACTIVE
    nets: dict[str, Any] = {}
    result = json.loads(row["network_result"] or "{}") if running else {}
    macs = {i["name"]: i["mac"] for i in result.get("interfaces", []) if i.get("sandbox")}
    for ep in engine.state.query("SELECT * FROM endpoints WHERE container_id = ? ORDER BY ifname",
                                 row["id"]) if running else []:
        network = get(engine, ep["network"])
        iface = ipaddress.ip_interface(ep["address"])
        nets[network.name] = {"NetworkID": network.id, "IPAddress": str(iface.ip),
                              "IPPrefixLen": iface.network.prefixlen, "Interface": ep["ifname"],
                              "Gateway": "" if network.internal else network.gateway,
                              "MacAddress": macs.get(ep["ifname"], "")}
    own = None if nets else _from_result(result)  # a driver that leases addresses itself
    if own:
        nets[row["network"]] = own
    ports: dict[str, Any] = {}
    for p in ipam.ports_of(engine.state, row["id"]) if running else []:
        ports.setdefault(f"{p.container_port}/{p.protocol}", []).append(
            {"HostIp": p.host_ip or "0.0.0.0", "HostPort": str(p.host_port)})
    first = next(iter(nets.values()), {})
    return {"Mode": row["network"], "SandboxKey": str(engine.netns_path(row["id"])) if running
            else "", "IPAddress": first.get("IPAddress", ""),
            "IPPrefixLen": first.get("IPPrefixLen", 0), "Gateway": first.get("Gateway", ""),
            "Ports": ports, "Networks": nets}
