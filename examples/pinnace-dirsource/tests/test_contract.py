"""pinnace's image source contract, run against this plugin (as root)."""

from __future__ import annotations

from pathlib import Path

from pinnace_dirsource import DirSource

from pinnace.plugin import PluginContext
from pinnace.testing.image_source import ImageSourceContract


class TestDirSourceContract(ImageSourceContract):
    """Everything pinnace expects of an image source that only fetches."""

    def make_plugin(self, tmp_path: Path) -> DirSource:
        """A dir source (it keeps no data of its own)."""
        return DirSource(PluginContext.for_plugin(DirSource, "dir", "image_source",
                                                  data_dir=tmp_path / "data"))

    def make_reference(self, rootfs: Path, tmp_path: Path) -> str:
        """The suite's rootfs directory is the source material as it is."""
        return str(rootfs)

    def missing_reference(self, tmp_path: Path) -> str:
        """A directory that was never made."""
        return str(tmp_path / "no-such-rootfs")
