"""The engine's side of networking, as a service: which networks a container joins, its
leases and published ports, its network namespace and ``/etc`` files, and named networks.

A container's network mode is its record's ``network``: a network plugin's
name, or ``container:<id>`` to share another container's namespace. Named
networks belong to the driver that made them; drivers with named networks
(``pinnace_network_create``) get one attachment per network, each with an
address leased here; others get one attachment named after the plugin.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pinnace import faults
from pinnace.errors import AlreadyExists, FailedPrecondition, InvalidConfig, NotFound
from pinnace.net import etcfiles, ipam
from pinnace.network import Attachment, Network, NetworkResult, PortMapping

if TYPE_CHECKING:
    from pinnace.containers.options import RunOptions
    from pinnace.containers.record import ContainerConfig, ContainerRecord, NetOptions
    from pinnace.containers.table import ContainerTable
    from pinnace.operations import Lease
    from pinnace.paths import Paths
    from pinnace.plugins import Plugins
    from pinnace.runtime.spec import ContainerSpec
    from pinnace.state import State

DEFAULT_DRIVER = "bridge"
"""The driver of ``-p``/``--ip`` when neither ``--net`` nor ``--network`` names one."""
CONTAINER_MODE = "container:"
NETWORK_REMOVAL = "network-remove"
"""What ``network rm`` notes on its lease: the network whose row it deletes."""


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


def _address(text: str, flag: str) -> str:
    try:
        return str(ipaddress.ip_address(text.strip("[]")))
    except ValueError:
        raise InvalidConfig(f"invalid IP address {text!r} for {flag}") from None


ALIAS = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
"""A network alias: a host name."""


def checked_aliases(names: Sequence[str]) -> list[str]:
    """``names`` as a container's aliases on a network (each a valid host name)."""
    for name in names:
        if not ALIAS.fullmatch(name):
            raise InvalidConfig(f"invalid network alias {name!r}: letters, digits, '_', '.' "
                                f"and '-', starting with a letter or digit")
    return list(dict.fromkeys(names))


