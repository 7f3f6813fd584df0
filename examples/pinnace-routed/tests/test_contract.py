"""pinnace's network contract, run against this plugin (as root, in a private netns)."""

from __future__ import annotations

from pathlib import Path

from pinnace_routed import RoutedNetwork

from pinnace.plugin import PluginContext
from pinnace.testing.network import NetworkContract


class TestRoutedContract(NetworkContract):
    """Everything pinnace expects of a network plugin that connects containers."""

    connected = True

    def make_plugin(self, tmp_path: Path) -> RoutedNetwork:
        """A routed plugin keeping its leases under the test's temp dir."""
        return RoutedNetwork(PluginContext.for_plugin(
            RoutedNetwork, "routed", "network", {"pool": "10.213.0.0/24"},
            data_dir=tmp_path / "data", run_dir=tmp_path / "run"))
