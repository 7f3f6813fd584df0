"""pinnace's volume contract, run against this driver (as root)."""

from __future__ import annotations

from pathlib import Path

from pinnace_loopvol import LoopVolumes

from pinnace.plugin import PluginContext
from pinnace.testing.volume import VolumeContract


class TestLoopVolumesContract(VolumeContract):
    """Everything pinnace expects of a volume driver."""

    def make_plugin(self, tmp_path: Path) -> LoopVolumes:
        """A loop driver keeping its images under the test's directory."""
        return LoopVolumes(PluginContext.for_plugin(LoopVolumes, "loop", "volume",
                                                    data_dir=tmp_path / "data"))

    def create_options(self) -> dict[str, str]:
        """Small volumes: the suite makes several."""
        return {"size": "8m"}
