"""The archive and tar image sources, called through their hook as the transport
dispatch calls them (``TRANSPORT:rest`` -> that plugin's ``pinnace_image_source_fetch``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import Pinnace
from pinnace import config
from pinnace.engine import Engine
from pinnace.errors import InvalidConfig, NotFound


def fetch(root: Path, transport: str, reference: str) -> str:
    """The image ID the ``transport`` plugin returns for ``reference``."""
    engine = Engine(config.load(None, {"root": str(root), "run_root": None}))
    try:
        return engine.plugins.call("image_source", transport, "fetch", reference=reference,
                                   store=engine.images)
    finally:
        engine.state.close()


def test_tar_transport_imports_a_rootfs(pn: Pinnace, busybox_tar: Path) -> None:
    image_id = fetch(pn.root, "tar", str(busybox_tar))
    assert pn("run", "--rm", image_id[7:19], "/bin/echo", "from tar").stdout == "from tar\n"
    history = json.loads(pn("history", "--format", "json", image_id[7:19]).stdout)
    assert history[0]["Comment"] == f"from tar:{busybox_tar}"
    with pytest.raises(NotFound, match="does not exist"):
        fetch(pn.root, "tar", str(busybox_tar) + ".missing")


def test_archive_transports_pick_an_image(pn: Pinnace, busybox: str, root: Path,
                                          tmp_path: Path) -> None:
    pn("tag", busybox, "second:2")
    pn("save", "-o", str(tmp_path / "d.tar"), busybox, "second:2")
    pn("save", "--format", "oci-archive", "-o", str(tmp_path / "o.tar"), busybox)
    want = json.loads(pn("image", "inspect", busybox).stdout)[0]["Id"]
    other = root / "other"
    assert fetch(other, "docker-archive", f"{tmp_path / 'd.tar'}:second:2") == want
    assert Pinnace(other)("images", "--format", "json").stdout.count("second:2") == 1
    assert "busybox:latest" not in Pinnace(other)("images").stdout  # only the one asked for
    assert fetch(other, "docker-archive", f"{tmp_path / 'd.tar'}:@0") == want
    assert fetch(other, "oci-archive", f"{tmp_path / 'o.tar'}:busybox:latest") == want
    with pytest.raises(NotFound, match="no image tagged third:3"):
        fetch(other, "docker-archive", f"{tmp_path / 'd.tar'}:third:3")
    with pytest.raises(InvalidConfig, match="not a docker archive"):
        fetch(other, "docker-archive", str(tmp_path / "o.tar"))
    with pytest.raises(InvalidConfig, match="not an OCI layout directory"):
        fetch(other, "oci", str(tmp_path / "o.tar"))
