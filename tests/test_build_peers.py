"""``pinnace build`` against ``podman build`` (buildah): the same Dockerfiles give the same
file trees (paths, types, modes, owners, link targets, contents) and the same configs;
an image pinnace built, saved and loaded into podman runs there.

podman gets a root and run root of its own under the test's temporary directory and
runs its steps with ``--network none``."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Pinnace

PODMAN = shutil.which("podman") or "podman"  # a Debian package the Makefile installs
ENGINE_PATHS = {"etc/hosts", "etc/hostname", "etc/resolv.conf", "run/.containerenv", "proc",
                "sys", "dev", "run"}
"""Entries an engine makes for every container of its own, left out of the comparison."""
CONFIG_KEYS = ("Env", "Cmd", "Entrypoint", "WorkingDir", "User", "Labels", "ExposedPorts",
               "Volumes", "StopSignal")

DOCKERFILE = """\
FROM busybox AS tools
RUN mkdir -p /opt/tool && echo built > /opt/tool/out && ln -s out /opt/tool/link

FROM busybox
ARG WHO=peer
ENV GREETING="hello ${WHO}" EMPTY=
WORKDIR /srv/app
COPY files/ ./
COPY --chown=1000:100 files/run.sh /usr/local/bin/
COPY --chmod=640 files/config.txt /etc/app.conf
COPY --from=tools /opt/tool /opt/tool
ADD layer.tar /unpacked/
RUN echo "$GREETING" > greeting && rm /bin/vi && mkdir -p /var/cache/x && \\
    touch /var/cache/x/file && rm -r /var/cache/x && chmod 4755 /srv/app/run.sh
