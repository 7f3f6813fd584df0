"""Image archives with the real peers: podman save/load/run and skopeo, in both directions,
and hostile or broken archives, each refused in one line with nothing left in the store."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import subprocess
import tarfile
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import PODMAN_RUN, Pinnace, host_leftovers

from pinnace.testing.registry import Layout, busybox_layers, docker_registry, skopeo_copy


def blobs(pn: Pinnace) -> list[str]:
    """Every file in the pinnace store's blob directory (temp files too)."""
    path = pn.root / "images" / "blobs" / "sha256"
    return sorted(os.listdir(path)) if path.exists() else []


def image_id(pn: Pinnace, ref: str) -> str:
    return json.loads(pn("image", "inspect", ref).stdout)[0]["Id"]


# ------------------------------------------------------------------ building archives

def tar_bytes(members: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def entry(name: str, data: bytes = b"", kind: bytes = tarfile.REGTYPE, link: str = "",
          mode: int = 0o644) -> tuple[tarfile.TarInfo, bytes | None]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode, info.mtime = kind, link, mode, 1_600_000_000
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    return info, data if kind == tarfile.REGTYPE else None


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def docker_archive(path: Path, layers: list[bytes], tags: list[str],
                   edit: Callable[[list[dict]], None] | None = None,
                   diff_ids: list[str] | None = None) -> Path:
    """A docker-archive with the given layer tars (stored as given: plain or gzip)."""
    ids = diff_ids or [sha(gzip.decompress(layer) if layer[:2] == b"\x1f\x8b" else layer)
                       for layer in layers]
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "config": {"Cmd": ["sh"]},
                         "rootfs": {"type": "layers", "diff_ids": ids}}).encode()
    files: list[tuple[tarfile.TarInfo, bytes | None]] = [entry("config.json", config)]
    names = []
    for n, layer in enumerate(layers):
        names.append(f"l{n}/layer.tar")
        files.append(entry(names[-1], layer))
    manifest = [{"Config": "config.json", "RepoTags": tags, "Layers": names}]
    if edit:
        edit(manifest)
    files.append(entry("manifest.json", json.dumps(manifest).encode()))
    path.write_bytes(tar_bytes(files))
    return path


# ------------------------------------------------------------------ round trips

def test_podman_save_then_pinnace_load_and_run(pn: Pinnace, podman, busybox_tar: Path,
                                               tmp_path: Path) -> None:
    podman("import", "--change", 'CMD ["sh"]', str(busybox_tar), "localhost/rt:1")
    podman("save", "-o", str(tmp_path / "p.tar"), "localhost/rt:1")
    out = pn("load", "-i", str(tmp_path / "p.tar")).stdout
    assert out.strip() == "Loaded image: localhost/rt:1"
    want = podman("images", "--no-trunc", "--format", "{{.ID}}", "localhost/rt:1").stdout
    assert image_id(pn, "localhost/rt:1").removeprefix("sha256:") == \
        want.strip().removeprefix("sha256:")
    run = pn("run", "--rm", "localhost/rt:1", "sh", "-c", "echo from podman; head -1 /etc/passwd")
    assert run.stdout.splitlines() == ["from podman", "root:x:0:0:root:/root:/bin/sh"]


def test_pinnace_save_then_podman_load_and_run(pn: Pinnace, busybox: str, podman,
                                               tmp_path: Path) -> None:
    pn("save", "-o", str(tmp_path / "b.tar"), busybox)
    assert "Loaded image" in podman("load", "-i", str(tmp_path / "b.tar")).stdout
    listed = podman("images", "--no-trunc", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}")
    name, pid = listed.stdout.split()
    assert name.endswith("busybox:latest")
    assert pid.removeprefix("sha256:") == image_id(pn, busybox).removeprefix("sha256:")
    assert podman(*PODMAN_RUN, name, "sh", "-c", "echo hi from $(busybox | head -1 | "
                  "cut -c1-7)").stdout == "hi from BusyBox\n"


