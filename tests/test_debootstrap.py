"""The debootstrap image source: the host's apt sources, the recipe, suites that do not
exist, and one real minbase build per test session (shared by the xdist workers), whose
image runs apt and is kept: pulled again after ``rmi``, it comes back without a build."""

from __future__ import annotations

import fcntl
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Pinnace

from pinnace.errors import FailedPrecondition, InvalidConfig, NotFound
from pinnace.images.store import ImageStore
from pinnace.plugin import PluginContext
from pinnace.state import State
from pinnace.testing.image_source import leftovers
from pinnace_plugins.source_debootstrap import DebootstrapSource, debootstrap_argv, tag_for
from pinnace_plugins.source_debootstrap.sources import apt_sources, debian_mirror


def plugin(**options: str) -> DebootstrapSource:
    return DebootstrapSource(PluginContext.for_plugin(DebootstrapSource, "debootstrap",
                                                      "image_source", options))


# ------------------------------------------------------------------ apt sources

def test_one_line_and_deb822_sources(tmp_path: Path) -> None:
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list").write_text(
        "# a comment\n"
        "deb-src http://src.example/debian bookworm main\n"
        "deb [arch=amd64 signed-by=/usr/share/keyrings/k.gpg] http://one.example/debian "
        "bookworm-updates main contrib\n")
    (tmp_path / "sources.list.d" / "a.sources").write_text(
        "Types: deb\nURIs: http://off.example/debian\nSuites: bookworm\nComponents: main\n"
        "Enabled: no\n\n"
        "Types: deb deb-src\nURIs: http://two.example/debian\nSuites: bookworm\n"
        "  bookworm-backports\nComponents: main\nSigned-By: /k2.gpg\n")
    (tmp_path / "sources.list.d" / "b.list.disabled").write_text(
        "deb http://never.example/debian trixie main\n")
    found = apt_sources(tmp_path)
    assert [(s.uri, s.suites, s.keyring) for s in found] == [
        ("http://one.example/debian", ("bookworm-updates",), "/usr/share/keyrings/k.gpg"),
        ("http://two.example/debian", ("bookworm", "bookworm-backports"), "/k2.gpg"),
    ]
    assert debian_mirror("bookworm", tmp_path).uri == "http://two.example/debian"
    assert debian_mirror("trixie", tmp_path).uri == "http://two.example/debian"


def test_no_mirror_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "sources.list").write_text("deb http://x.example/debian bookworm contrib\n")
    with pytest.raises(FailedPrecondition, match="no Debian mirror with component main"):
        debian_mirror("bookworm", tmp_path)


def test_the_host_mirror_comes_from_its_apt_configuration() -> None:
    recipe = plugin().recipe("bookworm")
    configured = "".join(p.read_text() for p in [Path("/etc/apt/sources.list"),
                                                 *Path("/etc/apt/sources.list.d").glob("*")]
                         if p.is_file())
    assert recipe["mirror"] and recipe["mirror"] in configured
    assert recipe["variant"] == "minbase" and recipe["include"] == []


def test_recipe_options_tags_and_command_line() -> None:
    recipe = plugin().recipe("bookworm?variant=buildd&include=curl,ca-certificates,curl")
    assert recipe["include"] == ["ca-certificates", "curl"] and recipe["variant"] == "buildd"
    assert tag_for(recipe).startswith("debootstrap:bookworm-buildd-")
    assert tag_for(plugin().recipe("bookworm")) == "debootstrap:bookworm"
    argv = debootstrap_argv(recipe)
    assert argv[:3] == ["debootstrap", "--variant=buildd", "--include=ca-certificates,curl"]
    assert plugin(include="vim").recipe("trixie")["include"] == ["vim"]
    for bad, text in (("Bookworm", "invalid suite"), ("bookworm?color=red", "unknown option"),
                      ("bookworm?variant=tiny", "unknown variant"),
                      ("bookworm?include=rm -rf", "invalid package name")):
        with pytest.raises(InvalidConfig, match=text):
            plugin().recipe(bad)


# ------------------------------------------------------------------ a real build

