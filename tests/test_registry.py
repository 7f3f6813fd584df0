"""The registry image source against Debian's docker-registry on loopback (plain, Basic
auth, behind a token server), with images skopeo put there, round trips through
skopeo, and a fault-injecting proxy for broken registries."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Pinnace

from pinnace.testing.registry import (
    PASSWORD,
    USER,
    FaultProxy,
    Layout,
    RegistryServer,
    TokenServer,
    _tar,
    busybox_layers,
    docker_registry,
    htpasswd,
    skopeo_copy,
)


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    """A plain registry, with an access log (to count uploads)."""
    with docker_registry(tmp_path_factory.mktemp("registry"), access_log=True) as reg:
        yield reg


@pytest.fixture(scope="session")
def layout(tmp_path_factory: pytest.TempPathFactory, busybox_tar: Path) -> Layout:
    """An OCI layout with: ``bb`` (busybox), ``multi`` (three layers, one a whiteout),
    ``list`` (amd64 + arm64), ``armonly`` (arm64 + s390x)."""
    lay = Layout(tmp_path_factory.mktemp("layout"))
    layers = busybox_layers(busybox_tar)
    lay.tag(lay.image(layers[:1]), "bb")
    lay.tag(lay.image(layers), "multi")
    lay.tag(lay.multi([lay.image(layers[:1]), lay.image(layers[:2], arch="arm64")]), "list")
    lay.tag(lay.multi([lay.image(layers[:1], arch="arm64"),
                       lay.image(layers[:1], arch="s390x")]), "armonly")
    return lay


@pytest.fixture(scope="session")
def seeded(registry: RegistryServer, layout: Layout) -> str:
    """The plain registry with the layout's images, pushed by skopeo (docker schema 2
    for ``multi`` and ``list``, OCI for the others); returns its host."""
    host = registry.host
    skopeo_copy(f"oci:{layout.path}:bb", f"docker://{host}/lib/bb:1")
    skopeo_copy(f"oci:{layout.path}:multi", f"docker://{host}/lib/multi:1", "--format", "v2s2")
    skopeo_copy(f"oci:{layout.path}:list", f"docker://{host}/lib/list:1", "--all",
                "--format", "v2s2")
    skopeo_copy(f"oci:{layout.path}:armonly", f"docker://{host}/lib/armonly:1", "--all")
    return host


def unique_image(lay: Layout, busybox_tar: Path, name: str, size: int = 1 << 16,
                 extra: bytes | None = None) -> dict:
    """An image of busybox plus a layer of ``size`` random bytes (or ``extra``, a raw
    blob used as a gzip layer), tagged ``name``; returns the unique layer's descriptor."""
    data = _tar([("random.bin", os.urandom(size))])
    desc = lay.image([busybox_tar.read_bytes(), data])
    if extra is not None:  # replace the unique layer with a raw blob
        manifest = json.loads((lay.path / "blobs/sha256" / desc["digest"][7:]).read_bytes())
        manifest["layers"][1] = lay.blob(extra, "application/vnd.oci.image.layer.v1.tar+gzip")
        desc = lay.blob(json.dumps(manifest).encode(), manifest["mediaType"])
    lay.tag(desc, name)
    manifest = json.loads((lay.path / "blobs/sha256" / desc["digest"][7:]).read_bytes())
    return manifest["layers"][1]


def error_line(proc: subprocess.CompletedProcess[str]) -> str:
    """The one-line error of a failed command."""
    assert proc.returncode == 125, (proc.returncode, proc.stdout, proc.stderr)
    assert proc.stderr.startswith("Error: ") and proc.stderr.count("\n") == 1, proc.stderr
    return proc.stderr


def blobs_intact(root: Path) -> list[str]:
    """Names of stored blobs whose bytes do not hash to their name, plus temp files
    that look complete (there should be none)."""
    bad = []
    blobs = root / "images/blobs/sha256"
    for entry in blobs.iterdir() if blobs.is_dir() else ():
        if entry.name.startswith(".tmp-"):
            continue
        if hashlib.sha256(entry.read_bytes()).hexdigest() != entry.name:
            bad.append(entry.name)
    return bad