class Networking:
    """Named networks and the network side of containers, over the state and the plugins."""

    def __init__(self, state: State, plugins: Callable[[], Plugins],
                 containers: ContainerTable, paths: Paths, selected: str) -> None:
        self.state = state
        self._plugins = plugins
        self.containers = containers
        self.paths = paths
        self.selected = selected
        """The network plugin selected by flag, environment or config."""

    @property
    def plugins(self) -> Plugins:
        """The plugin manager, built on first use (listing networks needs none)."""
        return self._plugins()

    # ----------------------------------------------------------- run options
    def run_options(self, opts: RunOptions,
                    image_config: dict[str, Any]) -> tuple[str, NetOptions]:
        """Validate the network flags of ``run``; return the network mode and options."""
        from pinnace.containers.record import NetOptions

        mode = opts.network
        named = [self.get(name) for name in opts.networks]
        wants_addresses = bool(named or opts.ports or opts.publish_all or opts.ip)
        if mode is None:  # a named network brings its driver
            mode = named[0].driver if named else \
                DEFAULT_DRIVER if wants_addresses else self.selected
        if mode.startswith(CONTAINER_MODE):
            other = self.containers.find(mode[len(CONTAINER_MODE):])
            if wants_addresses:
                raise InvalidConfig("--net=container: shares another container's network: "
                                    "-p, -P, --ip and --network do not apply")
            mode = CONTAINER_MODE + other
        elif not self.has_networks(mode) and wants_addresses and not (
                (opts.ports or opts.publish_all) and not (named or opts.ip)
                and getattr(self.plugins.load("network", mode), "publishes_ports", False)):
            raise InvalidConfig(f"--net={mode} has no addresses: -p, -P, --ip and --network "
                                f"need a driver with networks, such as bridge")
        if named and opts.network is not None and named[0].driver != mode:
            raise InvalidConfig(f"network {named[0].name} belongs to the {named[0].driver} "
                                f"driver, not --net={mode}")
        ports = [parse_publish(p) for p in opts.ports]
        if (opts.ports or opts.publish_all) and named and named[0].internal:
            raise InvalidConfig(f"network {named[0].name} is internal: it publishes no ports")
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
            hosts.append((name, _address(addr, "--add-host")))
        if opts.ip:
            _address(opts.ip, "--ip")
        aliases = {}
        for key, names in opts.network_aliases.items():
            if not names:
                continue
            network = self.get(key)
            if network.name not in [n.name for n in named]:
                raise InvalidConfig(f"network aliases for {network.name}: the container does "
                                    f"not join it (aliases apply to named networks only)")
            aliases[network.name] = checked_aliases(names)
        return mode, NetOptions(networks=list(opts.networks), ports=ports, ip=opts.ip or "",
                                dns=list(opts.dns), add_hosts=hosts, aliases=aliases)

    # ----------------------------------------------------------- named networks
    def has_networks(self, driver: str) -> bool:
        """Whether network plugin ``driver`` has named networks (loading it: an unknown
        name fails here, before anything is made)."""
        return bool(self.plugins.implements("network", driver, "create"))

    def _optional(self, driver: str, verb: str, **kwargs: Any) -> Any:
        """Call an optional network hook (named networks); None when the driver lacks it."""
        if not self.plugins.implements("network", driver, verb):
            return None
        return self.plugins.call("network", driver, verb, **kwargs)

    def get(self, name: str) -> Network:
        """The network called ``name`` (or whose ID starts with it)."""
        row = self.state.one("SELECT * FROM networks WHERE name = ? OR id = ?", name, name)
        if row is None and len(name) >= 3:
            rows = self.state.query("SELECT * FROM networks WHERE id LIKE ?", name + "%")
            row = rows[0] if len(rows) == 1 else None
        if row is None:
            raise NotFound(f"network {name} not found")
        return _network(row)

    def list(self) -> list[Network]:
        """Every named network, by name."""
        return [_network(r) for r in self.state.query("SELECT * FROM networks ORDER BY name")]

    def _record(self, network: Network) -> None:
        """Insert ``network`` unless its subnet overlaps another's (checked in the transaction)."""
        mine = ipaddress.ip_network(network.subnet)
        with self.state.tx() as db:
            for other in db.execute("SELECT name, subnet FROM networks"):
                if other["name"] == network.name:
                    raise AlreadyExists(f"network with name {network.name} already exists")
                if mine.overlaps(ipaddress.ip_network(other["subnet"])):
                    raise InvalidConfig(f"subnet {mine} overlaps network {other['name']} "
                                        f"({other['subnet']})")
            db.execute("INSERT INTO networks (name, id, driver, subnet, gateway, internal,"
                       " options, created, labels) VALUES (?,?,?,?,?,?,?,?,?)",
                       (network.name, network.id, network.driver, network.subnet,
                        network.gateway, int(network.internal), json.dumps(network.options),
                        time.time(), json.dumps(network.labels)))

    def create(self, name: str, driver: str = DEFAULT_DRIVER, subnet: str = "",
               gateway: str = "", internal: bool = False,
               options: dict[str, str] | None = None,
               labels: dict[str, str] | None = None) -> Network:
        """``network create``: validate, let the driver complete it, record it."""
        from pinnace import names

        names.validate(name)
        if self.state.one("SELECT 1 FROM networks WHERE name = ?", name):
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
        taken = [n.subnet for n in self.list()]
        default = self.ensure_default(driver)
        if default is not None and default.subnet not in taken:
            taken.append(default.subnet)
        draft = Network(name=name, id=names.new_id(), driver=driver, subnet=subnet,
                        gateway=gateway, internal=internal, options=dict(options or {}),
                        labels=dict(labels or {}))
        network = self._optional(driver, "create", network=draft, taken=taken)
        if network is None:
            raise InvalidConfig(f"network driver {driver} has no named networks")
        network.labels = dict(draft.labels)  # the core's, whatever the driver returned
        if ipaddress.ip_address(network.gateway) not in ipaddress.ip_network(network.subnet):
            raise InvalidConfig(f"gateway {network.gateway} is outside subnet {network.subnet}")
        faults.point("network-create.driver-done")  # the driver makes nothing until first use
        self._record(network)
        self.state.event("network", "create", network.id, name=name)
        return self.get(name)

    def ensure_default(self, driver: str) -> Network | None:
        """The driver's default network, recorded on first use (None when it has none)."""
        network = self._optional(driver, "default")
        if network is None:
            return None
        if self.state.one("SELECT 1 FROM networks WHERE name = ?", network.name) is None:
            with contextlib.suppress(AlreadyExists):  # a concurrent pinnace recorded it first
                self._record(network)
        recorded = self.get(network.name)
        if recorded.driver != driver:
            raise InvalidConfig(f"the default network of driver {driver}, {network.name}, "
                                f"belongs to driver {recorded.driver}: one of them must use "
                                f"another name")
        return recorded

    def is_default(self, network: Network) -> bool:
        """Whether ``network`` is its driver's default network (never removed, not even
        by prune: containers of the driver join it when they name none)."""
        default = self._optional(network.driver, "default")
        return default is not None and default.name == network.name

    def users(self, name: str) -> list[str]:
        """Names of the containers configured to join network ``name`` or holding a lease."""
        leased = set(ipam.on_network(self.state, name))
        return [c.name for c in self.containers.all()
                if c.id in leased or (c.config_json != "{}" and name in c.config.net.networks)]

    def remove(self, name: str, lease: Lease) -> str:
        """``network rm``: refuse while a container uses it, else delete the row (both in one
        transaction, so a container joining meanwhile either counts as a user or finds the
        network gone), then remove the driver's side. ``lease`` notes the network first,
        so that the collector finishes its removal if this process dies in between. The
        caller reconciles dead containers first."""
        from dataclasses import asdict

        network = self.get(name)
        if self.is_default(network):
            raise FailedPrecondition(f"{network.name} is the default network of driver "
                                     f"{network.driver} and cannot be removed")
        lease.note(NETWORK_REMOVAL, **asdict(network))
        with self.state.tx() as db:
            used = self.users(network.name)
            if used:
                raise FailedPrecondition(f"network {network.name} is in use by container "
                                         f"{', '.join(sorted(used))}")
            db.execute("DELETE FROM networks WHERE name = ?", (network.name,))
        faults.point("network-rm.row-deleted")
        try:
            self._optional(network.driver, "remove", network=network)
        except BaseException:
            with contextlib.suppress(AlreadyExists, InvalidConfig):  # taken again meanwhile
                self._record(network)
            raise
        self.state.event("network", "destroy", network.id, name=network.name)
        return network.name

    def finish_removal(self, noted: dict[str, object]) -> None:
        """Finish a ``network rm`` that died after deleting the row: the driver removes
        its side unless the network (by name) was recorded again since."""
        network = Network(**noted)  # type: ignore[arg-type]
        if self.state.one("SELECT 1 FROM networks WHERE name = ?", network.name) is None:
            self._optional(network.driver, "remove", network=network)

    # ----------------------------------------------------------- container side
    def _attachments(self, cid: str, netns: str) -> list[tuple[str, Attachment]]:
        """(driver, attachment) for each network the container has a lease on."""
        ports = tuple(ipam.ports_of(self.state, cid))
        found = []
        for ep in ipam.endpoints(self.state, cid):
            network = self.get(ep.network)
            found.append((network.driver, _attachment(
                cid, netns, network, ep.ifname, ep.address, ports if ep.ifname == "eth0" else ())))
        return found

    def _attached(self, record: ContainerRecord, host_pid: int) -> list[tuple[str, Attachment]]:
        """(driver, attachment) of every network the container is on; for a driver
        without leases, one attachment named after it (in the namespace of ``host_pid``
        when the driver shares the host's)."""
        ns = str(self.paths.netns(record.id))
        attached = self._attachments(record.id, ns)
        mode = record.network
        if not attached and not self.has_networks(mode):
            if getattr(self.plugins.load("network", mode), "host_netns", False):
                ns = f"/proc/{host_pid}/ns/net"
            attached = [(mode, Attachment(record.id, ns, mode))]
        return attached

    def setup(self, record: ContainerRecord, config: ContainerConfig, bundle: Path,
              undo: list[Callable[[], None]]) -> NetworkResult:
        """Give the container its network namespace, attachments and /etc files, noting
        them in ``config.spec``; return the result. Each step appends its undo to ``undo``
        before it runs."""
        from pinnace import netns

        cid, mode, net, spec = record.id, record.network, config.net, config.spec
        if mode.startswith(CONTAINER_MODE):
            other = self.containers.get(mode[len(CONTAINER_MODE):])
            if other.status != "running":
                raise FailedPrecondition(f"cannot join the network of container {other.label}: "
                                         f"it is not running")
            spec.netns = str(self.paths.netns(other.id))
            _mount_etc(spec, self.paths.bundle(other.id))
            return NetworkResult()
        if getattr(self.plugins.load("network", mode), "host_netns", False):
            spec.netns = f"/proc/{os.getpid()}/ns/net"
            undo.append(lambda: self.teardown(record))
            result = self.plugins.call("network", mode, "add",
                                       attachment=Attachment(cid, spec.netns, mode))
            etcfiles.write(bundle, etcfiles.host_hosts(net.add_hosts),
                           etcfiles.resolv_conf(net.dns), spec.hostname)
            _mount_etc(spec, bundle)
            return result  # type: ignore[no-any-return]
        ns = self.paths.netns(cid)
        ns.parent.mkdir(parents=True, exist_ok=True)
        undo.append(lambda: netns.delete(str(ns)))
        netns.create(str(ns))
        spec.netns = str(ns)
        undo.append(lambda: self.teardown(record))
        names = list(net.networks)
        if not names:
            default = self.ensure_default(mode)
            names = [default.name] if default else []
        if not names:  # ports for a driver that publishes them without networks
            ports = ipam.reserve_ports(self.state, cid, net.ports) if net.ports else []
            result = self.plugins.call("network", mode, "add",
                                       attachment=Attachment(cid, str(ns), mode,
                                                             ports=tuple(ports)))
        else:
            ports = ipam.reserve_ports(self.state, cid, net.ports)
            result = _merge([self._attach(cid, self.get(name), f"eth{i}", str(ns),
                                          net.ip if i == 0 else None,
                                          tuple(ports) if i == 0 else ())
                             for i, name in enumerate(names)])
        self.write_etc(record, config, result, bundle)
        _mount_etc(spec, bundle)
        self._refresh_peers(cid, self._networks_of(cid))
        return result  # type: ignore[no-any-return]

    def _attach(self, cid: str, network: Network, ifname: str, netns: str, ip: str | None,
                ports: tuple[PortMapping, ...]) -> NetworkResult:
        address = ipam.lease(self.state, network, cid, ifname, ip)
        attachment = _attachment(cid, netns, network, ifname, address, ports)
        return self.plugins.call(  # type: ignore[no-any-return]
            "network", network.driver, "add", attachment=attachment)

    def teardown(self, record: ContainerRecord) -> None:
        """Detach the container from every network, free its leases and ports; idempotent.
        The lease of a network whose driver failed to detach it is kept (and the ports,
        then), so that the next teardown asks that driver again."""
        cid = record.id
        if record.network.startswith(CONTAINER_MODE):
            return
        attached = self._attached(record, host_pid=os.getpid())
        joined = self._networks_of(cid)
        failed: dict[str, Exception] = {}
        for driver, attachment in attached:
            try:
                self.plugins.call("network", driver, "del", attachment=attachment)
            except Exception as err:  # keep detaching the others
                failed[attachment.network] = err
        if failed:
            for network in set(joined) - set(failed):
                ipam.release(self.state, cid, network)
        else:
            ipam.release(self.state, cid)
        self._refresh_peers(cid, joined)
        if failed:
            raise next(iter(failed.values()))

    def check(self, record: ContainerRecord) -> list[str]:
        """Ask each network plugin whether the running container's attachments are as
        ``add`` left them; return what is wrong, one line each."""
        if record.network.startswith(CONTAINER_MODE):
            return []
        attached = self._attached(record, host_pid=record.pid)
        problems = []
        for driver, attachment in attached:
            try:
                self.plugins.call("network", driver, "check", attachment=attachment)
            except FailedPrecondition as err:
                problems.append(f"network {attachment.network}: {err}")
        return problems

    def connect(self, name: str, record: ContainerRecord, ip: str | None = None,
                aliases: Sequence[str] = ()) -> None:
        """``network connect``: add a network to a container (attached now when it runs),
        with ``aliases`` its peers there find it by. The caller reconciles dead
        containers first."""
        network = self.get(name)
        names = checked_aliases(aliases)
        if record.network.startswith(CONTAINER_MODE) or not self.has_networks(record.network):
            raise InvalidConfig(f"container {record.label} uses --net={record.network}; "
                                f"it cannot join {network.driver} network {network.name}")
        config = record.config
        joined = config.net.networks
        if not joined:
            default = self.ensure_default(record.network)
            joined += [default.name] if default else []
        if network.name in joined:
            raise AlreadyExists(f"container {record.label} is already connected to "
                                f"{network.name}")
        running = record.status == "running"
        if running:
            taken = {ep.ifname for ep in ipam.endpoints(self.state, record.id)}
            ifname = next(f"eth{i}" for i in range(len(taken) + 1) if f"eth{i}" not in taken)
            try:
                self._attach(record.id, network, ifname, str(self.paths.netns(record.id)), ip,
                             ())
            except BaseException:
                self._detach(record.id, network)
                raise
        joined.append(network.name)
        if names:
            config.net.aliases[network.name] = names
        self.containers.save_config(record.id, config)
        if running:
            self.write_etc(self.containers.get(record.id), config, None,
                           self.paths.bundle(record.id))
            self._refresh_peers(record.id, [network.name])

    def disconnect(self, name: str, record: ContainerRecord) -> None:
        """``network disconnect``: remove a network from a container (detached now when it
        runs)."""
        network = self.get(name)
        config = record.config
        leased = any(ep.network == network.name for ep in ipam.endpoints(self.state, record.id))
        if network.name not in config.net.networks and not leased:
            raise NotFound(f"container {record.label} is not connected to network "
                           f"{network.name}")
        self._detach(record.id, network)
        config.net.networks[:] = [n for n in config.net.networks if n != network.name]
        config.net.aliases.pop(network.name, None)
        self.containers.save_config(record.id, config)
        if record.status == "running":
            self.write_etc(self.containers.get(record.id), config, None,
                           self.paths.bundle(record.id))
            self._refresh_peers(record.id, [network.name])

    def _detach(self, cid: str, network: Network) -> None:
        for driver, attachment in self._attachments(cid, str(self.paths.netns(cid))):
            if attachment.network == network.name:
                self.plugins.call("network", driver, "del", attachment=attachment)
        ipam.release(self.state, cid, network.name)

    # ----------------------------------------------------------- /etc files
    def write_etc(self, record: ContainerRecord, config: ContainerConfig,
                  result: NetworkResult | None, bundle: Path) -> None:
        """Write the container's hosts, hostname and resolv.conf into its bundle."""
        own = [ep.ip for ep in ipam.endpoints(self.state, record.id)]
        hostname = config.spec.hostname or record.short_id
        names = [hostname] + ([record.name] if record.name else [])
        peers = [(str(ipaddress.ip_interface(peer.address).ip), [peer.name, *peer.aliases])
                 for peer in self.containers.peers(record.id)]
        hosts = etcfiles.hosts(own, names, peers, config.net.add_hosts)
        dns = config.net.dns or (result.dns.get("nameservers", []) if result else [])
        etcfiles.write(bundle, hosts, etcfiles.resolv_conf(dns, drop_loopback=bool(own)),
                       hostname)

    def _networks_of(self, cid: str) -> list[str]:
        return [ep.network for ep in ipam.endpoints(self.state, cid)]

    def _refresh_peers(self, cid: str, networks: list[str]) -> None:
        """Rewrite the hosts files of running containers on ``networks`` other than ``cid``."""
        if not networks:
            return
        for other in self.containers.running_on(networks, excluding=cid):
            bundle = self.paths.bundle(other.id)
            if (bundle / "hosts").exists():
                with contextlib.suppress(FileNotFoundError):  # it went away meanwhile
                    self.write_etc(other, other.config, None, bundle)

    # ----------------------------------------------------------- inspect
    def settings(self, record: ContainerRecord) -> dict[str, Any]:
        """A container's network settings, shaped like docker's ``NetworkSettings``."""
        running = record.active
        nets: dict[str, Any] = {}
        result = record.network_result if running else {}
        macs = {i["name"]: i["mac"] for i in result.get("interfaces", []) if i.get("sandbox")}
        aliases = record.config.net.aliases if running else {}
        for ep in ipam.endpoints(self.state, record.id) if running else []:
            network = self.get(ep.network)
            iface = ipaddress.ip_interface(ep.address)
            nets[network.name] = endpoint_settings(
                NetworkID=network.id, IPAddress=str(iface.ip),
                IPPrefixLen=iface.network.prefixlen, Interface=ep.ifname,
                Aliases=aliases.get(network.name) or None,
                Gateway="" if network.internal else network.gateway,
                MacAddress=macs.get(ep.ifname, ""))
        net = record.config.net if record.config_json != "{}" else None  # half-created: none
        for name in [] if running or net is None else net.networks:
            try:  # a stopped container's networks, without addresses (docker shows them)
                nets[name] = endpoint_settings(NetworkID=self.get(name).id)
            except NotFound:
                pass
        own = None if nets else _from_result(result)  # a driver that leases addresses itself
        if own:
            nets[record.network] = endpoint_settings(**own)
        if net is not None and net.ip and net.networks and net.networks[0] in nets:
            nets[net.networks[0]]["IPAMConfig"] = {"IPv4Address": net.ip}
        ports: dict[str, Any] = {}
        for p in ipam.ports_of(self.state, record.id) if running else []:
            ports.setdefault(f"{p.container_port}/{p.protocol}", []).append(
                {"HostIp": p.host_ip or "0.0.0.0", "HostPort": str(p.host_port)})
        first = next(iter(nets.values()), {})
        return {"Mode": record.network,
                "SandboxKey": str(self.paths.netns(record.id)) if running else "",
                "IPAddress": first.get("IPAddress", ""),
                "IPPrefixLen": first.get("IPPrefixLen", 0), "Gateway": first.get("Gateway", ""),
                "Ports": ports, "Networks": nets}