def _shared_dir(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> Path:
    """A directory all xdist workers of this session share (the session's base temp dir)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if worker_id != "master" else base


@pytest.fixture(scope="session")
def debootstrap_image(tmp_path_factory: pytest.TempPathFactory,
                      worker_id: str) -> Iterator[dict[str, str]]:
    """``pull debootstrap:bookworm`` once per session, pulled again, then removed and pulled
    once more, saved to a docker-archive the tests load: the first worker builds it under a
    lock, the others wait and reuse it."""
    shared = _shared_dir(tmp_path_factory, worker_id) / "debootstrap"
    shared.mkdir(exist_ok=True)
    with open(shared / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        done = shared / "result.json"
        if not done.exists():
            pn = Pinnace(shared / "root")
            first = pull(pn, "debootstrap:bookworm")
            again = pull(pn, "debootstrap:bookworm")  # cached: no second build
            pn("rmi", "debootstrap:bookworm")
            kept = pull(pn, "debootstrap:bookworm")  # the kept build, stored again
            pn("save", "-o", str(shared / "image.tar"), "debootstrap:bookworm")
            done.write_text(json.dumps({"first": first, "again": again, "kept": kept,
                                        "root": str(pn.root),
                                        "archive": str(shared / "image.tar")}))
    yield json.loads(done.read_text())


def pull(pn: Pinnace, ref: str) -> str:
    """``pinnace pull REF``, then the ID of the image tagged ``REF``."""
    pn("pull", ref, timeout=1200)
    return json.loads(pn("image", "inspect", ref).stdout)[0]["Id"]


def test_debootstrap_builds_once_and_the_image_runs_apt(debootstrap_image: dict[str, str],
                                                        pn: Pinnace) -> None:
    # a rebuild would give another ID: the config records when it was made
    assert debootstrap_image["first"] == debootstrap_image["again"] == debootstrap_image["kept"]
    built = Pinnace(Path(debootstrap_image["root"]))
    data = built.root / "image_source" / "debootstrap"
    assert not list(data.glob("build-*"))
    assert len(list((data / "built").iterdir())) == 1
    pn("load", "-i", debootstrap_image["archive"])
    out = pn("run", "--rm", "debootstrap:bookworm", "apt", "--version")
    assert out.stdout.startswith("apt 2.")
    os_release = pn("run", "--rm", "debootstrap:bookworm", "cat", "/etc/os-release").stdout
    assert 'VERSION_CODENAME=bookworm' in os_release


def test_debootstrap_history_records_how_it_was_made(debootstrap_image: dict[str, str]) -> None:
    built = Pinnace(Path(debootstrap_image["root"]))
    rows = json.loads(built("history", "--format", "json", "debootstrap:bookworm").stdout)
    assert len(rows) == 1
    assert rows[0]["CreatedBy"].startswith("debootstrap --variant=minbase")
    assert " bookworm http" in rows[0]["CreatedBy"]
    config = json.loads(built("image", "inspect", "debootstrap:bookworm").stdout)[0]["Config"]
    recipe = json.loads(config["Labels"]["org.pinnace.debootstrap.recipe"])
    assert recipe["suite"] == "bookworm" and recipe["variant"] == "minbase"
    assert config["Cmd"] == ["bash"]


def test_a_failing_debootstrap_leaves_nothing(pn: Pinnace) -> None:
    # a mirror nothing listens on (loopback): debootstrap cannot get the Release file
    proc = pn("pull", "debootstrap:bookworm?mirror=http://127.0.0.1:9/debian", check=False,
              timeout=600)
    assert proc.returncode == 125 and "debootstrap failed" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert json.loads(pn("images", "--format", "json").stdout) == []
    data = pn.root / "image_source" / "debootstrap"
    assert not data.exists() or not os.listdir(data)


@pytest.mark.parametrize(("suite", "message"), [
    ("nosuchsuite", "no such suite 'nosuchsuite' (debootstrap has no script for it)"),
    ("etch", "no suite 'etch' on http"),  # a script, but long gone from the mirror
])
def test_a_suite_that_does_not_exist_is_not_found(suite: str, message: str,
                                                  tmp_path: Path) -> None:
    source = DebootstrapSource(PluginContext.for_plugin(
        DebootstrapSource, "debootstrap", "image_source", data_dir=tmp_path / "data"))
    state = State(tmp_path / "state.db")
    try:
        store = ImageStore(tmp_path / "images", state)
        with pytest.raises(NotFound, match=re.escape(message)) as err:
            source.pinnace_image_source_fetch(reference=suite, store=store)
        assert "\n" not in str(err.value)
        assert leftovers(store) == []
    finally:
        state.close()
    assert os.listdir(tmp_path / "data") == []
