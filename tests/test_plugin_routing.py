"""Role calls reach their owner when one process has loaded two plugins of a role;
wrappers on role hooks run; extension plugins cannot take a command down.

Throwaway plugins are installed as real distributions (``install_fake``) on the
PYTHONPATH of the ``pinnace`` processes the tests start.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import Pinnace
from plugin_checks import nothing_left, snapshots, with_fault
from test_plugins import install_fake


@pytest.mark.parametrize("order", [("dir", "btrfs", "dir"), ("btrfs", "dir", "btrfs")])
def test_rm_and_rmi_across_two_storages_reach_each_owner(pn: Pinnace, busybox: str,
                                                         order: tuple[str, ...]) -> None:
    ids = []
    for i, storage in enumerate(order):
        pn("run", "--name", f"c{i}", f"--storage={storage}", busybox, "true")
        ids.append(json.loads(pn("inspect", f"c{i}").stdout)[0]["Id"])
    for storage in ("dir", "btrfs"):
        assert set(ids) & set(snapshots(pn.root, storage))
    out = pn("rm", "c0", "c1", "c2")
    assert out.stderr == ""
    for storage in ("dir", "btrfs"):
        assert not set(ids) & set(snapshots(pn.root, storage)), storage
    pn("rmi", busybox)
    assert snapshots(pn.root, "dir") == [] and snapshots(pn.root, "btrfs") == []
    assert pn("images", "-q").stdout.strip() == ""


SECOND_BRIDGE = '''
import hashlib
from dataclasses import replace
from pinnace_plugins.net_bridge import BridgeNetwork

class Other(BridgeNetwork):
    """A second bridge driver with a default network of its own."""

    def pinnace_network_default(self):
        base = super().pinnace_network_default()
        return replace(base, name="other0", id=hashlib.sha256(b"other0").hexdigest(),
                       subnet="10.77.0.0/24", gateway="10.77.0.1", options={"bridge": "other0"})

    pinnace_network_default.pinnace_impl = BridgeNetwork.pinnace_network_default.pinnace_impl
'''


def test_network_rm_across_two_drivers(npn: Pinnace, busybox: str, netns: Path,
                                       tmp_path: Path) -> None:
    from pinnace.testing.netns import run_in

    site = tmp_path / "site"
    install_fake(site, "pinnace-other-bridge", "other_bridge", SECOND_BRIDGE,
                 {"pinnace.network": {"other": "other_bridge:Other"}})
    npn.env["PYTHONPATH"] = str(site)
    npn("network", "create", "-d", "other", "m1")
    npn("network", "create", "-d", "bridge", "b1")
    npn("network", "create", "-d", "other", "m2")
    drivers = {n["Name"]: n["Driver"] for n in
               json.loads(npn("network", "ls", "--format", "json").stdout)}
    assert {k: v for k, v in drivers.items() if k in ("m1", "b1", "m2")} == \
        {"m1": "other", "b1": "bridge", "m2": "other"}
    npn("run", "--rm", "--network", "m2", busybox, "true")
    npn("run", "--rm", "--network", "b1", busybox, "true")
    bridges = run_in(netns, "ip", "-o", "link", "show", "type", "bridge").stdout
    assert "other0" not in bridges and "pinnace0" not in bridges  # no default was used
    out = npn("network", "rm", "m1", "b1", "m2")
    assert out.stdout.split() == ["m1", "b1", "m2"] and out.stderr == ""
    left = {n["Name"] for n in json.loads(npn("network", "ls", "--format", "json").stdout)}
    assert not left & {"m1", "b1", "m2"}


def test_wrappers_time_every_role_hook_of_a_run(npn: Pinnace, busybox: str,
                                                faults: Path) -> None:
    npn("run", "--rm", "--storage=dir", "--net=bridge", "-p", "8085:80", busybox, "true")
    timed = [json.loads(line)[0] for line in faults.read_text().splitlines()]
    for hook in ("pinnace_storage_prepare", "pinnace_network_add", "pinnace_network_del",
                 "pinnace_isolation_create", "pinnace_isolation_start",
                 "pinnace_isolation_wait", "pinnace_isolation_delete", "pinnace_storage_remove"):
        assert hook in timed, hook


def test_a_fault_after_each_role_hook_leaves_nothing(npn: Pinnace, busybox: str, netns: Path,
                                                     faults: Path) -> None:
    args = ("run", "--rm", "--storage=dir", "--net=bridge", "-p", "8086:80", busybox, "true")
    npn(*args)  # the layers are unpacked once, with no fault
    chain_ids = set(snapshots(npn.root, "dir"))
    faults.unlink()
    npn(*args)
    hooks = sorted({json.loads(line)[0] for line in faults.read_text().splitlines()})
    assert len(hooks) >= 8
    problems = {}
    for hook in hooks:
        proc = with_fault(npn, hook)(*args, check=False)
        said = proc.stderr.strip().splitlines()
        keys = {json.loads(line)[2] for line in faults.read_text().splitlines()}
        left = nothing_left(npn, netns, chain_ids, keys - {""})
        if proc.returncode == 0 or len(said) != 1 or "fault injected" not in said[0] or left:
            problems[hook] = (proc.returncode, said, left)
            for cid in npn("ps", "-aq", "--no-trunc", check=False).stdout.split():
                npn("rm", "-f", cid, check=False)
    assert not problems, "\n".join(f"{hook}: {found}" for hook, found in problems.items())
    assert npn(*args).returncode == 0


BROKEN_EVENTS = '''
from pinnace.plugin import Plugin, hookimpl

class Broken(Plugin):
    @hookimpl
    def pinnace_container_created(self, container):
        raise ValueError("no good")

    @hookimpl
    def pinnace_container_removed(self, container):
        raise KeyError("gone")
'''


def test_an_event_hook_that_raises_is_a_warning(pn: Pinnace, busybox: str,
                                                tmp_path: Path) -> None:
    site = tmp_path / "site"
    install_fake(site, "pinnace-broken-events", "broken_events", BROKEN_EVENTS,
                 {"pinnace.plugins": {"broken": "broken_events:Broken"}})
    pn.env["PYTHONPATH"] = str(site)
    proc = pn("run", "--rm", "--name", "ev", busybox, "echo", "still here")
    assert proc.stdout.strip() == "still here"
    warnings = proc.stderr.strip().splitlines()
    assert warnings == [
        "Warning: plugin plugins:broken failed in pinnace_container_created: ValueError: no good",
        "Warning: plugin plugins:broken failed in pinnace_container_removed: KeyError: 'gone'"]
    assert pn("ps", "-aq").stdout.strip() == ""


def test_a_broken_extension_breaks_nothing_and_can_be_disabled(pn: Pinnace, busybox: str,
                                                               tmp_path: Path) -> None:
    site = tmp_path / "site"
    install_fake(site, "pinnace-unloadable", "unloadable", "import no_such_module_at_all\n",
                 {"pinnace.plugins": {"unloadable": "unloadable:Ext"}})
    install_fake(site, "pinnace-typo", "typo_ext", '''
from pinnace.plugin import Plugin, hookimpl

class Typo(Plugin):
    @hookimpl
    def pinnace_container_startd(self, container):
        pass
''', {"pinnace.plugins": {"typo": "typo_ext:Typo"}})
    install_fake(site, "pinnace-grabby", "grabby_ext", '''
from pinnace.plugin import Plugin, hookimpl

class Grabby(Plugin):
    @hookimpl
    def pinnace_storage_remove(self, key):
        return None
''', {"pinnace.plugins": {"grabby": "grabby_ext:Grabby"}})
    pn.env["PYTHONPATH"] = str(site)
    proc = pn("run", "--rm", busybox, "echo", "ok")
    assert proc.stdout.strip() == "ok"
    warnings = proc.stderr.strip().splitlines()
    assert len(warnings) == 3 and all(w.startswith("Warning: plugins plugin") for w in warnings)
    assert any("'unloadable'" in w and "ModuleNotFoundError" in w for w in warnings)
    assert any("'typo'" in w and "pinnace_container_startd" in w for w in warnings)
    assert any("'grabby'" in w and "without wrapper=True" in w for w in warnings)
    rows = {r["name"]: r for r in json.loads(pn("plugins", "--format", "json").stdout)}
    assert rows["unloadable"]["status"].startswith("failed: ModuleNotFoundError")
    assert rows["typo"]["status"].startswith("invalid:")
    assert "pinnace_container_startd" in rows["typo"]["status"]
    assert "pinnace_storage_remove" in rows["grabby"]["status"]
    assert rows["dir"]["status"] == "ok"
    pn.env["PINNACE_DISABLED_PLUGINS"] = "unloadable,typo"
    [warning] = pn("run", "--rm", busybox, "true").stderr.strip().splitlines()
    assert "'grabby'" in warning and "PINNACE_DISABLED_PLUGINS=grabby" in warning
    del pn.env["PINNACE_DISABLED_PLUGINS"]
    cfg = tmp_path / "pinnace.toml"
    cfg.write_text('[engine]\ndisabled_plugins = ["unloadable", "typo", "plugins.grabby"]\n')
    pn.env["PINNACE_CONFIG"] = str(cfg)
    proc = pn("run", "--rm", busybox, "echo", "ok")
    assert proc.stdout.strip() == "ok" and proc.stderr == ""
    rows = {r["name"]: r for r in json.loads(pn("plugins", "--format", "json").stdout)}
    assert rows["grabby"]["status"].startswith("disabled")


def test_a_disabled_role_plugin_is_refused_by_name(pn: Pinnace, busybox: str) -> None:
    pn.env["PINNACE_DISABLED_PLUGINS"] = "storage.dir"
    proc = pn("run", "--rm", "--storage=dir", busybox, "true", check=False)
    assert proc.returncode == 125
    assert proc.stderr.strip() == "Error: storage plugin 'dir' is disabled by the configuration"


CLASHING_BRIDGE = '''
from pinnace_plugins.net_bridge import BridgeNetwork

class Clash(BridgeNetwork):
    """A second bridge driver that keeps bridge's default network name."""
