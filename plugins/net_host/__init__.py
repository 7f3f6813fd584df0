"""The ``host`` network: the container shares the network namespace of the pinnace
process that starts it (its interfaces, addresses, ports, /etc/hosts and resolv.conf)."""

from __future__ import annotations

from typing import ClassVar

from pinnace.plugin import Attachment, NetworkResult, Plugin, hookimpl


class HostNetwork(Plugin):
    """No namespace of its own: the core joins the container to the host's (``host_netns``)."""

    host_netns: ClassVar[bool] = True
    """Tells the core to make no network namespace and join the caller's instead."""

    @hookimpl
    def pinnace_network_add(self, attachment: Attachment) -> NetworkResult:
        """Nothing to configure: the host's network is already there."""
        return NetworkResult()

    @hookimpl
    def pinnace_network_del(self, attachment: Attachment) -> None:
        """Nothing to undo."""

    @hookimpl
    def pinnace_network_check(self, attachment: Attachment) -> None:
        """Always as ``add`` left it."""
