"""The archive and tar image sources through ``pinnace pull TRANSPORT:rest``."""

from __future__ import annotations

import json
import subprocess
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


def test_push_to_archive_transports(pn: Pinnace, busybox: str, tmp_path: Path) -> None:
    digest = json.loads(pn("images", "--format", "json").stdout)[0]["Digest"]
    out = pn("push", busybox, f"oci-archive:{tmp_path / 'p.tar'}:pushed/box:7").stdout
    assert out.strip().splitlines()[-1] == digest
    inspect = subprocess.run(
        ["skopeo", "inspect", f"oci-archive:{tmp_path / 'p.tar'}:pushed/box:7"],
        capture_output=True, text=True, check=True).stdout
    assert json.loads(inspect)["Digest"] == digest
    pn("push", busybox, f"docker-archive:{tmp_path / 'd.tar'}:pushed/box:8")
    other = Pinnace(pn.root.parent / (pn.root.name + "-other"))
    assert other("load", "-i", str(tmp_path / "d.tar")).stdout.strip() == \
        "Loaded image: pushed/box:8"
    proc = pn("push", busybox, f"oci:{tmp_path / 'layout'}", check=False)
    assert proc.returncode == 125 and "push to oci-archive:FILE instead" in proc.stderr
