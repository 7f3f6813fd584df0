"""The network contract suite (pinnace.testing.network) run against the built-in
network plugins, each test inside a private network namespace the suite makes."""

from __future__ import annotations

from pathlib import Path

from pinnace.plugin import PluginContext, netns
from pinnace.testing.network import NetworkContract
from pinnace_plugins.net_bridge import BridgeNetwork
from pinnace_plugins.net_host import HostNetwork
from pinnace_plugins.net_none import NoneNetwork
from pinnace_plugins.net_pasta import PastaNetwork
from pinnace_plugins.net_slirp4netns import Slirp4netnsNetwork


class TestNoneContract(NetworkContract):
    """``none``: loopback only, containers isolated from each other."""

    connected = False

    def make_plugin(self, tmp_path: Path) -> NoneNetwork:
        """A none plugin (it keeps no data)."""
        return NoneNetwork(PluginContext.for_plugin(NoneNetwork, "none", "network",
                                                    data_dir=tmp_path / "data",
                                                    run_dir=tmp_path / "run"))


class TestHostContract(NetworkContract):
    """``host``: every container in the host's namespace, so they reach each other."""

    connected = True

    def make_plugin(self, tmp_path: Path) -> HostNetwork:
        """A host plugin (it keeps no data)."""
        return HostNetwork(PluginContext.for_plugin(HostNetwork, "host", "network",
                                                    data_dir=tmp_path / "data",
                                                    run_dir=tmp_path / "run"))


class TestBridgeContract(NetworkContract):
    """``bridge``: a bridge per network, a veth per container, addresses from the core."""

    connected = True

    def make_plugin(self, tmp_path: Path) -> BridgeNetwork:
        """A bridge plugin keeping its locks under the test's temp dir."""
        return BridgeNetwork(PluginContext.for_plugin(
            BridgeNetwork, "bridge", "network", {"subnet": "10.77.0.0/24", "pool": "10.78.0.0/16"},
            data_dir=tmp_path / "data", run_dir=tmp_path / "run"))


class TestSlirp4netnsContract(NetworkContract):
    """``slirp4netns``: a user-mode stack per container, containers isolated from each
    other (they meet through published ports only)."""

    connected = False

    def make_plugin(self, tmp_path: Path) -> Slirp4netnsNetwork:
        """A slirp4netns plugin keeping its PID files under the test's run directory."""
        return Slirp4netnsNetwork(PluginContext.for_plugin(
            Slirp4netnsNetwork, "slirp4netns", "network", data_dir=tmp_path / "data",
            run_dir=tmp_path / "run"))


class TestPastaContract(NetworkContract):
    """``pasta``: a tap per container whose traffic pasta carries on host sockets,
    containers isolated from each other (they meet through published ports only)."""

    connected = False

    def prepare_host(self) -> None:
        """pasta copies the outside's configuration from an interface with a default route."""
        netns.add_uplink()

    def make_plugin(self, tmp_path: Path) -> PastaNetwork:
        """A pasta plugin keeping its PID files under the test's run directory."""
        return PastaNetwork(PluginContext.for_plugin(
            PastaNetwork, "pasta", "network", data_dir=tmp_path / "data",
            run_dir=tmp_path / "run"))
