"""The built-in ``local`` volume driver against the volume contract, plain and mounted
from a tmpfs and from a bind of a host directory (docker's local driver options)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pinnace.plugin import InvalidConfig, PluginContext
from pinnace.testing.volume import VolumeContract, Volumes, mounts_under
from pinnace_plugins.volume_local import LocalVolumes


def local(tmp_path: Path) -> LocalVolumes:
    return LocalVolumes(PluginContext.for_plugin(LocalVolumes, "local", "volume",
                                                 data_dir=tmp_path / "data"))


class TestLocalVolumes(VolumeContract):
    """A directory per volume."""

    def make_plugin(self, tmp_path: Path) -> LocalVolumes:
        return local(tmp_path)


class TestLocalTmpfsVolumes(VolumeContract):
    """``-o type=tmpfs,device=tmpfs,o=size=8m``: mounted while containers use it."""

    def make_plugin(self, tmp_path: Path) -> LocalVolumes:
        return local(tmp_path)

    def create_options(self) -> dict[str, str]:
        return {"type": "tmpfs", "device": "tmpfs", "o": "size=8m"}

    def test_data_written_through_a_mount_stays(self, volumes: Volumes) -> None:
        """A tmpfs forgets what it held once the last container leaves (as docker's)."""
        volumes.create("keep")
        path = volumes.mount("keep", "c1")
        Path(path, "file").write_text("gone\n")
        volumes.unmount("keep", "c1")
        assert not Path(volumes.mount("keep", "c2"), "file").exists()
        volumes.unmount("keep", "c2")
        volumes.remove("keep")


def test_bind_volume_shows_the_host_directory(tmp_path: Path) -> None:
    host = tmp_path / "host"
    host.mkdir()
    (host / "there").write_text("from the host\n")
    volumes = Volumes(local(tmp_path), {"type": "none", "o": "bind", "device": str(host)})
    volumes.create("b")
    path = volumes.mount("b", "c1")
    assert Path(path, "there").read_text() == "from the host\n"
    Path(path, "back").write_text("to the host\n")
    volumes.unmount("b", "c1")
    assert mounts_under(tmp_path) == []
    volumes.remove("b")  # removes the volume, never the bound directory's files
    assert sorted(p.name for p in host.iterdir()) == ["back", "there"]


@pytest.mark.parametrize("options, message", [
    ({"type": "tmpfs"}, "missing required option: device"),
    ({"device": "/dev/null"}, "missing required option: type"),
    ({"type": "none", "device": "/tmp"}, "type=none needs o=bind"),
    ({"size": "1g"}, "invalid option key: 'size'"),
])
def test_local_options_are_checked_at_create(tmp_path: Path, options: dict[str, str],
                                             message: str) -> None:
    volumes = Volumes(local(tmp_path), options)
    with pytest.raises(InvalidConfig, match=message):
        volumes.create("v")
    assert volumes.names() == [] and not (tmp_path / "data" / "v").exists()
