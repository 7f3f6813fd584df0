"""Cheap commands stay cheap, and the CLI's own surface: version, help, completion, usage errors."""

from __future__ import annotations

import subprocess
import sys

from conftest import Pinnace


def imported_modules(*args: str) -> set[str]:
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "pinnace", *args],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return {line.split("|")[-1].strip() for line in proc.stderr.splitlines()
            if line.startswith("import time:")}


def test_version_imports_neither_click_nor_plugins() -> None:
    mods = imported_modules("--version")
    assert "click" not in mods and "pluggy" not in mods


def test_ps_loads_no_plugin_machinery(pn: Pinnace, busybox: str) -> None:
    pn("run", "--name", "x", busybox, "true")
    mods = imported_modules("--root", str(pn.root), "ps", "-a")
    assert "sqlite3" in mods
    assert not {m for m in mods if m.startswith(("pluggy", "stevedore", "pinnace_plugins",
                                                   "importlib.metadata", "pyroute2"))}


def test_version_help_and_completion(pn: Pinnace) -> None:
    assert pn("--version").stdout.strip() == f"pinnace version {__import__('pinnace').__version__}"
    assert "run" in pn("--help").stdout and "--storage" in pn("run", "--help").stdout
    script = pn("completion", "bash").stdout
    assert "_PINNACE_COMPLETE" in script and "complete " in script


def test_usage_errors_exit_125_with_one_message(pn: Pinnace) -> None:
    proc = pn("run", check=False)
    assert proc.returncode == 125 and "Missing argument 'IMAGE'" in proc.stderr
    proc = pn("nosuchcommand", check=False)
    assert proc.returncode == 125 and "No such command" in proc.stderr
    proc = pn("rm", "ghost", check=False)
    assert proc.returncode == 125 and proc.stderr.strip() == "Error: No such container: ghost"


def test_debug_adds_the_traceback(pn: Pinnace) -> None:
    quiet = pn("run", "nosuchimage", "true", check=False)
    assert "Traceback" not in quiet.stderr
    loud = pn("--debug", "run", "nosuchimage", "true", check=False)
    assert loud.returncode == 125
    assert "Traceback" in loud.stderr and loud.stderr.strip().endswith(
        "Error: No such image: nosuchimage")
