"""A routed network plugin for pinnace: a point-to-point veth per container and a
``/32`` route to it on the host side, no bridge (the way Calico connects pods).

The host end of every veth carries the same link-local gateway address, so a
container's default route (``via 169.254.1.1``) always leaves through its own
veth; the host forwards between the ``/32`` routes. Addresses are leased as
files ``<data dir>/leases/<address>`` created under a lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

from pinnace.plugin import (
    Attachment,
    FailedPrecondition,
    Interface,
    InvalidConfig,
    IPConfig,
    NetworkResult,
    Option,
    Plugin,
    Route,
    Unavailable,
    hookimpl,
    netns,
)

GATEWAY = "169.254.1.1"
"""The link-local address every host-side veth carries: each container's next hop."""


def ip_batch(commands: list[str]) -> None:
    """Run iproute2 commands in one ``ip -batch`` process (in the calling thread's netns)."""
    try:
        proc = subprocess.run(["ip", "-batch", "-"], input="\n".join(commands) + "\n",
                              capture_output=True, text=True)
    except FileNotFoundError:
        raise Unavailable("routed: the ip command (Debian package iproute2) is missing") from None
    if proc.returncode != 0:
        detail = " ".join(proc.stderr.split()) or f"exit {proc.returncode}"
        raise FailedPrecondition(f"routed: ip failed: {detail}")


def ip_json(*args: str) -> list[dict]:
    """``ip -j ARGS`` parsed (in the calling thread's netns); [] when the object is absent."""
    proc = subprocess.run(["ip", "-j", *args], capture_output=True, text=True)
    return json.loads(proc.stdout or "[]") if proc.returncode == 0 else []


class RoutedNetwork(Plugin):
    """One veth pair and one /32 route per container; the host routes between them."""

    options = (Option("pool", "10.213.0.0/16", "IPv4 range container addresses come from"),)

    # ------------------------------------------------------------ names and leases
    @staticmethod
    def host_ifname(attachment: Attachment) -> str:
        """The host end of the container's veth (at most 15 characters)."""
        return "rt" + attachment.container_id[:12]

    def _pool(self) -> ipaddress.IPv4Network:
        try:
            pool = ipaddress.IPv4Network(self.opt("pool"))
        except ValueError as err:
            raise InvalidConfig(f"routed: invalid pool {self.opt('pool')!r}: {err}") from None
        if pool.num_addresses < 4:
            raise InvalidConfig(f"routed: pool {pool} is too small")
        return pool

    @contextlib.contextmanager
    def _leases(self) -> Iterator[Path]:
        """The lease directory, locked against other pinnace processes."""
        leases = self.ctx.data_dir / "leases"
        leases.mkdir(parents=True, exist_ok=True)
        with open(self.ctx.data_dir / "leases.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield leases

    def _lease(self, attachment: Attachment) -> str:
        """A free address for the container (stale leases, whose netns is gone, are reclaimed)."""
        with self._leases() as leases:
            taken = set()
            for lease in leases.iterdir():
                holder = json.loads(lease.read_text())
                if holder["container"] == attachment.container_id:
                    return lease.name
                if os.path.exists(holder["netns"]):
                    taken.add(lease.name)
                else:
                    lease.unlink()
            for address in self._pool().hosts():
                if str(address) not in taken:
                    (leases / str(address)).write_text(json.dumps(
                        {"container": attachment.container_id, "netns": attachment.netns}))
                    return str(address)
        raise Unavailable(f"routed: no free address left in {self._pool()}")

    def _release(self, attachment: Attachment) -> None:
        with self._leases() as leases:
            for lease in leases.iterdir():
                if json.loads(lease.read_text())["container"] == attachment.container_id:
                    lease.unlink()

    def _leased(self, attachment: Attachment) -> str | None:
        with self._leases() as leases:
            for lease in leases.iterdir():
                if json.loads(lease.read_text())["container"] == attachment.container_id:
                    return lease.name
        return None

    # ------------------------------------------------------------------- hooks
    @hookimpl
    def pinnace_network_add(self, attachment: Attachment) -> NetworkResult:
        """Lease an address, make the veth pair, route the /32 to it, configure the container."""
        address = self._lease(attachment)
        host, peer = self.host_ifname(attachment), "rc" + attachment.container_id[:12]
        Path("/proc/sys/net/ipv4/ip_forward").write_text("1\n")
        ip_batch([
            f"link add {host} type veth peer name {peer}",
            f"link set {peer} netns {attachment.netns}",
            f"address add {GATEWAY}/32 dev {host} scope link",
            f"link set {host} up",
            f"route add {address}/32 dev {host} scope link",
        ])
        with netns.entered(attachment.netns):
            ip_batch([
                "link set lo up",
                f"link set {peer} name {attachment.ifname}",
                f"address add {address}/32 dev {attachment.ifname}",
                f"link set {attachment.ifname} up",
                f"route add {GATEWAY} dev {attachment.ifname} scope link",
                f"route add default via {GATEWAY} dev {attachment.ifname}",
            ])
        return NetworkResult(
            interfaces=(Interface(host), Interface(attachment.ifname, sandbox=attachment.netns)),
            ips=(IPConfig(f"{address}/32", gateway=GATEWAY, interface=1),),
            routes=(Route("0.0.0.0/0", GATEWAY),),
        )

    @hookimpl
    def pinnace_network_del(self, attachment: Attachment) -> None:
        """Delete the host end (the peer, its address and the /32 route go with it);
        free the lease."""
        host = self.host_ifname(attachment)
        if ip_json("link", "show", "dev", host):
            with contextlib.suppress(FailedPrecondition):  # gone meanwhile: nothing to undo
                ip_batch([f"link del {host}"])
        self._release(attachment)

    @hookimpl
    def pinnace_network_check(self, attachment: Attachment) -> None:
        """The host end is up with its /32 route; the container's interface is up with
        its address."""
        address, host = self._leased(attachment), self.host_ifname(attachment)
        if address is None:
            raise FailedPrecondition(
                f"routed: container {attachment.container_id[:12]} has no lease")
        link = ip_json("link", "show", "dev", host)
        if not link or "UP" not in link[0].get("flags", []):
            raise FailedPrecondition(f"routed: {host} is missing or down")
        if not ip_json("route", "show", f"{address}/32", "dev", host):
            raise FailedPrecondition(f"routed: no route to {address}/32 via {host}")
        with netns.entered(attachment.netns):
            inner = ip_json("address", "show", "dev", attachment.ifname)
        if not inner or "UP" not in inner[0].get("flags", []) or address not in {
                a.get("local") for a in inner[0].get("addr_info", [])}:
            raise FailedPrecondition(
                f"routed: {attachment.ifname} in {attachment.netns} is down or lacks {address}")
