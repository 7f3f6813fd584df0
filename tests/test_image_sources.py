"""The archive and tar image sources through ``pinnace pull TRANSPORT:rest``."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import Pinnace


def fetch(root: Path, transport: str, reference: str) -> str:
    """``pinnace pull -q TRANSPORT:reference``: the image ID."""
    return Pinnace(root)("pull", "-q", f"{transport}:{reference}").stdout.strip()


def refused(root: Path, transport: str, reference: str, text: str) -> None:
    proc = Pinnace(root)("pull", "-q", f"{transport}:{reference}", check=False)
    assert proc.returncode == 125 and text in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_tar_transport_imports_a_rootfs(pn: Pinnace, busybox_tar: Path) -> None:
    image_id = fetch(pn.root, "tar", str(busybox_tar))
    assert pn("run", "--rm", image_id[7:19], "/bin/echo", "from tar").stdout == "from tar\n"
    history = json.loads(pn("history", "--format", "json", image_id[7:19]).stdout)
    assert history[0]["Comment"] == f"from tar:{busybox_tar}"
    refused(pn.root, "tar", str(busybox_tar) + ".missing", "does not exist")


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
    refused(other, "docker-archive", f"{tmp_path / 'd.tar'}:third:3", "no image tagged third:3")
    refused(other, "docker-archive", str(tmp_path / "o.tar"), "not a docker archive")
    refused(other, "oci", str(tmp_path / "o.tar"), "not an OCI layout directory")
