"""Plugin discovery, selection, validation and hooks, with throwaway plugins installed
as real distributions (a dist-info with entry points on PYTHONPATH) for one test each."""

from __future__ import annotations

import json
import subprocess
import textwrap
from pathlib import Path

import pytest
from conftest import Pinnace

STORAGE_VERBS = ("prepare", "view", "mounts", "commit", "remove", "stat", "usage", "walk")


def install_fake(site: Path, dist: str, module: str, source: str,
                 entry_points: dict[str, dict[str, str]]) -> None:
    """Make ``site`` hold a module and a distribution declaring ``entry_points``."""
    site.mkdir(exist_ok=True)
    (site / f"{module}.py").write_text(textwrap.dedent(source))
    info = site / f"{dist.replace('-', '_')}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    lines = []
    for group, names in entry_points.items():
        lines.append(f"[{group}]")
        lines += [f"{name} = {target}" for name, target in names.items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")


@pytest.fixture
def site(tmp_path: Path, pn: Pinnace) -> Path:
    path = tmp_path / "site"
    path.mkdir()
    pn.env["PYTHONPATH"] = str(path)
    return path


def storage_source(verbs: tuple[str, ...], extra: str = "") -> str:
    methods = "\n".join(
        f"    @hookimpl\n    def pinnace_storage_{v}(self):\n        raise NotImplementedError\n"
        for v in verbs)
    return ("from pinnace.plugin import Plugin, hookimpl\n\n\nclass Store(Plugin):\n"
            + methods + extra)


def test_plugins_lists_builtins_with_distribution_and_version(pn: Pinnace) -> None:
    rows = json.loads(pn("plugins", "--format", "json").stdout)
    found = {(r["role"], r["name"]): r for r in rows}
    for key in [("storage", "btrfs"), ("storage", "dir"), ("isolation", "unshare"),
                ("network", "none"), ("network", "bridge")]:
        assert found[key]["distribution"] == "pinnace" and found[key]["status"] == "ok"
        assert found[key]["version"] == __import__("pinnace").__version__
    assert found[("storage", "btrfs")]["selected"] is True
    assert "loop_size" in found[("storage", "btrfs")]["options"]
    assert "btrfs *" in pn("plugins").stdout


def test_discovery_cache_survives_changes_in_the_current_directory(
        pn: Pinnace, tmp_path: Path) -> None:
    """``python -m pinnace`` puts the current directory first on sys.path; discovery
    leaves that entry out, so files appearing there do not rebuild its cache, while a
    plugin appearing on PYTHONPATH does."""
    pn.env["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    work = tmp_path / "work"
    work.mkdir()

    def plugins() -> list[str]:
        out = subprocess.run(pn.argv("plugins", "--format", "json"), cwd=work, env=pn.env,
                             text=True, capture_output=True, check=True).stdout
        return sorted(row["name"] for row in json.loads(out))

    first = plugins()
    [cache] = (tmp_path / "cache" / "pinnace").glob("entry-points-*.json")
    written = cache.stat().st_mtime_ns
    (work / "new-file").write_text("x")
    assert plugins() == first
    assert cache.stat().st_mtime_ns == written, "a change in the cwd rebuilt the cache"
    install_fake(tmp_path / "site", "pinnace-late", "late_store", storage_source(STORAGE_VERBS),
                 {"pinnace.storage": {"late": "late_store:Store"}})
    pn.env["PYTHONPATH"] = str(tmp_path / "site")
    assert "late" in plugins()
    assert cache.stat().st_mtime_ns != written


def test_missing_required_hook_names_the_plugin_and_hooks(pn: Pinnace, site: Path,
                                                          busybox: str) -> None:
    install_fake(site, "half-store", "half_store", storage_source(("prepare", "walk")),
                 {"pinnace.storage": {"half": "half_store:Store"}})
    proc = pn("run", "--storage=half", busybox, "true", check=False)
    assert proc.returncode == 125
    line = proc.stderr.strip()
    assert line.startswith("Error: storage plugin 'half' (half-store) does not implement")
    assert "pinnace_storage_view" in line and "pinnace_storage_prepare" not in line
    assert len(line.splitlines()) == 1


def test_plugin_that_fails_to_import(pn: Pinnace, site: Path, busybox: str) -> None:
    install_fake(site, "broken-store", "broken_store", "import no_such_module_here\n",
                 {"pinnace.storage": {"broken": "broken_store:Store"}})
    proc = pn("run", "--storage=broken", busybox, "true", check=False)
    assert proc.returncode == 125
    assert proc.stderr.strip() == (
        "Error: storage plugin 'broken' (broken-store 0.1) failed to load: "
        "ModuleNotFoundError: No module named 'no_such_module_here'")
    rows = json.loads(pn("plugins", "--format", "json").stdout)
    broken = next(r for r in rows if r["name"] == "broken")
    assert broken["status"].startswith("failed: ModuleNotFoundError")
    assert pn("ps", "-a", "-q").stdout.strip() == ""


def test_misspelt_hook_is_an_error(pn: Pinnace, site: Path, busybox: str) -> None:
    extra = ("    @hookimpl\n    def pinnace_storage_prepair(self, key):\n"
             "        return None\n")
    install_fake(site, "typo-store", "typo_store", storage_source(STORAGE_VERBS, extra),
                 {"pinnace.storage": {"typo": "typo_store:Store"}})
    proc = pn("run", "--storage=typo", busybox, "true", check=False)
    assert proc.returncode == 125
    assert "typo" in proc.stderr and "pinnace_storage_prepair" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_hook_with_an_unknown_argument_is_rejected(pn: Pinnace, site: Path, busybox: str) -> None:
    source = storage_source(STORAGE_VERBS).replace(
        "def pinnace_storage_view(self)", "def pinnace_storage_view(self, key, colour)")
    install_fake(site, "odd-store", "odd_store", source,
                 {"pinnace.storage": {"odd": "odd_store:Store"}})
    proc = pn("run", "--storage=odd", busybox, "true", check=False)
    assert proc.returncode == 125
    assert "pinnace_storage_view" in proc.stderr and "colour" in proc.stderr


def test_two_plugins_with_one_name(pn: Pinnace, site: Path, busybox: str) -> None:
    install_fake(site, "dup-store", "dup_store", storage_source(STORAGE_VERBS),
                 {"pinnace.storage": {"dir": "dup_store:Store"}})
    proc = pn("run", "--storage=dir", busybox, "true", check=False)
    assert proc.returncode == 125
    assert "two storage plugins are named 'dir'" in proc.stderr
    rows = json.loads(pn("plugins", "--format", "json").stdout)
    assert any(r["name"] == "dir" and r["status"].startswith("failed: several") for r in rows)


EVENTS_PLUGIN = '''
import json, os
import click
from pinnace.plugin import Plugin, hookimpl

LOG = os.environ["EVENTS_LOG"]

def log(*item):
    with open(LOG, "a") as f:
        f.write(json.dumps(item) + "\\n")

class Events(Plugin):
    @hookimpl
    def pinnace_container_created(self, container):
        log("created", container.name)
    @hookimpl
    def pinnace_container_started(self, container, pid):
        log("started", container.name, pid > 0)
    @hookimpl
    def pinnace_container_exited(self, container, exit_code):
        log("exited", container.name, exit_code)
    @hookimpl
    def pinnace_container_removed(self, container):
        log("removed", container.name)
    @hookimpl
    def pinnace_prepare_spec(self, spec):
        spec.process.env.append("INJECTED=by-plugin")
    @hookimpl
    def pinnace_add_commands(self, cli):
        @cli.command("hello")
        def hello():
            """Say hello from a plugin."""
            click.echo("hello from a plugin")
    @hookimpl
    def pinnace_info(self):
        return {"events": {"log": LOG}}
'''


def test_event_prepare_spec_command_and_info_hooks(pn: Pinnace, site: Path, busybox: str,
                                                   tmp_path: Path) -> None:
    log = tmp_path / "events.log"
    pn.env["EVENTS_LOG"] = str(log)
    install_fake(site, "events-plugin", "events_plugin", EVENTS_PLUGIN,
                 {"pinnace.plugins": {"events": "events_plugin:Events"}})
    out = pn("run", "--rm", "--name", "ev", busybox, "sh", "-c", "echo $INJECTED; exit 3",
             check=False)
    assert out.returncode == 3 and out.stdout.strip() == "by-plugin"
    events = [json.loads(line) for line in log.read_text().splitlines()]
    assert events == [["created", "ev"], ["started", "ev", True], ["exited", "ev", 3],
                      ["removed", "ev"]]
    assert pn("hello").stdout.strip() == "hello from a plugin"
    assert "hello" in pn("--help").stdout
    info = json.loads(pn("info", "--format", "json").stdout)
    assert info["plugins"]["events"] == {"log": str(log)}


def test_trace_prints_every_hook_call_with_its_duration(pn: Pinnace, busybox: str) -> None:
    proc = pn("--trace", "run", "--rm", "--storage=dir", busybox, "true")
    lines = [line for line in proc.stderr.splitlines() if line.startswith("trace: ")]
    hooks = [line.split()[1] for line in lines]
    for hook in ("pinnace_storage_prepare", "pinnace_network_add", "pinnace_isolation_create",
                 "pinnace_isolation_start", "pinnace_isolation_wait", "pinnace_storage_remove"):
        assert hook in hooks
    assert all(line.endswith(" ms") for line in lines)
    assert "[storage:dir]" in next(line for line in lines if "pinnace_storage_prepare" in line)


def test_selection_precedence_flag_env_config(pn: Pinnace, busybox: str, tmp_path: Path) -> None:
    cfg = tmp_path / "pinnace.toml"
    cfg.write_text('[engine]\nstorage = "nope-from-file"\n')
    pn.env["PINNACE_CONFIG"] = str(cfg)
    proc = pn("run", "--rm", busybox, "true", check=False)
    assert "unknown storage plugin 'nope-from-file'" in proc.stderr
    pn.env["PINNACE_STORAGE"] = "nope-from-env"
    proc = pn("run", "--rm", busybox, "true", check=False)
    assert "unknown storage plugin 'nope-from-env'" in proc.stderr
    pn("run", "--rm", "--storage=dir", busybox, "true")
    shown = {r["key"]: r for r in json.loads(pn("config", "show", "--format", "json").stdout)}
    assert shown["engine.storage"]["value"] == "nope-from-env"
    assert shown["engine.storage"]["source"] == "env PINNACE_STORAGE"
    assert shown["storage.btrfs.loop_size"]["source"] == "default"


def test_info_and_doctor(pn: Pinnace) -> None:
    info = json.loads(pn("info", "--format", "json").stdout)
    assert info["root"] == str(pn.root)
    assert info["selected"]["storage"] == {"name": "btrfs", "source": "default"}
    assert info["cgroup_version"] in ("v1", "v2")
    proc = pn("doctor", "--format", "json", check=False)
    checks = json.loads(proc.stdout)
    assert any(c["check"] == "running as root" and c["ok"] == "yes" for c in checks)
    moves = next(c for c in checks if c["check"] == "fast cgroup moves (favordynmods)")
    favoring = "favordynmods" in Path("/proc/self/mountinfo").read_text()
    assert moves["ok"] == ("yes" if favoring else "warn")
    assert all(c.get("fix") for c in checks if c["ok"] == "no")
    assert proc.returncode == (1 if any(c["ok"] == "no" for c in checks) else 0)
