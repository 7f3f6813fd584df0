"""The volume contract: tests every volume driver must pass (``pinnace.testing.volume``).

Subclass :class:`VolumeContract` in a test module, build your driver in
``make_plugin`` and run pytest as root::

    from pinnace.plugin import PluginContext
    from pinnace.testing.volume import VolumeContract
    from my_driver import MyVolumes

    class TestMyVolumes(VolumeContract):
        def make_plugin(self, tmp_path):
            return MyVolumes(PluginContext.for_plugin(MyVolumes, "mine", "volume",
                                                      data_dir=tmp_path / "data"))

``create_options`` gives the options a plain volume is made with (override it when
the driver needs some, e.g. a size). The suite calls the hooks on the instance by
keyword, as pinnace does; several "containers" are only IDs. Every test checks that
nothing is left: no volume listed and no mount under the test's directory.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pinnace.plugin import (
    AlreadyExists,
    FailedPrecondition,
    InvalidConfig,
    NotFound,
    VolumeCapabilities,
    VolumeInfo,
)
from pinnace.testing import assert_implements_role


def mounts_under(path: Path) -> list[str]:
    """Mount points at or below ``path`` in this mount namespace."""
    from pinnace.plugin import linux

    return linux.mounts_under(str(path))


class Volumes:
    """A volume driver's hooks under short names, called by keyword."""

    def __init__(self, plugin: Any, options: dict[str, str]) -> None:
        self.plugin = plugin
        self.options = options

    def create(self, name: str, options: dict[str, str] | None = None,
               labels: dict[str, str] | None = None) -> VolumeInfo:
        """``pinnace_volume_create`` (with the suite's default options)."""
        return self.plugin.pinnace_volume_create(
            name=name, options=self.options if options is None else options,
            labels=labels or {})

    def remove(self, name: str) -> None:
        """``pinnace_volume_remove``."""
        self.plugin.pinnace_volume_remove(name=name)

    def mount(self, name: str, container_id: str) -> str:
        """``pinnace_volume_mount``."""
        return self.plugin.pinnace_volume_mount(name=name, container_id=container_id)

    def unmount(self, name: str, container_id: str) -> None:
        """``pinnace_volume_unmount``."""
        self.plugin.pinnace_volume_unmount(name=name, container_id=container_id)

    def path(self, name: str) -> str:
        """``pinnace_volume_path``."""
        return self.plugin.pinnace_volume_path(name=name)

    def get(self, name: str) -> VolumeInfo:
        """``pinnace_volume_get``."""
        return self.plugin.pinnace_volume_get(name=name)

    def names(self) -> list[str]:
        """The names ``pinnace_volume_list`` returns, sorted."""
        return sorted(v.name for v in self.plugin.pinnace_volume_list())


class VolumeContract:
    """The tests a volume driver must pass. Subclass it as ``Test...`` and implement
    :meth:`make_plugin`."""

    def make_plugin(self, tmp_path: Path) -> Any:
        """Return a new instance of the driver under test, keeping its data under
        ``tmp_path``."""
        raise NotImplementedError

    def create_options(self) -> dict[str, str]:
        """The driver options a plain volume is made with."""
        return {}

    @pytest.fixture
    def volumes(self, tmp_path: Path) -> Iterator[Volumes]:
        """The driver under test; afterwards no volume and no mount may be left."""
        driver = Volumes(self.make_plugin(tmp_path), self.create_options())
        yield driver
        left = driver.names()
        for name in left:
            driver.remove(name)
        assert left == [], f"volumes left behind: {left}"
        assert mounts_under(tmp_path) == []

    def test_implements_the_volume_role(self, volumes: Volumes) -> None:
        assert_implements_role(volumes.plugin, "volume")
        caps = volumes.plugin.pinnace_volume_capabilities()
        assert isinstance(caps, VolumeCapabilities) and caps.scope in ("local", "global")

    def test_create_get_list_remove(self, volumes: Volumes) -> None:
        info = volumes.create("vol1", labels={"a": "b"})
        assert isinstance(info, VolumeInfo) and info.name == "vol1"
        assert info.created_at > 0
        assert volumes.get("vol1").name == "vol1"
        assert volumes.names() == ["vol1"]
        assert volumes.path("vol1") == volumes.get("vol1").mountpoint
        volumes.remove("vol1")
        assert volumes.names() == []
        with pytest.raises(NotFound):
            volumes.get("vol1")

    def test_missing_volumes_are_not_found(self, volumes: Volumes) -> None:
        for call in (lambda: volumes.get("nope"), lambda: volumes.path("nope"),
                     lambda: volumes.remove("nope"), lambda: volumes.mount("nope", "c1")):
            with pytest.raises(NotFound):
                call()

    def test_a_name_is_made_once(self, volumes: Volumes) -> None:
        volumes.create("twice")
        with pytest.raises(AlreadyExists):
            volumes.create("twice")
        volumes.remove("twice")

    def test_unknown_options_are_refused_leaving_nothing(self, volumes: Volumes) -> None:
        with pytest.raises(InvalidConfig):
            volumes.create("bad", options={**self.create_options(), "no-such-option": "1"})
        assert volumes.names() == []

    def test_data_written_through_a_mount_stays(self, volumes: Volumes) -> None:
        volumes.create("keep")
        path = volumes.mount("keep", "c1")
        assert os.path.isdir(path)
        Path(path, "file").write_text("kept\n")
        volumes.unmount("keep", "c1")
        assert Path(volumes.mount("keep", "c2"), "file").read_text() == "kept\n"
        volumes.unmount("keep", "c2")
        volumes.remove("keep")

    def test_the_last_container_out_releases_it(self, volumes: Volumes, tmp_path: Path) -> None:
        volumes.create("shared")
        first = volumes.mount("shared", "c1")
        assert volumes.mount("shared", "c2") == first
        volumes.unmount("shared", "c1")
        Path(first, "still").write_text("mounted\n")  # c2 still uses it
        assert Path(first, "still").read_text() == "mounted\n"
        with pytest.raises(FailedPrecondition):
            volumes.remove("shared")
        volumes.unmount("shared", "c2")
        volumes.unmount("shared", "c2")  # idempotent
        volumes.unmount("shared", "never-mounted")
        assert mounts_under(tmp_path) == []
        volumes.remove("shared")

    def test_concurrent_mounts_agree(self, volumes: Volumes, tmp_path: Path) -> None:
        volumes.create("busy")
        paths: list[str] = []
        threads = [threading.Thread(target=lambda i=i: paths.append(volumes.mount("busy",
                                                                                f"c{i}")))
                   for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(paths) == 6 and len(set(paths)) == 1
        for i in range(6):
            volumes.unmount("busy", f"c{i}")
        assert mounts_under(tmp_path) == []
        volumes.remove("busy")
