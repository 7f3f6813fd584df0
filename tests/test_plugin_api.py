"""``pinnace.plugin``: the one module plugin authors import, re-exporting lazily, and
``PluginContext.for_plugin`` filling declared option defaults."""

from __future__ import annotations

import ast
import importlib
import inspect
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import pinnace.plugin
from pinnace.errors import InvalidConfig
from pinnace.plugin import Option, Plugin, PluginContext

ROOT = Path(__file__).resolve().parent.parent
REEXPORTED = {name: module for name, module in pinnace.plugin._EXPORTS.items()}
MODULES = dict(pinnace.plugin._MODULES)


def test_every_exported_name_is_the_defining_modules_object() -> None:
    """Each name in ``__all__`` resolves, to the very object its own module defines."""
    for name in pinnace.plugin.__all__:
        value = getattr(pinnace.plugin, name)
        if name in REEXPORTED:
            assert value is getattr(importlib.import_module(REEXPORTED[name]), name), name
    for name, module in MODULES.items():
        assert getattr(pinnace.plugin, name) is importlib.import_module(module), name
    assert MODULES["netns"] == "pinnace.netns"
    assert set(pinnace.plugin.__all__) <= set(dir(pinnace.plugin))


def test_authors_find_the_records_errors_and_helpers() -> None:
    """The names a storage, network, isolation and image-source plugin needs are exported."""
    needed = {"hookimpl", "Plugin", "Option", "PluginContext", "Mount", "SnapshotInfo", "Usage",
              "Kind", "Attachment", "Network", "NetworkResult", "IPConfig", "Interface",
              "Route", "PortMapping", "ContainerSpec", "Process", "ContainerState", "Status",
              "TransferOptions", "ImageStore", "PinnaceError", "NotFound", "AlreadyExists",
              "FailedPrecondition", "InvalidConfig", "Unavailable", "TryAgain", "TreeStorage",
              "tree_usage", "netns", "ContainerRecord", "MountPoint", "mount_all", "remove_tree",
              "CommandNotFound", "CommandNotExecutable", "Security", "Resources", "User",
              "cgroups", "limits", "Lockdown", "restrict_paths", "new_config", "parse_changes",
              "unmount_all", "linux", "spec_from_dict", "capabilities", "seccomp"}
    assert needed <= set(pinnace.plugin.__all__), needed - set(pinnace.plugin.__all__)


def test_isolation_and_image_source_helpers_are_the_documented_ones() -> None:
    """What CONTRIBUTING.md tells an isolation plugin and an image source to call is there:
    ``cgroups.create`` giving a ``Cgroup`` with its methods, ``limits.apply``, the
    hardening steps and the config builders."""
    from pinnace.plugin import Lockdown, cgroups, limits, new_config, parse_changes, restrict_paths

    assert [p.name for p in inspect.signature(cgroups.create).parameters.values()] == ["path"]
    assert inspect.signature(cgroups.create).return_annotation == "Cgroup"
    for method in ("add", "pids", "kill_all", "freeze", "remove", "exists"):
        assert callable(getattr(cgroups.Cgroup, method)), method
    assert list(inspect.signature(limits.apply).parameters) == ["cg", "res"]
    assert callable(Lockdown.apply) and callable(restrict_paths)
    config = json.loads(new_config(["sha256:" + "0" * 64], parse_changes(["CMD [\"sh\"]"]),
                                   "test", created=0))
    assert config["config"]["Cmd"] == ["sh"]
    assert config["rootfs"]["diff_ids"] == ["sha256:" + "0" * 64]


def test_unmount_all_undoes_mount_all(tmp_path: Path) -> None:
    """Every mount ``mount_all`` made, stacked ones included, is gone afterwards; a second
    call, with nothing mounted, is fine."""
    from pinnace.plugin import Mount, mount_all, unmount_all

    target = tmp_path / "rootfs"
    target.mkdir()
    mount_all([Mount("tmpfs", "tmpfs", ("size=1m",))], target)
    (target / "inner").mkdir()
    mount_all([Mount("tmpfs", "tmpfs", ("size=1m",))], target / "inner")
    assert os.path.ismount(target) and os.path.ismount(target / "inner")
    unmount_all(target)
    assert not os.path.ismount(target) and not (target / "inner").exists()
    unmount_all(target)


