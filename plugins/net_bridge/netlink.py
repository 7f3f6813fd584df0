"""The few rtnetlink requests the bridge network makes, encoded with pyroute2's messages.

pyroute2's message classes (``ifinfmsg``, ``ifaddrmsg``, ``rtmsg``) encode
the requests; a plain netlink socket sends them and reads the kernel's
acknowledgement. ``from pyroute2 import IPRoute`` would cost ~300 ms of
start-up against ~35 ms for these modules (``bench/net_overhead.py``): the
package's ``__init__`` imports every API it has, and ``IPRoute`` brings
asyncio and every message family. So a bare package object stands in for
``pyroute2/__init__.py`` and only the message modules are imported.
"""

from __future__ import annotations

import os
import socket
import struct
import sys
from typing import Any

_HEADER = struct.Struct("=LHHLL")
NLMSG_ERROR = 2
RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK, RTM_NEWADDR, RTM_NEWROUTE = 16, 17, 18, 20, 24
NLM_F_REQUEST, NLM_F_ACK, NLM_F_EXCL, NLM_F_CREATE = 1, 4, 0x200, 0x400
IFF_UP = 1
BRIDGE_MODE_HAIRPIN = 1


def _messages() -> Any:
    """pyroute2's rtnetlink message module namespace (imported on first use)."""
    if "pyroute2" not in sys.modules:
        import importlib.util
        import types

        spec = importlib.util.find_spec("pyroute2")
        if spec is None or spec.submodule_search_locations is None:
            from pinnace.plugin import Unavailable

            raise Unavailable("the bridge network needs pyroute2: pip install 'pinnace[net]'")
        package = types.ModuleType("pyroute2")
        package.__path__ = list(spec.submodule_search_locations)
        package.__spec__ = spec
        sys.modules["pyroute2"] = package
    from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
    from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
    from pyroute2.netlink.rtnl.rtmsg import rtmsg

    return ifinfmsg, ifaddrmsg, rtmsg


class Netlink:
    """An rtnetlink socket in the calling thread's network namespace (or ``netns``'s)."""

    def __init__(self, netns: str | None = None) -> None:
        if netns is None:
            self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
        else:
            from pinnace.plugin import netns as ns

            with ns.entered(netns):
                self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW,
                                          socket.NETLINK_ROUTE)
        self.sock.bind((0, 0))
        self.seq = 0
        self.ifinfmsg, self.ifaddrmsg, self.rtmsg = _messages()

    def __enter__(self) -> Netlink:
        return self

    def __exit__(self, *_: object) -> None:
        self.sock.close()

    def _send(self, msg: Any, kind: int, flags: int, fields: dict[str, int],
              attrs: list[tuple[str, Any]]) -> bytes:
        self.seq += 1
        for key, value in fields.items():
            msg[key] = value
        msg["attrs"] = attrs
        msg["header"]["type"] = kind
        msg["header"]["flags"] = NLM_F_REQUEST | flags
        msg["header"]["sequence_number"] = self.seq
        msg.encode()
        self.sock.send(msg.data)
        while True:
            data = self.sock.recv(65536)
            _, reply, _, seq, _ = _HEADER.unpack_from(data)
            if seq != self.seq:
                continue
            if reply == NLMSG_ERROR:
                code = struct.unpack_from("=i", data, _HEADER.size)[0]
                if code:
                    raise OSError(-code, f"netlink: {os.strerror(-code)}")
            return data

    def request(self, msg: Any, kind: int, flags: int = 0, fields: dict[str, int] | None = None,
                attrs: list[tuple[str, Any]] | None = None) -> None:
        """Send one request and wait for the kernel's acknowledgement (OSError on failure)."""
        self._send(msg, kind, flags | NLM_F_ACK, fields or {}, attrs or [])

    # ------------------------------------------------------------------ links
    def add_bridge(self, name: str) -> None:
        """Create bridge ``name``."""
        self.request(self.ifinfmsg(), RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, attrs=[
            ("IFLA_IFNAME", name), ("IFLA_LINKINFO", {"attrs": [("IFLA_INFO_KIND", "bridge")]})])

    def add_veth(self, name: str, peer: str, peer_netns_fd: int) -> None:
        """Create veth pair ``name`` here, ``peer`` in the namespace open on ``peer_netns_fd``."""
        peer_info = {"attrs": [("IFLA_IFNAME", peer), ("IFLA_NET_NS_FD", peer_netns_fd)]}
        self.request(self.ifinfmsg(), RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, attrs=[
            ("IFLA_IFNAME", name),
            ("IFLA_LINKINFO", {"attrs": [
                ("IFLA_INFO_KIND", "veth"),
                ("IFLA_INFO_DATA", {"attrs": [("VETH_INFO_PEER", peer_info)]})]})])

    def set_up(self, index: int, master: int | None = None) -> None:
        """Bring link ``index`` up (and enslave it to bridge ``master``)."""
        self.request(self.ifinfmsg(), RTM_NEWLINK, fields={"index": index, "flags": IFF_UP,
                                                            "change": IFF_UP},
                     attrs=[("IFLA_MASTER", master)] if master is not None else [])

    def set_hairpin(self, index: int) -> None:
        """Let bridge port ``index`` send frames back where they came from."""
        self.request(self.ifinfmsg(), RTM_NEWLINK, fields={"index": index}, attrs=[
            ("IFLA_LINKINFO", {"attrs": [
                ("IFLA_INFO_SLAVE_KIND", "bridge"),
                ("IFLA_INFO_SLAVE_DATA", {"attrs": [("IFLA_BRPORT_MODE", BRIDGE_MODE_HAIRPIN)]}),
            ]})])

    def delete_link(self, name: str) -> None:
        """Delete link ``name`` (a veth takes its peer along)."""
        self.request(self.ifinfmsg(), RTM_DELLINK, attrs=[("IFLA_IFNAME", name)])

    def link_attr(self, index: int, name: str) -> Any:
        """Attribute ``name`` of link ``index`` (``IFLA_ADDRESS``, ``IFLA_MASTER`` ...) or None."""
        data = self._send(self.ifinfmsg(), RTM_GETLINK, 0, {"index": index}, [])
        reply = self.ifinfmsg(data)
        reply.decode()
        return reply.get_attr(name)

    # ------------------------------------------------------------------ addresses, routes
    def add_address(self, index: int, address: str, prefixlen: int) -> None:
        """Add IPv4 ``address/prefixlen`` to link ``index``."""
        self.request(self.ifaddrmsg(), RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL,
                     fields={"family": socket.AF_INET, "prefixlen": prefixlen, "index": index},
                     attrs=[("IFA_LOCAL", address), ("IFA_ADDRESS", address)])

    def add_default_route(self, gateway: str, index: int) -> bool:
        """Route everything via ``gateway`` on link ``index``; False when a default route exists."""
        try:
            self.request(self.rtmsg(), RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL,
                         fields={"family": socket.AF_INET, "dst_len": 0, "table": 254,
                                 "proto": 3, "scope": 0, "type": 1},
                         attrs=[("RTA_GATEWAY", gateway), ("RTA_OIF", index)])
        except FileExistsError:
            return False
        return True