def stored_images(pn: Pinnace) -> list[str]:
    return pn("images", "-q").stdout.split()


def registry_manifest(host: str, ref: str) -> dict:
    """The manifest the registry serves for ``ref`` (a repository:tag on ``host``)."""
    return json.loads(subprocess.run(
        ["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{host}/{ref}"],
        check=True, capture_output=True).stdout)


def stored_manifest(pn: Pinnace, ref: str) -> dict:
    """The manifest pinnace's store keeps for tag ``ref`` (found in its OCI layout)."""
    index = json.loads((pn.root / "images/index.json").read_text())
    digest = next(m["digest"] for m in index["manifests"]
                  if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == ref)
    return json.loads((pn.root / "images/blobs/sha256" / digest[7:]).read_bytes())


def snapshots(pn: Pinnace) -> list[str]:
    """The layer snapshots the dir storage keeps, and the rows that record them."""
    path = pn.root / "storage/dir/snapshots"
    with contextlib.closing(sqlite3.connect(pn.root / "state.db")) as db:
        rows = [r[0] for r in db.execute("SELECT chain_id FROM snapshots")]
    return sorted(os.listdir(path) if path.exists() else []) + rows


# ------------------------------------------------------------------ pull


def test_pull_multi_layer_docker_schema2_with_whiteout(pn: Pinnace, seeded: str) -> None:
    ref = f"{seeded}/lib/multi:1"
    image_id = pn("pull", ref).stdout.strip()
    assert image_id.startswith("sha256:") and blobs_intact(pn.root) == []
    out = pn("run", "--rm", "--storage=dir", ref, "sh", "-c",
             "cat /etc/motd /etc/motd2; ls /data").stdout
    assert out == "hello from layer 2\nlayer 3\nkeep\n"  # data/gone is whited out
    inspect = json.loads(pn("image", "inspect", ref).stdout)[0]
    assert len(inspect["RootFS"]["Layers"]) == 3
    # a second pull finds every layer already there and gives the same image
    assert pn("pull", ref).stdout.strip() == image_id


def test_pull_stores_blobs_as_served_and_checks_diff_ids_at_first_run(
        pn: Pinnace, seeded: str) -> None:
    ref = f"{seeded}/lib/multi:1"
    served = registry_manifest(seeded, "lib/multi:1")
    pn("pull", ref)
    # the store holds the registry's gzip blobs under the registry's digests
    layers = [d["digest"] for d in served["layers"]]
    kept = stored_manifest(pn, ref)["layers"]
    assert [d["digest"] for d in kept] == layers
    assert {d["mediaType"] for d in kept} == {"application/vnd.oci.image.layer.v1.tar+gzip"}
    for digest in layers:
        blob = (pn.root / "images/blobs/sha256" / digest[7:]).read_bytes()
        assert blob[:2] == b"\x1f\x8b" and "sha256:" + hashlib.sha256(blob).hexdigest() == digest
    # inspect lists diff IDs (the uncompressed tars'), not the blob digests
    diff_ids = json.loads(pn("image", "inspect", ref).stdout)[0]["RootFS"]["Layers"]
    assert len(diff_ids) == 3 and not set(diff_ids) & set(layers)
    assert snapshots(pn) == []  # nothing is unpacked by a pull
    assert pn("run", "--rm", "--storage=dir", ref, "cat", "/etc/motd2").stdout == "layer 3\n"
    assert len(snapshots(pn)) == 2 * 3  # one directory and one row per layer
    # a commit on top keeps the gzip layers below its own plain one
    pn("run", "--name", "c", "--storage=dir", ref, "sh", "-c", "echo mine > /etc/mine")
    pn("commit", "c", "committed:1")
    kept = stored_manifest(pn, "committed:1")["layers"]
    assert [d["digest"] for d in kept[:3]] == layers
    assert kept[3]["mediaType"] == "application/vnd.oci.image.layer.v1.tar"
    out = pn("run", "--rm", "--storage=dir", "committed:1", "cat", "/etc/mine", "/etc/motd2")
    assert out.stdout == "mine\nlayer 3\n"