def test_examples_import_nothing_of_pinnace_but_the_plugin_api() -> None:
    """A third-party plugin needs no engine module: the examples import ``pinnace.plugin``
    and, in their tests, ``pinnace.testing`` only."""
    offenders = []
    sources = python_sources("examples")
    assert len(sources) > 8, sources
    for path in sources:
        for node in ast.walk(ast.parse(path.read_text())):
            modules = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            offenders += [f"{path.relative_to(ROOT)}: {m}" for m in modules
                          if m.split(".")[0] == "pinnace" and m != "pinnace.plugin"
                          and not m.startswith("pinnace.testing")]
    assert not offenders, "\n".join(offenders)


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'Nonesuch'"):
        pinnace.plugin.Nonesuch  # noqa: B018
    with pytest.raises(ImportError):
        exec("from pinnace.plugin import Nonesuch", {})


def test_importing_the_module_imports_no_reexported_module() -> None:
    """Re-exports are lazy: ``import pinnace.plugin`` loads none of their modules, and
    importing one name loads only its module."""
    probe = ("import sys, pinnace.plugin\n"
             "before = sorted(m for m in sys.modules if m.startswith('pinnace'))\n"
             "from pinnace.plugin import Attachment\n"
             "after = sorted(m for m in sys.modules if m.startswith('pinnace'))\n"
             "print(' '.join(before)); print(' '.join(after))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True).stdout.splitlines()
    before, after = out[0].split(), out[1].split()
    lazy = set(REEXPORTED.values()) | set(MODULES.values())
    assert not lazy & set(before), sorted(lazy & set(before))
    assert set(after) - set(before) == {"pinnace.network"}


def python_sources(*directories: str) -> list[Path]:
    """The Python files of the repository under ``directories`` (not build output)."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard",
                             *directories],
                            capture_output=True, text=True, check=True, cwd=ROOT).stdout
    return [ROOT / name for name in listed.split() if name.endswith(".py")]


class Sample(Plugin):
    options = (Option("size", 3, "a number"), Option("name", "x", "a text"),
               Option("flag", False, "a switch"), Option("hosts", ("a",), "a list"))


def test_for_plugin_fills_every_declared_default() -> None:
    """A context made without options answers ``opt`` for every declared option."""
    plugin = Sample(PluginContext.for_plugin(Sample, "sample", "network"))
    assert [plugin.opt(o.name) for o in Sample.options] == [3, "x", False, ("a",)]


def test_for_plugin_parses_given_values_like_the_config() -> None:
    ctx = PluginContext.for_plugin(Sample, "sample", "network",
                                   {"size": "7", "flag": "yes", "hosts": "b, c"},
                                   data_dir=Path("/d"), run_dir=Path("/r"))
    assert ctx.options == {"size": 7, "name": "x", "flag": True, "hosts": ("b", "c")}
    assert (ctx.name, ctx.role, ctx.data_dir, ctx.run_dir) == ("sample", "network",
                                                               Path("/d"), Path("/r"))


def test_for_plugin_refuses_undeclared_and_bad_options() -> None:
    with pytest.raises(InvalidConfig, match="unknown option 'colour'"):
        PluginContext.for_plugin(Sample, "sample", "network", {"colour": "red"})
    with pytest.raises(InvalidConfig, match="option size: 'big' is not a valid int"):
        PluginContext.for_plugin(Sample, "sample", "network", {"size": "big"})


def test_plugins_and_examples_import_plugin_facing_names_from_pinnace_plugin() -> None:
    """No built-in plugin, example or contract suite imports a re-exported name from its
    defining module, nor a re-exported module (``cgroups``, ``limits``, ``netns``) by its
    own name (nor the tree storage base from a plugin package)."""
    offenders = []
    sources = python_sources("plugins", "examples", "core/testing")
    assert len(sources) > 20, sources
    for path in sources:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                offenders += [f"{path.relative_to(ROOT)}: import {alias.name}"
                              for alias in node.names if alias.name in MODULES.values()]
            if not isinstance(node, ast.ImportFrom) or not node.module:
                continue
            names = {alias.name for alias in node.names}
            modules = {f"{node.module}.{n}" for n in names} & set(MODULES.values())
            if modules:
                offenders.append(f"{path.relative_to(ROOT)}: from {node.module} import "
                                 f"{sorted(m.rpartition('.')[2] for m in modules)}")
            wrong = {n for n in names if REEXPORTED.get(n) == node.module}
            if wrong or node.module.startswith("pinnace_plugins.storage_dir.base"):
                offenders.append(f"{path.relative_to(ROOT)}: from {node.module} import {wrong}")
    assert not offenders, "\n".join(offenders)
