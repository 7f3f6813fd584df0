"""The ``none`` network: a network namespace of its own with only ``lo`` up."""

from __future__ import annotations

from pinnace.plugin import (
    Attachment,
    FailedPrecondition,
    Interface,
    IPConfig,
    NetworkResult,
    Plugin,
    hookimpl,
)


class NoneNetwork(Plugin):
    """Loopback only: no route out, nothing to clean up but the namespace itself."""

    @hookimpl
    def pinnace_network_add(self, attachment: Attachment) -> NetworkResult:
        """Bring ``lo`` up inside the container's network namespace (from a thread that
        ends there: a rootless pinnace cannot come back)."""
        from pinnace.plugin import netns

        netns.run_in(attachment.netns, netns.loopback_up)
        return NetworkResult(
            interfaces=(Interface("lo", sandbox=attachment.netns),),
            ips=(IPConfig("127.0.0.1/8"),),
        )

    @hookimpl
    def pinnace_network_del(self, attachment: Attachment) -> None:
        """Nothing to undo: the namespace goes with the container."""

    @hookimpl
    def pinnace_network_check(self, attachment: Attachment) -> None:
        """``lo`` must be up."""
        from pinnace.plugin import netns

        if not netns.run_in(attachment.netns, lambda: netns.loopback_up(bring_up=False)):
            raise FailedPrecondition(f"lo is down in {attachment.netns}")
