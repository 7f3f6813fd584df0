"""The third-party image source (examples/pinnace-dirsource): installed with pip into a
directory on the test's PYTHONPATH, discovered as transport ``dir``, pulling and running
host directories through the real CLI, and run against the image source contract."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import Pinnace, assert_discovered, assert_passes_its_contract


@pytest.fixture
def dpn(pn: Pinnace, dirsource_site: Path) -> Pinnace:
    """pinnace with the dir source on its PYTHONPATH."""
    pn.env["PYTHONPATH"] = str(dirsource_site)
    return pn


def images(pn: Pinnace) -> list[dict]:
    return json.loads(pn("images", "--format", "json").stdout)


def test_dir_transport_is_discovered(pn: Pinnace, dirsource_site: Path) -> None:
    assert_discovered(pn, dirsource_site, "image_source", "dir", "pinnace-dirsource")


def test_run_a_host_directory(dpn: Pinnace, rootfs: Path) -> None:
    out = dpn("run", "--rm", f"dir:{rootfs}", "cat", "/greeting").stdout
    assert out == "hello from a host directory\n"
    listed = images(dpn)
    assert len(listed) == 1 and listed[0]["RepoTags"] == []
    image_id = listed[0]["Id"]
    assert image_id[7:19] in dpn("images").stdout
    # an unchanged directory is the same image: pulling it adds nothing
    assert dpn("pull", "-q", f"dir:{rootfs}").stdout.strip() == image_id
    assert [i["Id"] for i in images(dpn)] == [image_id]
    # a changed one is a new image
    (rootfs / "greeting").write_text("changed\n")
    assert dpn("run", "--rm", f"dir:{rootfs}", "cat", "/greeting").stdout == "changed\n"
    assert len(images(dpn)) == 2


def test_changes_file_sets_the_command(dpn: Pinnace, rootfs: Path, tmp_path: Path) -> None:
    changes = tmp_path / "changes"
    changes.write_text('# how the image runs\nCMD ["cat", "/greeting"]\nENV WHO=dir\n')
    assert dpn("run", "--rm", f"dir:{rootfs}@{changes}").stdout == \
        "hello from a host directory\n"
    assert dpn("run", "--rm", f"dir:{rootfs}@{changes}", "sh", "-c", "echo $WHO").stdout \
        == "dir\n"
    config = json.loads(dpn("image", "inspect", images(dpn)[0]["Id"]).stdout)[0]["Config"]
    assert config["Cmd"] == ["cat", "/greeting"]
    changes.write_text("RUN echo hi\n")
    proc = dpn("pull", f"dir:{rootfs}@{changes}", check=False)
    assert proc.returncode == 125 and "unsupported instruction" in proc.stderr


def test_missing_or_wrong_paths_are_one_line_errors(dpn: Pinnace, rootfs: Path,
                                                    tmp_path: Path) -> None:
    for reference, text in ((f"dir:{tmp_path / 'nothing'}", "does not exist"),
                            (f"dir:{rootfs / 'greeting'}", "is not a directory"),
                            (f"dir:{rootfs}@{tmp_path / 'nochanges'}", "does not exist")):
        proc = dpn("run", "--rm", reference, "true", check=False)
        assert proc.returncode == 125 and text in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1
    assert images(dpn) == []
    blobs = dpn.root / "images" / "blobs" / "sha256"
    assert not blobs.exists() or not list(blobs.iterdir())


def test_example_passes_the_image_source_contract(dirsource_site: Path,
                                                  tmp_path: Path) -> None:
    assert_passes_its_contract("pinnace-dirsource", dirsource_site, tmp_path)