def _network(row: Any) -> Network:
    return Network(row["name"], row["id"], row["driver"], row["subnet"], row["gateway"],
                   bool(row["internal"]), json.loads(row["options"]), row["created"],
                   json.loads(row["labels"]))


def _attachment(cid: str, netns: str, network: Network, ifname: str, address: str,
                ports: tuple[PortMapping, ...]) -> Attachment:
    return Attachment(container_id=cid, netns=netns, network=network.name, ifname=ifname,
                      ports=() if network.internal else ports, options=dict(network.options),
                      address=address, gateway="" if network.internal else network.gateway,
                      internal=network.internal)


def _merge(results: list[NetworkResult]) -> NetworkResult:
    interfaces: list = []
    ips: list = []
    for result in results:
        ips += [replace(ip, interface=ip.interface + len(interfaces)) for ip in result.ips]
        interfaces += result.interfaces
    return NetworkResult(tuple(interfaces), tuple(ips),
                         tuple(r for result in results for r in result.routes),
                         next((r.dns for r in results if r.dns), {}))


def _mount_etc(spec: ContainerSpec, bundle: Path) -> None:
    from pinnace.runtime.spec import MountPoint

    for name in etcfiles.FILES:
        spec.mounts.append(MountPoint(destination=f"/etc/{name}", source=str(bundle / name)))


def endpoint_settings(**fields: Any) -> dict[str, Any]:
    """Docker's ``EndpointSettings`` of one network of a container: its zero values with
    ``fields`` over them (pinnace adds ``Interface``)."""
    return {"IPAMConfig": None, "Links": None, "Aliases": None, "NetworkID": "",
            "EndpointID": "", "Gateway": "", "IPAddress": "", "IPPrefixLen": 0,
            "IPv6Gateway": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0,
            "MacAddress": "", "DriverOpts": None, "Interface": "", **fields}


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