def test_pull_by_digest_and_oci_manifest(pn: Pinnace, seeded: str) -> None:
    digest = json.loads(subprocess.run(
        ["skopeo", "inspect", "--tls-verify=false", f"docker://{seeded}/lib/bb:1"],
        check=True, capture_output=True, text=True).stdout)["Digest"]
    image_id = pn("pull", f"docker://{seeded}/lib/bb@{digest}").stdout.strip()
    assert pn("run", "--rm", "--storage=dir", image_id[7:19], "echo", "ok").stdout == "ok\n"
    # the registry's digest names the image locally, as docker's RepoDigests do
    inspect = json.loads(pn("image", "inspect", f"{seeded}/lib/bb@{digest}").stdout)[0]
    assert inspect["Id"] == image_id and inspect["RepoDigests"] == [f"{seeded}/lib/bb@{digest}"]
    pn("pull", f"{seeded}/lib/bb:1")
    listed = pn("images", "--digests").stdout
    assert f"{seeded}/lib/bb   1     {digest}" in listed
    proc = pn("pull", f"{seeded}/lib/bb@sha256:{'0' * 64}", check=False)
    assert "not found" in error_line(proc) or "unknown" in proc.stderr


def test_manifest_list_platform_selection(pn: Pinnace, seeded: str) -> None:
    ref = f"{seeded}/lib/list:1"
    pn("pull", ref)
    assert json.loads(pn("image", "inspect", ref).stdout)[0]["Architecture"] == "amd64"
    pn("pull", "--platform", "linux/arm64", ref)
    arm = json.loads(pn("image", "inspect", ref).stdout)[0]
    assert arm["Architecture"] == "arm64" and len(arm["RootFS"]["Layers"]) == 2
    proc = pn("pull", "--platform", "linux", ref, check=False)
    assert "invalid platform" in error_line(proc)


def test_manifest_for_another_platform_only(pn: Pinnace, seeded: str) -> None:
    proc = pn("pull", f"{seeded}/lib/armonly:1", check=False)
    line = error_line(proc)
    assert "no image for platform linux/amd64" in line and "linux/arm64" in line
    assert "linux/s390x" in line
    assert stored_images(pn) == []


def test_missing_image_and_strict_tls(pn: Pinnace, seeded: str) -> None:
    line = error_line(pn("pull", f"{seeded}/lib/nothere:1", check=False))
    assert "manifest unknown" in line
    # --tls-verify=true refuses plain HTTP even on loopback
    line = error_line(pn("pull", "--tls-verify=true", f"{seeded}/lib/bb:1", check=False))
    assert "cannot reach registry" in line
    line = error_line(pn("pull", "lib/bb:1", check=False))
    assert "names no registry" in line


# ------------------------------------------------------------------ push


def uploads(registry: RegistryServer, repo: str) -> int:
    """Blob upload requests (POST without mount, PATCH, PUT) the registry logged for ``repo``."""
    log = (registry.storage.parent / "registry.log").read_text()
    return sum(1 for line in log.splitlines()
               if f"/v2/{repo}/blobs/uploads/" in line and "mount=" not in line)


def test_push_round_trip_through_skopeo(pn: Pinnace, busybox: str, registry: RegistryServer,
                                        tmp_path: Path) -> None:
    host = registry.host
    digest = pn("push", busybox, f"{host}/me/bb:1").stdout.strip()
    raw = subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false",
                          f"docker://{host}/me/bb:1"], check=True, capture_output=True).stdout
    assert "sha256:" + hashlib.sha256(raw).hexdigest() == digest
    repo_digests = json.loads(pn("image", "inspect", busybox).stdout)[0]["RepoDigests"]
    assert repo_digests == [f"{host}/me/bb@{digest}"]
    manifest = json.loads(raw)
    assert manifest["layers"][0]["mediaType"].endswith("tar+gzip")
    # skopeo copies it back; its layer decompresses to the image's diff ID
    skopeo_copy(f"docker://{host}/me/bb:1", f"dir:{tmp_path / 'back'}")
    layer = (tmp_path / "back" / manifest["layers"][0]["digest"][7:]).read_bytes()
    diff_id = json.loads(pn("image", "inspect", busybox).stdout)[0]["RootFS"]["Layers"][0]
    assert "sha256:" + hashlib.sha256(gzip.decompress(layer)).hexdigest() == diff_id
    # pushing again uploads nothing: the registry has every blob
    before = uploads(registry, "me/bb")
    assert pn("push", busybox, f"{host}/me/bb:2").stdout.strip() == digest
    assert uploads(registry, "me/bb") == before