'''


def test_each_driver_has_its_own_default_and_options(npn: Pinnace, busybox: str, netns: Path,
                                                     tmp_path: Path) -> None:
    from pinnace.testing.netns import run_in

    site = tmp_path / "site"
    install_fake(site, "pinnace-clash", "clash_bridge", CLASHING_BRIDGE,
                 {"pinnace.network": {"clash": "clash_bridge:Clash"}})
    npn.env["PYTHONPATH"] = str(site)
    npn("run", "--rm", "--net=bridge", busybox, "true")
    proc = npn("run", "--rm", "--net=clash", busybox, "true", check=False)
    assert proc.returncode == 125 and proc.stderr.strip() == (
        "Error: the default network of driver clash, pinnace0, belongs to driver bridge: "
        "one of them must use another name")
    assert npn("ps", "-aq").stdout.strip() == ""
    npn("network", "create", "-o", "bridge=pnt-custom", "custom")
    npn("run", "--rm", "--network", "custom", busybox, "true")
    assert "pnt-custom" in run_in(netns, "ip", "-o", "link", "show", "type", "bridge").stdout
    for bad, said in ((("-o", "colour=red"), "the bridge driver has no option 'colour'"),
                      (("-o", "novalue"), "invalid driver option 'novalue'")):
        proc = npn("network", "create", *bad, "bad", check=False)
        assert proc.returncode == 125 and said in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1
    assert "bad" not in npn("network", "ls", "-q").stdout.split()
