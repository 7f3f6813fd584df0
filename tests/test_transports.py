"""Transport dispatch: ``TRANSPORT:rest`` goes to the image source of that name, other
references to the default source; ``pull`` and ``run`` fetch through it."""

from __future__ import annotations

from pathlib import Path

from conftest import Pinnace

from pinnace.images.sources import split

SOURCES = ["debootstrap", "docker", "docker-archive", "oci", "oci-archive", "tar"]


def test_split_picks_installed_transports_only() -> None:
    assert split("debootstrap:bookworm", SOURCES, "docker") == ("debootstrap", "bookworm")
    assert split("docker://127.0.0.1:5000/x:1", SOURCES, "docker") == \
        ("docker", "127.0.0.1:5000/x:1")
    assert split("oci-archive:/tmp/a.tar:app:1", SOURCES, "docker") == \
        ("oci-archive", "/tmp/a.tar:app:1")
    # a registry host with a port is not a transport, nor an unknown prefix
    assert split("127.0.0.1:5000/x:1", SOURCES, "docker") == ("docker", "127.0.0.1:5000/x:1")
    assert split("localhost:5000/x", SOURCES, "docker") == ("docker", "localhost:5000/x")
    assert split("busybox:latest", SOURCES, "docker") == ("docker", "busybox:latest")


def test_pull_and_run_go_through_the_transport(pn: Pinnace, busybox_tar: Path) -> None:
    image_id = pn("pull", f"tar:{busybox_tar}").stdout.strip()
    assert image_id.startswith("sha256:")
    assert image_id[7:19] in pn("images", "-q").stdout
    # run fetches a missing image through its transport, as docker run pulls
    other = Pinnace(pn.root.parent / (pn.root.name + "-run"))
    try:
        out = other("run", "--rm", f"tar:{busybox_tar}", "/bin/echo", "fetched")
        assert out.stdout == "fetched\n"
    finally:
        import shutil
        shutil.rmtree(other.root, ignore_errors=True)


def test_unknown_transport_is_one_clear_line(pn: Pinnace) -> None:
    proc = pn("pull", "oci:/nonexistent/layout", check=False)
    assert proc.returncode == 125
    assert proc.stderr.count("\n") == 1 and "/nonexistent/layout" in proc.stderr
    proc = pn("run", "--rm", "no-such-local-image", "true", check=False)
    assert proc.returncode == 125 and "No such image" in proc.stderr
