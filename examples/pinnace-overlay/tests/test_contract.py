"""pinnace's storage contract, run against this plugin (as root)."""

from __future__ import annotations

from pathlib import Path

from pinnace_overlay import OverlayStorage

from pinnace.plugin import PluginContext
from pinnace.testing.storage import StorageContract


class TestOverlayContract(StorageContract):
    """Everything pinnace expects of a storage plugin."""

    def make_plugin(self, tmp_path: Path) -> OverlayStorage:
        """An overlay plugin keeping its snapshots under the test's temp dir."""
        return OverlayStorage(PluginContext.for_plugin(
            OverlayStorage, "overlay", "storage", data_dir=tmp_path / "data"))