def test_push_uncompressed_and_zstd_then_pull(pn: Pinnace, busybox: str,
                                              registry: RegistryServer, root: Path) -> None:
    host = registry.host
    for fmt in ("none", "zstd"):
        pn("push", "--compression-format", fmt, busybox, f"{host}/me/{fmt}:1")
        raw = subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false",
                              f"docker://{host}/me/{fmt}:1"], check=True,
                             capture_output=True).stdout
        media = json.loads(raw)["layers"][0]["mediaType"]
        assert media.endswith({"none": "tar", "zstd": "tar+zstd"}[fmt])
        other = Pinnace(root / f"pulled-{fmt}")
        other("pull", f"{host}/me/{fmt}:1")
        out = other("run", "--rm", "--storage=dir", f"{host}/me/{fmt}:1", "echo", fmt).stdout
        assert out == f"{fmt}\n"


def test_push_of_a_pulled_image_sends_its_blobs_as_they_are(pn: Pinnace, seeded: str,
                                                             root: Path, tmp_path: Path) -> None:
    ref = f"{seeded}/lib/multi:1"
    served = [d["digest"] for d in registry_manifest(seeded, "lib/multi:1")["layers"]]
    pn("pull", ref)
    diff_ids = json.loads(pn("image", "inspect", ref).stdout)[0]["RootFS"]["Layers"]
    with docker_registry(tmp_path / "second", access_log=True) as second:
        pn("push", ref, f"{second.host}/copy/gzip:1")
        pushed = registry_manifest(second.host, "copy/gzip:1")["layers"]
        assert [d["digest"] for d in pushed] == served  # the pulled gzip blobs, not new ones
        log = (second.storage.parent / "registry.log").read_text()
        # a monolithic upload (POST, PUT) for each layer and the config: nothing recompressed
        assert uploads(second, "copy/gzip") == 2 * 4 and '"PATCH ' not in log
        # another compression is made from the tar, checked against its diff ID on the way
        pn("push", "--compression-format", "none", ref, f"{second.host}/copy/none:1")
        assert [d["digest"] for d in registry_manifest(second.host, "copy/none:1")["layers"]] \
            == diff_ids
        pn("push", "--compression-format", "zstd", ref, f"{second.host}/copy/zstd:1")
        media = {d["mediaType"] for d in registry_manifest(second.host, "copy/zstd:1")["layers"]}
        assert media == {"application/vnd.oci.image.layer.v1.tar+zstd"}
        other = Pinnace(root / "other")
        other("pull", f"{second.host}/copy/zstd:1")
        out = other("run", "--rm", "--storage=dir", f"{second.host}/copy/zstd:1", "cat",
                    "/etc/motd2")
        assert out.stdout == "layer 3\n"


# ------------------------------------------------------------------ auth


@pytest.fixture(scope="session")
def basic_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    work = tmp_path_factory.mktemp("basic")
    auth = {"htpasswd": {"realm": "pinnace-test", "path": str(htpasswd(work / "htpasswd"))}}
    with docker_registry(work / "reg", auth) as reg:
        yield reg


@pytest.fixture(scope="session")
def token_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TokenServer]:
    server = TokenServer(tmp_path_factory.mktemp("token"))
    yield server
    server.close()


@pytest.fixture(scope="session")
def token_registry(tmp_path_factory: pytest.TempPathFactory, token_server: TokenServer,
                   layout: Layout) -> Iterator[RegistryServer]:
    with docker_registry(tmp_path_factory.mktemp("tokenreg"),
                         token_server.registry_auth()) as reg:
        skopeo_copy(f"oci:{layout.path}:bb", f"docker://{reg.host}/lib/bb:1",
                    "--dest-creds", f"{USER}:{PASSWORD}")
        yield reg


