"""pinnace's isolation contract, run against this plugin (as root, with runc installed)."""

from __future__ import annotations

from pathlib import Path

from pinnace_runc import RuncIsolation

from pinnace.plugin import PluginContext
from pinnace.testing.isolation import IsolationContract


class TestRuncContract(IsolationContract):
    """Everything pinnace expects of an isolation plugin, exec and pause included."""

    can_exec = True
    can_pause = True

    def make_plugin(self, tmp_path: Path) -> RuncIsolation:
        """A runc plugin whose runc state (``--root``) is under the test's temp dir."""
        return RuncIsolation(PluginContext.for_plugin(
            RuncIsolation, "runc", "isolation", data_dir=tmp_path / "data",
            run_dir=tmp_path / "run"))
