"""The ``bridge`` network: registered so it can be selected and listed; its work
(bridge, veth pairs, IPAM, NAT, published ports) is not implemented yet."""

from __future__ import annotations

from pinnace.errors import Unavailable
from pinnace.network import Attachment, NetworkResult
from pinnace.plugin import Plugin, hookimpl

NOT_YET = "network 'bridge' is not implemented yet; use --net=none"


class BridgeNetwork(Plugin):
    """Placeholder for the bridge strategy: every call but ``del`` says it is unavailable."""

    @hookimpl
    def pinnace_network_add(self, attachment: Attachment) -> NetworkResult:
        """Refuse with a clear error."""
        raise Unavailable(NOT_YET)

    @hookimpl
    def pinnace_network_del(self, attachment: Attachment) -> None:
        """Nothing was made, so nothing to undo (``del`` must always succeed)."""

    @hookimpl
    def pinnace_network_check(self, attachment: Attachment) -> None:
        """Refuse with a clear error."""
        raise Unavailable(NOT_YET)
