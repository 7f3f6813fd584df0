"""The network contract suite (pinnace.testing.network) run against the built-in
network plugins, each test inside a private network namespace the suite makes."""

from __future__ import annotations

from pathlib import Path

from pinnace.plugin import PluginContext
from pinnace.testing.network import NetworkContract
from pinnace_plugins.net_none import NoneNetwork


class TestNoneContract(NetworkContract):
    """``none``: loopback only, containers isolated from each other."""

    connected = False

    def make_plugin(self, tmp_path: Path) -> NoneNetwork:
        """A none plugin (it keeps no data)."""
        return NoneNetwork(PluginContext("none", "network", {}, data_dir=tmp_path / "data",
                                         run_dir=tmp_path / "run"))