def test_basic_auth_login_logout(pn: Pinnace, busybox: str,
                                 basic_registry: RegistryServer) -> None:
    host = basic_registry.host
    ref = f"{host}/me/bb:1"
    line = error_line(pn("push", busybox, ref, check=False))
    assert "unauthorized" in line and f"pinnace login {host}" in line
    line = error_line(pn("login", "-u", USER, "-p", "wrong", host, check=False))
    assert "unauthorized" in line
    out = pn("login", "-u", USER, "--password-stdin", host, input=PASSWORD + "\n").stdout
    assert out == "Login Succeeded\n"
    auth_file = pn.root / "image_source/docker/auth.json"
    assert auth_file.stat().st_mode & 0o777 == 0o600
    assert auth_file.parent.stat().st_mode & 0o777 == 0o700
    assert f"{host}" in json.loads(auth_file.read_text())["auths"]
    pn("push", busybox, ref)
    pn("rmi", busybox)
    pn("pull", ref)
    assert pn("run", "--rm", "--storage=dir", ref, "echo", "basic").stdout == "basic\n"
    assert pn("logout", host).stdout == f"Removing login credentials for {host}\n"
    assert pn("logout", host).stdout == f"Not logged in to {host}\n"
    assert "unauthorized" in error_line(pn("pull", ref, check=False))


def test_bearer_token_auth(pn: Pinnace, busybox: str, token_registry: RegistryServer,
                           token_server: TokenServer) -> None:
    host = token_registry.host
    # anonymous callers get pull tokens: skopeo's image comes down without a login
    pn("pull", f"{host}/lib/bb:1")
    assert any("scope=repository%3Alib%2Fbb%3Apull" in r for r in token_server.requests)
    line = error_line(pn("push", busybox, f"{host}/me/bb:1", check=False))
    assert "unauthorized" in line
    assert "refused" in error_line(pn("login", "-u", USER, "-p", "nope", host, check=False))
    pn("login", "-u", USER, "-p", PASSWORD, host)
    digest = pn("push", busybox, f"{host}/me/bb:1").stdout.strip()
    info = json.loads(subprocess.run(
        ["skopeo", "inspect", "--tls-verify=false", "--creds", f"{USER}:{PASSWORD}",
         f"docker://{host}/me/bb:1"], check=True, capture_output=True, text=True).stdout)
    assert info["Digest"] == digest


# ------------------------------------------------------------------ bad blobs and faults