def test_pulled_image_saves_plain_for_docker_archive_and_as_pulled_for_oci(
        pn: Pinnace, podman, busybox_tar: Path, tmp_path: Path) -> None:
    lay = Layout(tmp_path / "layout")
    lay.tag(lay.image(busybox_layers(busybox_tar)), "multi")  # gzip layers
    with docker_registry(tmp_path / "registry") as reg:
        ref = f"{reg.host}/lib/multi:1"
        skopeo_copy(f"oci:{lay.path}:multi", f"docker://{ref}")
        pn("pull", ref)
    diff_ids = json.loads(pn("image", "inspect", ref).stdout)[0]["RootFS"]["Layers"]
    # docker-archive: each layer a plain tar (decompressed on the way), as docker writes it
    pn("save", "-o", str(tmp_path / "d.tar"), ref)
    with tarfile.open(tmp_path / "d.tar") as tar:
        names = json.load(tar.extractfile("manifest.json"))[0]["Layers"]
        assert [sha(tar.extractfile(name).read()) for name in names] == diff_ids
    podman("load", "-i", str(tmp_path / "d.tar"))
    assert podman(*PODMAN_RUN, ref, "cat", "/etc/motd2").stdout == "layer 3\n"
    podman("rmi", "-a", "-f")
    # OCI archive: the gzip blobs as pulled
    pn("save", "--format", "oci-archive", "-o", str(tmp_path / "o.tar"), ref)
    raw = json.loads(subprocess.run(["skopeo", "inspect", "--raw",
                                     f"oci-archive:{tmp_path / 'o.tar'}"],
                                    check=True, capture_output=True).stdout)
    assert [d["mediaType"][-5:] for d in raw["layers"]] == ["+gzip"] * 3
    with tarfile.open(tmp_path / "o.tar") as tar:
        for d in raw["layers"]:
            assert tar.extractfile(f"blobs/sha256/{d['digest'][7:]}").read()[:2] == b"\x1f\x8b"
    podman("load", "-i", str(tmp_path / "o.tar"))
    name = podman("images", "--format", "{{.Repository}}:{{.Tag}}").stdout.strip()
    assert podman(*PODMAN_RUN, name, "cat", "/etc/motd").stdout == "hello from layer 2\n"