LABEL org.example.peer="podman" version=1
EXPOSE 8080 53/udp
VOLUME ["/data"]
USER 1000
STOPSIGNAL SIGQUIT
ENTRYPOINT ["/bin/sh", "-c"]
CMD ["cat /srv/app/greeting"]
"""


class Podman:
    """``podman`` with a root and run root of its own."""

    def __init__(self, base: Path, run_root: str) -> None:
        self.args = [PODMAN, "--root", str(base / "root"), "--runroot", run_root,
                     "--storage-driver", "vfs"]

    def __call__(self, *args: str) -> str:
        proc = subprocess.run([*self.args, *args], capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, f"podman {' '.join(args)}: {proc.stdout}{proc.stderr}"
        return proc.stdout


@pytest.fixture
def podman(tmp_path_factory: pytest.TempPathFactory, pn: Pinnace, busybox: str) -> Iterator[Podman]:
    """A podman holding the same busybox image as ``pn`` (saved by pinnace, loaded)."""
    base = tmp_path_factory.mktemp("podman")
    run_root = tempfile.mkdtemp(prefix="podman-", dir="/tmp")  # podman takes 50 characters
    peer = Podman(base, run_root)
    archive = base / "busybox.tar"
    pn("save", "-o", str(archive), busybox)
    peer("load", "-i", str(archive))
    yield peer
    subprocess.run([*peer.args, "system", "reset", "-f"], capture_output=True, timeout=300)
    shutil.rmtree(run_root, ignore_errors=True)


def make_context(tmp_path: Path) -> Path:
    ctx = tmp_path / "ctx"
    (ctx / "files" / "sub").mkdir(parents=True)
    (ctx / "Dockerfile").write_text(DOCKERFILE)
    (ctx / "files" / "config.txt").write_text("key=value\n")
    (ctx / "files" / "run.sh").write_text("#!/bin/sh\necho run\n")
    os.chmod(ctx / "files" / "run.sh", 0o755)
    (ctx / "files" / "sub" / "data.bin").write_bytes(bytes(range(256)) * 64)
    os.symlink("../config.txt", ctx / "files" / "sub" / "cfg")
    with tarfile.open(ctx / "layer.tar", "w") as tar:
        for name, data, mode in (("a/one", b"1\n", 0o600), ("a/two", b"22\n", 0o755)):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.uid, info.gid = len(data), mode, 7, 8
            tar.addfile(info, io.BytesIO(data))
    return ctx


def tree_of(tar_bytes: bytes) -> dict[str, tuple]:
    """A container export as {path: (type, mode, uid, gid, link target, content hash)}."""
    out = {}
    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tar:
        for m in tar:
            name = m.name.removeprefix("./").rstrip("/")
            if not name or name in ENGINE_PATHS or name.split("/")[0] in ("proc", "sys", "dev"):
                continue
            data = tar.extractfile(m).read() if m.isfile() else b""  # type: ignore[union-attr]
            out[name] = (m.type, m.mode & 0o7777, m.uid, m.gid, m.linkname,
                         hashlib.sha256(data).hexdigest())
    return out


def pinnace_tree(pn: Pinnace, image: str, tmp_path: Path) -> dict[str, tuple]:
    cid = pn("create", "--net", "none", image).stdout.strip()
    out = tmp_path / "pinnace-export.tar"
    pn("export", "-o", str(out), cid)
    pn("rm", cid)
    return tree_of(out.read_bytes())


def podman_tree(podman: Podman, image: str, tmp_path: Path) -> dict[str, tuple]:
    cid = podman("create", image).strip()
    out = tmp_path / "podman-export.tar"
    podman("export", "-o", str(out), cid)
    podman("rm", cid)
    return tree_of(out.read_bytes())


def test_same_tree_and_config_as_podman_build(pn: Pinnace, podman: Podman,
                                              tmp_path: Path) -> None:
    ctx = make_context(tmp_path)
    pn("build", "--net", "none", "-t", "peer:1", str(ctx))
    podman("build", "--network", "none", "-t", "peer:1", str(ctx))
    ours, theirs = pinnace_tree(pn, "peer:1", tmp_path), podman_tree(podman, "peer:1", tmp_path)
    assert set(ours) == set(theirs), (sorted(set(ours) - set(theirs)),
                                      sorted(set(theirs) - set(ours)))
    differing = {path: (ours[path], theirs[path]) for path in ours
                 if ours[path] != theirs[path]}
    assert differing == {}, "\n".join(f"{p}: {a} != {b}" for p, (a, b) in differing.items())
    for path in ("srv/app/greeting", "srv/app/sub/cfg", "usr/local/bin/run.sh",
                 "etc/app.conf", "opt/tool/link", "unpacked/a/two"):
        assert path in ours
    assert "bin/vi" not in ours and "var/cache/x" not in ours
    our_config = json.loads(pn("image", "inspect", "peer:1").stdout)[0]["Config"]
    their_config = json.loads(podman("image", "inspect", "localhost/peer:1"))[0]["Config"]
    their_config["Labels"] = {k: v for k, v in (their_config.get("Labels") or {}).items()
                              if not k.startswith("io.buildah")}
    for key in CONFIG_KEYS:
        assert (key, our_config.get(key) or None) == (key, their_config.get(key) or None)


def test_pinnace_built_image_runs_under_podman(pn: Pinnace, podman: Podman,
                                               tmp_path: Path) -> None:
    """Saved by pinnace, loaded by podman, its command run by podman's engine (a step of
    ``podman build``: ``podman run`` needs to set rlimits, which a host without
    CAP_SYS_RESOURCE refuses for every image)."""
    ctx = make_context(tmp_path)
    pn("build", "--net", "none", "-t", "handed:over", str(ctx))
    archive = tmp_path / "handed.tar"
    pn("save", "-o", str(archive), "handed:over")
    podman("load", "-i", str(archive))
    shown = json.loads(podman("image", "inspect", "localhost/handed:over"))[0]["Config"]
    assert shown["Entrypoint"] == ["/bin/sh", "-c"] and shown["User"] == "1000"
    check = tmp_path / "check"
    check.mkdir()
    (check / "Dockerfile").write_text(
        'FROM localhost/handed:over\nRUN ["/bin/sh", "-c", "cat /srv/app/greeting; id -u; '
        'cat /opt/tool/link /unpacked/a/two; ls /bin/vi || echo no vi"]\n')
    out = podman("build", "--network", "none", "--no-cache", str(check))
    assert "hello peer\n1000\nbuilt\n22\n" in out and "no vi" in out