def test_blob_not_matching_its_digest_is_rejected(pn: Pinnace, busybox_tar: Path,
                                                  tmp_path: Path) -> None:
    lay = Layout(tmp_path / "layout")
    layer = unique_image(lay, busybox_tar, "bad")
    with docker_registry(tmp_path / "reg") as reg:
        skopeo_copy(f"oci:{lay.path}:bad", f"docker://{reg.host}/lib/bad:1")
        data = bytearray(reg.blob_file(layer["digest"]).read_bytes())
        data[len(data) // 2] ^= 0xFF  # the registry's storage is corrupt: same size, other bytes
        reg.blob_file(layer["digest"]).write_bytes(bytes(data))
        line = error_line(pn("pull", f"{reg.host}/lib/bad:1", check=False))
    assert f"blob {layer['digest']} does not match its digest" in line
    assert stored_images(pn) == []
    assert not any((pn.root / "images/blobs/sha256").iterdir())  # nothing stored


BAD_LAYERS = {  # a gzip layer blob (with the right digest) -> what its first unpack says
    "diff-id": (gzip.compress(_tar([("other", b"not the layer the config lists")])),
                "not to the diff ID"),
    "truncated": (gzip.compress(_tar([("big", os.urandom(1 << 16))]))[:40_000],
                  "corrupt compressed data: gzip"),
    "not-a-tar": (gzip.compress(os.urandom(1 << 14)), "corrupt layer"),
}


@pytest.mark.parametrize("kind", sorted(BAD_LAYERS))
def test_bad_layer_is_refused_at_first_run_and_leaves_nothing(
        pn: Pinnace, busybox_tar: Path, tmp_path: Path, seeded: str, kind: str) -> None:
    blob, expected = BAD_LAYERS[kind]
    lay = Layout(tmp_path / "layout")
    bad = unique_image(lay, busybox_tar, "bad", extra=blob)
    skopeo_copy(f"oci:{lay.path}:bad", f"docker://{seeded}/lib/bad-{kind}:1")
    ref = f"{seeded}/lib/bad-{kind}:1"
    image_id = pn("pull", ref).stdout.strip()  # the blob's digest is right: pulled
    for _ in range(2):  # refused each time, not remembered as unpacked
        line = error_line(pn("run", "--rm", "--storage=dir", ref, "true", check=False))
        assert f"layer {bad['digest']}: " in line and expected in line
        assert len(snapshots(pn)) == 2 * 1  # busybox's layer stays unpacked, nothing else
    assert stored_images(pn) == [image_id[7:19]]  # still listed: rmi or a new pull fixes it
    line = error_line(pn("push", "--compression-format", "zstd", ref,
                         f"{seeded}/lib/copy-{kind}:1", check=False))
    assert f"layer {bad['digest']}: " in line  # a push that recompresses reads it whole
    assert not any(p.name.startswith(".tmp-") for p in (pn.root / "images/blobs/sha256").iterdir())
    # the registry's image is fixed under the same name: a pull moves the tag to it
    unique_image(lay, busybox_tar, "good")
    skopeo_copy(f"oci:{lay.path}:good", f"docker://{seeded}/lib/bad-{kind}:1")
    fixed = pn("pull", ref).stdout.strip()
    assert fixed != image_id
    assert pn("run", "--rm", "--storage=dir", ref, "ls", "/random.bin").stdout == "/random.bin\n"
    pn("rmi", image_id)
    assert bad["digest"][7:] not in os.listdir(pn.root / "images/blobs/sha256")


@pytest.fixture
def proxy(seeded: str) -> Iterator[FaultProxy]:
    server = FaultProxy(seeded)
    yield server
    server.close()


def test_server_errors_are_retried_then_reported(pn: Pinnace, proxy: FaultProxy) -> None:
    ref = f"{proxy.host}/lib/bb:1"
    proxy.faults.status, proxy.faults.status_times = 500, 2
    pn("pull", ref)  # two 500s, then the blob: retried
    assert proxy.faults.status_times == 0
    pn("rmi", ref)
    proxy.faults.status_times = 100
    line = error_line(pn("pull", ref, check=False))
    assert "answered 500 Internal Server Error (4 attempts)" in line
    assert stored_images(pn) == []
    proxy.faults.status, proxy.faults.status_times = 404, 1
    line = error_line(pn("pull", ref, check=False))  # a 404 is final: not retried
    assert "/v2/lib/bb/blobs/sha256:" in line and "404 Not Found" in line
    assert proxy.faults.status_times == 0 and stored_images(pn) == []


def test_connection_closed_mid_blob(pn: Pinnace, proxy: FaultProxy) -> None:
    ref = f"{proxy.host}/lib/multi:1"
    proxy.faults.cut_times = 2
    pn("pull", ref)  # two cut transfers, retried from the start
    assert proxy.faults.cut_times == 0 and blobs_intact(pn.root) == []
    assert pn("run", "--rm", "--storage=dir", ref, "cat", "/etc/motd2").stdout == "layer 3\n"
    pn("rmi", ref)
    proxy.faults.cut_times = 100
    line = error_line(pn("pull", ref, check=False))
    assert "closed the connection" in line
    assert stored_images(pn) == [] and blobs_intact(pn.root) == []


def test_kill_9_mid_pull_leaves_no_corrupt_blob(pn: Pinnace, busybox_tar: Path,
                                                tmp_path: Path, seeded: str,
                                                proxy: FaultProxy) -> None:
    lay = Layout(tmp_path / "layout")
    unique_image(lay, busybox_tar, "slow", size=4 << 20)
    skopeo_copy(f"oci:{lay.path}:slow", f"docker://{seeded}/lib/slow:1")
    proxy.faults.rate = 1 << 20  # 1 MB/s: the pull takes a few seconds
    proc = pn.popen("pull", f"{proxy.host}/lib/slow:1", stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL)
    blobs = pn.root / "images/blobs/sha256"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        temps = [p for p in blobs.iterdir() if p.name.startswith(".tmp-")] \
            if blobs.is_dir() else []
        if any(p.stat().st_size > (1 << 20) for p in temps):
            break
        time.sleep(0.05)
    else:
        proc.kill()
        pytest.fail("the pull never wrote a blob temp file")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert blobs_intact(pn.root) == []
    assert stored_images(pn) == []
    proxy.faults.rate = 0
    pn("pull", f"{proxy.host}/lib/slow:1")
    assert blobs_intact(pn.root) == []
    out = pn("run", "--rm", "--storage=dir", f"{proxy.host}/lib/slow:1", "ls", "/random.bin")
    assert out.stdout == "/random.bin\n"


def test_full_disk_during_pull(busybox_tar: Path, tmp_path: Path, seeded: str) -> None:
    lay = Layout(tmp_path / "layout")
    unique_image(lay, busybox_tar, "big", size=8 << 20)
    skopeo_copy(f"oci:{lay.path}:big", f"docker://{seeded}/lib/big:1")
    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(small)], check=True)
    try:
        pn = Pinnace(small / "root")
        line = error_line(pn("pull", f"{seeded}/lib/big:1", check=False))
        assert "no space left" in line and "nothing was kept" in line
        assert stored_images(pn) == []
        assert [p.name for p in (small / "root/images/blobs/sha256").iterdir()] == []
    finally:
        subprocess.run(["umount", str(small)], check=True)