def test_save_to_stdout_and_load_from_stdin(pn: Pinnace, busybox: str, root: Path,
                                            tmp_path: Path) -> None:
    with open(tmp_path / "s.tar", "wb") as f:
        proc = subprocess.run(pn.argv("save", busybox), stdout=f, stderr=subprocess.PIPE)
    assert proc.returncode == 0, proc.stderr
    other = Pinnace(root / "second")
    with open(tmp_path / "s.tar", "rb") as f:
        proc = subprocess.run(other.argv("load"), stdin=f, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "Loaded image: busybox:latest"
    assert image_id(other, busybox) == image_id(pn, busybox)


def test_oci_archive_save_is_read_by_skopeo_and_podman(pn: Pinnace, busybox: str, podman,
                                                       tmp_path: Path) -> None:
    archive = tmp_path / "b.oci.tar"
    pn("save", "--format", "oci-archive", "-o", str(archive), busybox)
    inspect = json.loads(subprocess.run(
        ["skopeo", "inspect", f"oci-archive:{archive}:busybox:latest"],
        capture_output=True, text=True, check=True).stdout)
    manifest_digest = json.loads(pn("images", "--format", "json").stdout)[0]["Digest"]
    assert inspect["Digest"] == manifest_digest
    podman("load", "-i", str(archive))
    name = podman("images", "--format", "{{.Repository}}:{{.Tag}}").stdout.strip()
    assert podman(*PODMAN_RUN, name, "echo", "oci ok").stdout == "oci ok\n"


def test_skopeo_gzip_oci_archive_and_layout_load_and_run(pn: Pinnace, busybox: str,
                                                         root: Path, tmp_path: Path) -> None:
    pn("save", "--format", "oci-archive", "-o", str(tmp_path / "b.tar"), busybox)
    src = f"oci-archive:{tmp_path / 'b.tar'}:busybox:latest"
    subprocess.run(["skopeo", "copy", "-q", "--dest-compress", "--dest-compress-format",
                    "gzip", src, f"oci-archive:{tmp_path / 'gz.tar'}:sk/box:2"], check=True)
    subprocess.run(["skopeo", "copy", "-q", src, f"oci:{tmp_path / 'layout'}:sk/box:3"],
                   check=True)
    index = json.loads(tarfile.open(tmp_path / "gz.tar").extractfile("index.json").read())
    manifest_name = "blobs/sha256/" + index["manifests"][0]["digest"][7:]
    manifest = json.loads(tarfile.open(tmp_path / "gz.tar").extractfile(manifest_name).read())
    assert manifest["layers"][0]["mediaType"].endswith("+gzip")  # really compressed
    other = Pinnace(root / "second")
    assert other("load", "-i", str(tmp_path / "gz.tar")).stdout.strip() == \
        "Loaded image: sk/box:2"
    assert other("load", "-i", str(tmp_path / "layout")).stdout.strip() == \
        "Loaded image: sk/box:3"
    assert image_id(other, "sk/box:2") == image_id(pn, busybox) == image_id(other, "sk/box:3")
    assert other("run", "--rm", "sk/box:2", "echo", "skopeo ok").stdout == "skopeo ok\n"


def test_committed_whiteout_survives_save_podman_load_and_run(pn: Pinnace, busybox: str,
                                                              podman, tmp_path: Path) -> None:
    pn("run", "--name", "w", busybox, "sh", "-c", "rm /etc/group; echo v2 > /etc/version")
    pn("commit", "w", "layered:2")
    pn("save", "-o", str(tmp_path / "l.tar"), "layered:2")
    podman("load", "-i", str(tmp_path / "l.tar"))
    name = podman("images", "--format", "{{.Repository}}:{{.Tag}}").stdout.strip()
    out = podman(*PODMAN_RUN, name, "sh", "-c",
                 "cat /etc/version; test -e /etc/group && echo group-still-there || echo gone")
    assert out.stdout == "v2\ngone\n"


def test_multi_image_archive_and_transport_selection(pn: Pinnace, busybox: str, root: Path,
                                                     tmp_path: Path) -> None:
    pn("tag", busybox, "other:1")
    pn("save", "-o", str(tmp_path / "m.tar"), busybox, "other:1")
    other = Pinnace(root / "second")
    out = other("load", "-i", str(tmp_path / "m.tar")).stdout.splitlines()
    assert out == ["Loaded image: busybox:latest", "Loaded image: other:1"]
    manifest = json.loads(tarfile.open(tmp_path / "m.tar").extractfile("manifest.json").read())
    assert len(manifest) == 2 and manifest[0]["Layers"] == manifest[1]["Layers"]


def test_docker_25_archive_oci_layout_with_manifest_json(pn: Pinnace, busybox: str, root: Path,
                                                         tmp_path: Path) -> None:
    """docker 25+ writes an OCI layout plus a manifest.json naming blobs/sha256/ paths."""
    pn("save", "--format", "oci-archive", "-o", str(tmp_path / "o.tar"), busybox)
    inspect = json.loads(pn("image", "inspect", busybox).stdout)[0]
    members = []
    with tarfile.open(tmp_path / "o.tar") as tar:
        for member in tar.getmembers():
            data = tar.extractfile(member).read() if member.isfile() else None
            members.append((member, data))
    manifest = [{"Config": f"blobs/sha256/{inspect['Id'][7:]}", "RepoTags": ["d25:1"],
                 "Layers": [f"blobs/sha256/{d[7:]}" for d in inspect["RootFS"]["Layers"]]}]
    members.append(entry("manifest.json", json.dumps(manifest).encode()))
    (tmp_path / "d25.tar").write_bytes(tar_bytes(members))
    other = Pinnace(root / "second")
    assert other("load", "-i", str(tmp_path / "d25.tar")).stdout.strip() == "Loaded image: d25:1"
    assert image_id(other, "d25:1") == inspect["Id"]


def test_rmi_and_prune_refuse_what_a_container_uses(pn: Pinnace, busybox: str) -> None:
    pn("run", "--name", "user", busybox, "true")
    refused = pn("rmi", busybox, check=False)
    assert refused.returncode == 125 and "being used by container user" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    pn("rmi", "-f", busybox)  # untags, keeps the image the container needs
    listed = json.loads(pn("images", "--format", "json").stdout)
    assert [i["RepoTags"] for i in listed] == [[]]
    pn("image", "prune", "-f")
    pn("image", "prune", "-a", "-f")
    assert len(json.loads(pn("images", "--format", "json").stdout)) == 1
    assert pn("run", "--rm", listed[0]["Id"][7:19], "true").returncode == 0
    pn("rm", "user")
    out = pn("image", "prune", "-f").stdout
    assert f"deleted: {listed[0]['Id']}" in out and "Total reclaimed space: 2.1" in out
    assert json.loads(pn("images", "--format", "json").stdout) == []
    assert blobs(pn) == []


def test_rmi_keeps_layers_another_image_shares(pn: Pinnace, busybox: str) -> None:
    base_layer = json.loads(pn("image", "inspect", busybox).stdout)[0]["RootFS"]["Layers"][0]
    pn("run", "--name", "c", busybox, "sh", "-c", "echo x > /x")
    pn("commit", "c", "child:1")
    pn("rm", "c")
    assert pn("rmi", busybox).stdout.splitlines()[-1].startswith("Deleted: ")
    assert base_layer[7:] in blobs(pn)  # child:1 still needs it
    assert pn("run", "--rm", "child:1", "cat", "/x").stdout == "x\n"
    pn("image", "prune", "-f")  # child:1 is tagged: kept
    assert pn("run", "--rm", "child:1", "cat", "/x").stdout == "x\n"
    pn("image", "prune", "-a", "-f")  # no container uses it any more
    assert blobs(pn) == []


# ------------------------------------------------------------------ bad input

def refused(pn: Pinnace, path: Path, text: str) -> None:
    """``pinnace load -i path`` fails in one line containing ``text`` and stores nothing."""
    before = blobs(pn)
    proc = pn("load", "-i", str(path), check=False)
    assert proc.returncode == 125, proc
    assert text in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert blobs(pn) == before
    assert json.loads(pn("images", "--format", "json").stdout) == []


GOOD_LAYER = tar_bytes([entry("etc/hello", b"hi\n")])


def test_manifest_naming_a_missing_file(pn: Pinnace, tmp_path: Path) -> None:
    def edit(manifest: list[dict]) -> None:
        manifest[0]["Layers"].append("nowhere/layer.tar")
    path = docker_archive(tmp_path / "a.tar", [GOOD_LAYER], ["x:1"], edit,
                          diff_ids=[sha(GOOD_LAYER), sha(GOOD_LAYER)])
    refused(pn, path, "names 'nowhere/layer.tar', which it does not contain")


@pytest.mark.parametrize("name", ["../../etc/passwd", "/etc/passwd", "l0/../../x"])
def test_manifest_path_outside_the_archive(pn: Pinnace, tmp_path: Path, name: str) -> None:
    def edit(manifest: list[dict]) -> None:
        manifest[0]["Layers"] = [name]
    path = docker_archive(tmp_path / "a.tar", [GOOD_LAYER], ["x:1"], edit)
    refused(pn, path, "outside the archive")


@pytest.mark.parametrize("members, text", [
    ([entry("../escape", b"x")], "points outside the rootfs"),
    ([entry("a/../../escape", b"x")], "points outside the rootfs"),
    ([entry("etc", kind=tarfile.SYMTYPE, link="/"), entry("etc/evil", b"x")],
     "below the symlink 'etc'"),
    ([entry("evil", kind=tarfile.LNKTYPE, link="../../../etc/shadow")],
     "hardlink target '../../../etc/shadow' points outside"),
    ([entry("a/.wh..."), ], "whiteout of '..'"),
    ([entry("../.wh.etc")], "points outside the rootfs"),
], ids=["dotdot", "nested-dotdot", "symlink-escape", "hardlink-escape", "whiteout-dotdot",
        "whiteout-outside"])
def test_hostile_layers_are_refused_at_load(pn: Pinnace, tmp_path: Path, members: list,
                                            text: str) -> None:
    path = docker_archive(tmp_path / "a.tar", [tar_bytes(members)], ["x:1"])
    refused(pn, path, text)


def test_absolute_paths_land_inside_the_rootfs(pn: Pinnace, busybox_tar: Path,
                                               tmp_path: Path) -> None:
    name = f"/tmp/pinnace-absolute-{uuid.uuid4().hex}"
    base = busybox_tar.read_bytes()
    layer = tar_bytes([entry(name, b"inside\n")])
    pn("load", "-i", str(docker_archive(tmp_path / "a.tar", [base, layer], ["abs:1"])))
    assert pn("run", "--rm", "abs:1", "cat", name).stdout == "inside\n"
    assert not os.path.exists(name)


def test_symlink_from_a_lower_layer_cannot_redirect_a_member(pn: Pinnace, busybox_tar: Path,
                                                             root: Path, tmp_path: Path) -> None:
    target = tmp_path / "host-dir"
    target.mkdir()
    lower = tar_bytes([entry("evil", kind=tarfile.SYMTYPE, link=str(target))])
    upper = tar_bytes([entry("evil/planted", b"x")])
    pn("load", "-i", str(docker_archive(tmp_path / "a.tar", [busybox_tar.read_bytes(), lower,
                                                              upper], ["evil:1"])))
    proc = pn("run", "--rm", "evil:1", "true", check=False)
    assert proc.returncode == 125 and "symlinks are never followed" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert os.listdir(target) == []
    assert host_leftovers(root) == []
    assert pn("ps", "-a", "-q").stdout == ""


def test_truncated_gzip_archive(pn: Pinnace, tmp_path: Path) -> None:
    plain = docker_archive(tmp_path / "a.tar", [GOOD_LAYER], ["x:1"]).read_bytes()
    packed = gzip.compress(plain)
    (tmp_path / "t.tar.gz").write_bytes(packed[: len(packed) // 2])
    refused(pn, tmp_path / "t.tar.gz", "corrupt compressed archive")


def test_truncated_gzip_layer(pn: Pinnace, tmp_path: Path) -> None:
    layer = gzip.compress(tar_bytes([entry("f", os.urandom(200_000))]))
    path = docker_archive(tmp_path / "a.tar", [layer[: len(layer) // 2]], ["x:1"],
                          diff_ids=[sha(b"whatever")])
    refused(pn, path, "not a tar archive")


def test_layer_that_does_not_match_the_config(pn: Pinnace, tmp_path: Path) -> None:
    path = docker_archive(tmp_path / "a.tar", [GOOD_LAYER], ["x:1"], diff_ids=[sha(b"other")])
    refused(pn, path, "the image config expects")


def test_oci_blob_whose_bytes_do_not_match_its_digest(pn: Pinnace, busybox: str, root: Path,
                                                      tmp_path: Path) -> None:
    pn("save", "--format", "oci-archive", "-o", str(tmp_path / "b.tar"), busybox)
    layout = tmp_path / "layout"
    with tarfile.open(tmp_path / "b.tar") as tar:
        tar.extractall(layout)
    layer = max((layout / "blobs" / "sha256").iterdir(), key=lambda p: p.stat().st_size)
    data = bytearray(layer.read_bytes())
    data[600] ^= 1  # one flipped bit inside the first file's contents
    layer.write_bytes(bytes(data))
    refused(Pinnace(root / "second"), layout, "does not match its digest")


def test_not_an_archive(pn: Pinnace, tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello\n" * 100)
    refused(pn, tmp_path / "notes.txt", "not a tar archive")
    (tmp_path / "empty.tar").write_bytes(tar_bytes([entry("x", b"1")]))
    refused(pn, tmp_path / "empty.tar", "neither a docker archive")


def test_save_to_a_full_disk_leaves_no_partial_archive(pn: Pinnace, busybox: str,
                                                       tmp_path: Path) -> None:
    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(small)], check=True)
    try:
        proc = pn("save", "-o", str(small / "b.tar"), busybox, check=False)
        assert proc.returncode == 125
        assert proc.stderr.strip() == \
            f"Error: no space left on device writing the archive to {small / 'b.tar'}"
        assert os.listdir(small) == []
    finally:
        subprocess.run(["umount", str(small)], check=True)
    proc = pn("save", "-o", str(tmp_path / "no" / "dir.tar"), busybox, check=False)
    assert proc.returncode == 125 and "No such file or directory" in proc.stderr
