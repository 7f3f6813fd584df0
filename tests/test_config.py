"""Config precedence: flag > environment > file > default, with the source of each value."""

from __future__ import annotations

from pathlib import Path

import pytest

from pinnace import config
from pinnace.errors import InvalidConfig
from pinnace.plugin import Option


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("PINNACE_CONFIG", "PINNACE_ROOT", "PINNACE_STORAGE", "PINNACE_NETWORK",
                "PINNACE_STORAGE_BTRFS_LOOP_SIZE"):
        monkeypatch.delenv(key, raising=False)


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "pinnace.toml"
    path.write_text(text)
    return str(path)


def test_precedence_flag_env_file_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = write(tmp_path, '[engine]\nstorage = "dir"\nnetwork = "bridge"\nroot = "/srv/p"\n')
    monkeypatch.setenv("PINNACE_NETWORK", "none")
    cfg = config.load(f, {"root": "/flag/root"})
    assert cfg.selected("storage").value == "dir" and cfg.selected("storage").source == f
    assert cfg.selected("network").value == "none"
    assert cfg.selected("network").source == "env PINNACE_NETWORK"
    assert cfg.selected("isolation").value == "unshare"
    assert cfg.selected("isolation").source == "default"
    assert cfg.root == Path("/flag/root") and cfg.engine["root"].source == "flag"
    assert cfg.run_root == Path("/flag/root/run")


def test_default_root_uses_run_pinnace() -> None:
    cfg = config.load(None, {})
    assert cfg.root == Path("/var/lib/pinnace") and cfg.run_root == Path("/run/pinnace")


def test_config_env_var_names_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PINNACE_CONFIG", write(tmp_path, '[engine]\nstorage = "dir"\n'))
    assert config.load(None).selected("storage").value == "dir"


def test_plugin_options_from_file_and_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = write(tmp_path, '[storage.btrfs]\nloop_size = "8G"\n')
    declared = (Option("loop_size", "", "size"), Option("sync", False, "sync"))
    opts = config.load(f).plugin_options("storage", "btrfs", declared)
    assert opts["loop_size"].value == "8G" and opts["loop_size"].source == f
    assert opts["sync"].value is False and opts["sync"].source == "default"
    monkeypatch.setenv("PINNACE_STORAGE_BTRFS_LOOP_SIZE", "2G")
    opts = config.load(f).plugin_options("storage", "btrfs", declared)
    assert opts["loop_size"].value == "2G"


@pytest.mark.parametrize("text, message", [
    ('[engine]\nstorgae = "dir"\n', "unknown key 'storgae'"),
    ('[storage.btrfs]\nloop_sise = "1G"\n', "unknown option 'loop_sise'"),
    ("[engine\n", "not valid TOML"),
    ('[nonsense]\nx = 1\n', "unknown table [nonsense]"),
])
def test_bad_config_is_one_clear_error(tmp_path: Path, text: str, message: str) -> None:
    f = write(tmp_path, text)
    with pytest.raises(InvalidConfig, match=message.replace("[", r"\[").replace("]", r"\]")):
        config.load(f).plugin_options("storage", "btrfs", (Option("loop_size", "", "x"),))


def test_missing_explicit_config_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidConfig, match="does not exist"):
        config.load(str(tmp_path / "nope.toml"))


def test_option_types_are_parsed() -> None:
    assert Option("n", 1, "").parse("42") == 42
    assert Option("b", False, "").parse("yes") is True
    with pytest.raises(InvalidConfig, match="not a valid int"):
        Option("n", 1, "").parse("many")
