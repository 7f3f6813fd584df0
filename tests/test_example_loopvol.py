"""The third-party volume driver (examples/pinnace-loopvol): installed with pip into a
directory on the test's PYTHONPATH, discovered as volume driver ``loop``, run against
the volume contract, and used with real containers next to the built-in ``local``
driver: both in one container, each volume removed by the driver that made it, and a
driver that fails at mount leaving nothing behind."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from conftest import Pinnace, assert_discovered, assert_passes_its_contract, host_leftovers
from test_plugins import install_fake

FAILING = '''
from pinnace.plugin import NotFound, Plugin, VolumeCapabilities, VolumeInfo, hookimpl

class Failing(Plugin):
    """Makes volumes (in memory of the data dir) but cannot mount them."""

    def _names(self):
        d = self.ctx.data_dir
        return sorted(p.name for p in d.iterdir()) if d.is_dir() else []

    @hookimpl
    def pinnace_volume_create(self, name, options, labels):
        (self.ctx.data_dir / name).mkdir(parents=True)
        return VolumeInfo(name, str(self.ctx.data_dir / name), 1.0)

    @hookimpl
    def pinnace_volume_remove(self, name):
        if name not in self._names():
            raise NotFound(name)
        (self.ctx.data_dir / name).rmdir()

    @hookimpl
    def pinnace_volume_mount(self, name, container_id):
        raise RuntimeError("the device is on fire")

    @hookimpl
    def pinnace_volume_unmount(self, name, container_id):
        pass

    @hookimpl
    def pinnace_volume_path(self, name):
        return str(self.ctx.data_dir / name)

    @hookimpl
    def pinnace_volume_get(self, name):
        return VolumeInfo(name, str(self.ctx.data_dir / name), 1.0)

    @hookimpl
    def pinnace_volume_list(self):
        return [VolumeInfo(n, str(self.ctx.data_dir / n), 1.0) for n in self._names()]

    @hookimpl
    def pinnace_volume_capabilities(self):
        return VolumeCapabilities()
'''


@pytest.fixture
def lpn(pn: Pinnace, loopvol_site: Path) -> Pinnace:
    """pinnace with the loop driver on its PYTHONPATH."""
    pn.add_site(loopvol_site)
    return pn


def inspect(pn: Pinnace, name: str) -> dict:
    [info] = json.loads(pn("volume", "inspect", name).stdout)
    return info


def rows(root: Path, sql: str) -> list[tuple]:
    db = sqlite3.connect(root / "state.db")
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


def test_loop_driver_is_discovered(pn: Pinnace, loopvol_site: Path) -> None:
    assert_discovered(pn, loopvol_site, "volume", "loop", "pinnace-loopvol")


def test_loop_driver_passes_the_volume_contract(loopvol_site: Path, tmp_path: Path) -> None:
    assert_passes_its_contract("pinnace-loopvol", loopvol_site, tmp_path)


def test_a_loop_volume_holds_no_more_than_its_size(lpn: Pinnace, busybox: str) -> None:
    lpn("volume", "create", "-d", "loop", "-o", "size=16m", "small")
    info = inspect(lpn, "small")
    assert info["Driver"] == "loop" and info["Status"] == {"size": str(16 << 20)}
    proc = lpn("run", "--rm", "-v", "small:/s", busybox, "sh", "-c",
               "df -k /s | tail -1; dd if=/dev/zero of=/s/big bs=1M count=32", check=False)
    assert proc.returncode != 0 and "No space left on device" in proc.stderr
    assert int(proc.stdout.split()[1]) < 16 * 1024
    assert host_leftovers(lpn.root) == []  # unmounted once the container left
    assert "invalid option key" in lpn("volume", "create", "-d", "loop", "-o", "colour=red",
                                       "bad", check=False).stderr


def test_two_drivers_in_one_container(lpn: Pinnace, busybox: str) -> None:
    lpn("volume", "create", "-d", "loop", "-o", "size=8m", "onloop")
    out = lpn("run", "--name", "both", "-v", "onloop:/loop", "-v", "onlocal:/local",
              "--mount", "type=volume,target=/anon,volume-driver=loop,volume-opt=size=4m",
              busybox, "sh", "-c",
              "echo L > /loop/f; echo D > /local/f; grep -E ' /(loop|local|anon) ' "
              "/proc/mounts | cut -d' ' -f2,3 | sort").stdout
    assert out.splitlines() == ["/anon ext4", "/local btrfs", "/loop ext4"]
    drivers = dict(rows(lpn.root, "SELECT name, driver FROM volumes"))
    assert drivers.pop("onloop") == "loop" and drivers.pop("onlocal") == "local"
    assert list(drivers.values()) == ["loop"]  # the anonymous one
    assert host_leftovers(lpn.root) == []
    lpn("rm", "-v", "both")
    assert sorted(lpn("volume", "ls", "-q").stdout.split()) == ["onlocal", "onloop"]


def test_volume_driver_flag_picks_the_driver_of_new_volumes(lpn: Pinnace, busybox: str) -> None:
    lpn("volume", "create", "already")  # local: --volume-driver does not change it
    out = lpn("run", "--rm", "--volume-driver", "loop", "-v", "fresh:/f", "-v", "already:/a",
              busybox, "sh", "-c", "grep -E ' /(f|a) ' /proc/mounts | cut -d' ' -f2,3 | sort")
    assert out.stdout.splitlines() == ["/a btrfs", "/f ext4"]
    assert dict(rows(lpn.root, "SELECT name, driver FROM volumes")) == {
        "already": "local", "fresh": "loop"}
    assert "already exists with driver local" in lpn(
        "run", "--rm", "--mount", "type=volume,src=already,dst=/a,volume-driver=loop",
        busybox, "true", check=False).stderr


def test_the_driver_that_made_a_volume_removes_it(lpn: Pinnace, busybox: str) -> None:
    lpn("volume", "create", "-d", "loop", "-o", "size=4m", "mine")
    image = Path(inspect(lpn, "mine")["Mountpoint"]).parent / "volume.img"
    assert image.exists()
    lpn.env["PINNACE_VOLUME"] = "local"  # another driver selected now
    assert lpn("run", "--rm", "-v", "mine:/m", busybox, "sh", "-c",
               "grep ' /m ' /proc/mounts | cut -d' ' -f3").stdout == "ext4\n"
    lpn("volume", "rm", "mine")
    assert not image.parent.exists()
    lpn.env["PINNACE_VOLUME"] = "loop"  # and the other way round
    lpn("volume", "create", "-d", "local", "dirvol")
    lpn("volume", "create", "plain-loop")
    assert inspect(lpn, "plain-loop")["Driver"] == "loop"
    lpn("volume", "rm", "dirvol", "plain-loop")
    assert not (lpn.root / "volume" / "local" / "dirvol").exists()
    assert lpn("volume", "ls", "-q").stdout == ""


def test_a_driver_failing_at_mount_leaves_nothing(lpn: Pinnace, busybox: str,
                                                  tmp_path: Path) -> None:
    site = tmp_path / "failing-site"
    install_fake(site, "pinnace-failing", "failing_volumes", FAILING,
                 {"pinnace.volume": {"failing": "failing_volumes:Failing"}})
    lpn.add_site(site)
    proc = lpn("run", "--rm", "--mount", "type=volume,target=/ok,volume-driver=loop",
               "--mount", "type=volume,target=/bad,volume-driver=failing",
               busybox, "true", check=False)
    assert proc.returncode == 125
    assert proc.stderr.strip() == ("Error: volume plugin 'failing' failed in mount: "
                                   "RuntimeError: the device is on fire")
    assert lpn("ps", "-aq").stdout == ""
    assert rows(lpn.root, "SELECT * FROM volume_users") == []
    assert rows(lpn.root, "SELECT * FROM volumes") == []  # both anonymous: gone with --rm
    assert host_leftovers(lpn.root) == []
    assert list((lpn.root / "volume" / "failing").iterdir()) == []
    assert list((lpn.root / "volume" / "loop").iterdir()) == []
    # named: the run fails the same way, and the volumes stay whole, as recorded
    proc = lpn("run", "--rm", "-v", "good:/ok", "--mount",
               "type=volume,source=broken,target=/bad,volume-driver=failing",
               busybox, "true", check=False)
    assert proc.returncode == 125 and "the device is on fire" in proc.stderr
    assert sorted(lpn("volume", "ls", "-q").stdout.split()) == ["broken", "good"]
    assert rows(lpn.root, "SELECT * FROM volume_users") == []
    assert host_leftovers(lpn.root) == []
    lpn("volume", "rm", "broken", "good")
    assert list((lpn.root / "volume" / "failing").iterdir()) == []