# ------------------------------------------------------------------ progress and options


def test_progress_bars_on_a_tty_only(pn: Pinnace, seeded: str) -> None:
    import pty

    ref = f"{seeded}/lib/multi:1"
    quiet = pn("pull", ref)
    assert quiet.stderr == "" and quiet.stdout.startswith("sha256:")
    pn("rmi", ref)
    master, slave = pty.openpty()
    proc = pn.popen("pull", ref, stdout=subprocess.PIPE, stderr=slave)
    os.close(slave)
    drawn = b""
    with contextlib.suppress(OSError):  # EIO once the pty's last writer is gone
        while chunk := os.read(master, 65536):
            drawn += chunk
    os.close(master)
    assert proc.wait(60) == 0
    text = drawn.decode()
    assert "\x1b[" in text  # redrawn in place
    final = text.rsplit("\x1b[J", 1)[-1].splitlines()  # the last frame: one line per layer
    assert len(final) == 3 and all(line.endswith(": Pull complete") for line in final)


def test_insecure_registries_option() -> None:
    from pinnace.config import load
    from pinnace.plugin import Option
    from pinnace_plugins.source_registry import RegistrySource, insecure_allowed

    assert insecure_allowed("127.0.0.1:5000", ())      # loopback, as docker allows
    assert insecure_allowed("127.9.9.9", ())
    assert insecure_allowed("localhost:5000", ())
    assert insecure_allowed("[::1]:5000", ())
    assert not insecure_allowed("10.1.2.3:5000", ())
    assert not insecure_allowed("registry.example:5000", ())
    assert insecure_allowed("registry.example:5000", ("registry.example",))
    assert insecure_allowed("10.1.2.3:5000", ("10.0.0.0/8",))
    assert not insecure_allowed("10.1.2.3:5000", ("10.1.2.3:6000",))
    option = next(o for o in RegistrySource.options if o.name == "insecure_registries")
    assert option.parse("a:5000, b") == ("a:5000", "b")       # environment
    assert option.parse(["a:5000", "b"]) == ("a:5000", "b")   # TOML list
    assert isinstance(option, Option) and load(None).selected("image_source").value == "docker"
