"""pinnace's isolation contract, run against the built-in ``unshare`` plugin."""

from __future__ import annotations

from pathlib import Path

from pinnace.plugin import PluginContext
from pinnace.testing.isolation import IsolationContract
from pinnace_plugins.isolation_unshare import UnshareIsolation


class TestUnshareContract(IsolationContract):
    """Everything pinnace expects of an isolation plugin, exec and pause included."""

    can_exec = True
    can_pause = True

    def make_plugin(self, tmp_path: Path) -> UnshareIsolation:
        """An unshare plugin whose run dir is under the test's temp dir."""
        return UnshareIsolation(PluginContext.for_plugin(
            UnshareIsolation, "unshare", "isolation", data_dir=tmp_path / "data",
            run_dir=tmp_path / "run"))
