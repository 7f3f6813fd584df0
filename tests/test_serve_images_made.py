"""The endpoints of ``pinnace serve`` that make images or change a container, through
Debian's docker CLI and docker-py: build (``POST /build``), commit, import
(``POST /images/create?fromSrc=``) and update."""

from __future__ import annotations

import http.server
import io
import json
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
from conftest import Pinnace
from docker.errors import BuildError
from test_limits import cgroup_file
from test_serve_docker_cli import Docker, docker_for

from pinnace.runtime import cgroups

DOCKERFILE = """\
FROM busybox AS base
ARG GREETING=default
RUN echo "building $GREETING" && echo "$GREETING" > /greeting
FROM base AS final
LABEL stage=final
COPY note.txt /note.txt
CMD ["cat", "/greeting", "/note.txt"]
"""


@pytest.fixture
def docker_cli(api_socket: Path, tmp_path: Path) -> Docker:
    """The docker CLI bound to this test's server, with the classic builder."""
    run = docker_for(api_socket, tmp_path / "docker-config")
    run.env["DOCKER_BUILDKIT"] = "0"  # type: ignore[attr-defined]
    return run


@pytest.fixture
def client(api_socket: Path) -> Iterator[docker.DockerClient]:
    """A docker-py client of this test's server."""
    c = docker.DockerClient(base_url=f"unix://{api_socket}", version="1.41", timeout=120)
    yield c
    c.close()


def _context(tmp_path: Path, dockerfile: str = DOCKERFILE, name: str = "Dockerfile") -> Path:
    context = tmp_path / "context"
    context.mkdir(parents=True)
    (context / name).write_text(dockerfile)
    (context / "note.txt").write_text("a note\n")
    return context


# ---------------------------------------------------------------- build
def test_docker_build_tags_args_labels_target_and_cache(docker_cli: Docker, pn: Pinnace,
                                                       tmp_path: Path) -> None:
    context = _context(tmp_path, name="Other.dockerfile")
    built = docker_cli("build", "-t", "made:1", "-t", "made:2", "-f",
                       str(context / "Other.dockerfile"), "--build-arg", "GREETING=hi",
                       "--label", "origin=test", str(context))
    assert "building hi" in built.stdout  # RUN's output streamed
    assert "Step 7/7 : CMD" in built.stdout
    assert "Successfully tagged made:1" in built.stdout
    assert "Successfully tagged made:2" in built.stdout
    assert docker_cli("run", "--rm", "made:2").stdout == "hi\na note\n"
    labels = json.loads(docker_cli("image", "inspect", "--format", "{{json .Config.Labels}}",
                                   "made:1").stdout)
    assert labels == {"stage": "final", "origin": "test"}
    image_id = pn("image", "inspect", "--format", "{{.Id}}", "made:1").stdout.strip()
    # the same build again comes from the cache; --no-cache runs RUN again
    again = docker_cli("build", "-q", "-t", "made:1", "-f", str(context / "Other.dockerfile"),
                       "--build-arg", "GREETING=hi", "--label", "origin=test", str(context))
    assert again.stdout.strip() == image_id
    fresh = docker_cli("build", "--no-cache", "--target", "base", "-t", "made:base",
                       "-f", str(context / "Other.dockerfile"), str(context))
    assert "building default" in fresh.stdout and "Using cache" not in fresh.stdout
    assert docker_cli("run", "--rm", "made:base", "cat", "/greeting").stdout == "default\n"
    assert docker_cli("ps", "-aq").stdout == ""  # intermediate containers removed


def test_docker_build_failure_is_reported_in_the_stream(docker_cli: Docker, pn: Pinnace,
                                                        tmp_path: Path) -> None:
    context = _context(tmp_path, "FROM busybox\nRUN echo before; exit 7\n")
    failed = docker_cli("build", "-t", "broken", str(context), check=False)
    assert failed.returncode != 0
    assert "before" in failed.stdout
    assert "returned a non-zero code: 7" in failed.stderr
    assert "broken" not in pn("images", "--format", "{{.Repository}}").stdout
    assert pn("ps", "-aq").stdout == ""
    missing = _context(tmp_path / "x", "FROM nosuchimage\n")
    failed = docker_cli("build", str(missing), check=False)
    assert failed.returncode != 0 and "base image nosuchimage not found" in failed.stderr


def test_dockerpy_build(client: docker.DockerClient, tmp_path: Path) -> None:
    context = _context(tmp_path)
    image, lines = client.images.build(path=str(context), tag="pybuilt:1",
                                       buildargs={"GREETING": "py"}, labels={"k": "v"},
                                       rm=True, forcerm=True)
    assert "pybuilt:1" in image.tags
    assert image.labels == {"stage": "final", "k": "v"}
    assert any("building py" in line.get("stream", "") for line in lines)
    assert client.containers.run("pybuilt:1", remove=True) == b"py\na note\n"
    # a context sent as a gzipped tar from a file object
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        data = b"FROM busybox\nRUN echo gz > /gz\n"
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    buf.seek(0)
    image, _ = client.images.build(fileobj=buf, custom_context=True, encoding="gzip",
                                   tag="pygz")
    assert client.containers.run("pygz", ["cat", "/gz"], remove=True) == b"gz\n"
    with pytest.raises(BuildError) as failed:
        client.images.build(path=str(_context(tmp_path / "bad", "FROM busybox\nRUN false\n")))
    assert "returned a non-zero code: 1" in str(failed.value)


# ---------------------------------------------------------------- commit
def test_docker_commit_with_changes(docker_cli: Docker) -> None:
    docker_cli("run", "--name", "src", "busybox", "sh", "-c", "echo made > /made")
    image_id = docker_cli("commit", "-m", "a message", "-a", "Ann <ann@example.com>",
                          "-c", 'CMD ["cat", "/made"]', "-c", "ENV MODE=committed",
                          "src", "committed:1").stdout.strip()
    assert image_id.startswith("sha256:")
    assert docker_cli("run", "--rm", "committed:1").stdout == "made\n"
    shown = json.loads(docker_cli("image", "inspect", "committed:1").stdout)[0]
    assert shown["Author"] == "Ann <ann@example.com>"
    assert shown["Comment"] == "a message"
    assert "MODE=committed" in shown["Config"]["Env"]
    bad = docker_cli("commit", "-c", "RUN true", "src", "nope", check=False)
    assert bad.returncode != 0 and "unsupported instruction" in bad.stderr
    missing = docker_cli("commit", "nosuch", "nope", check=False)
    assert missing.returncode != 0 and "No such container" in missing.stderr


def test_dockerpy_commit_running_container(client: docker.DockerClient) -> None:
    container = client.containers.run("busybox", ["sh", "-c", "echo live > /live; sleep 300"],
                                      detach=True)
    try:
        image = container.commit("pycommit", "v1", message="from docker-py",
                                 conf={"Cmd": ["cat", "/live"], "Labels": {"via": "conf"}})
        assert "pycommit:v1" in image.tags
        assert image.labels == {"via": "conf"}
        assert client.containers.run("pycommit:v1", remove=True) == b"live\n"
        container.reload()
        assert container.status == "running"  # paused for the commit, then thawed
    finally:
        container.remove(force=True)


# ---------------------------------------------------------------- update
def test_docker_update_limits_and_restart_policy(docker_cli: Docker, pn: Pinnace) -> None:
    docker_cli("run", "-d", "--name", "lim", "busybox", "sleep", "300")
    docker_cli("update", "--memory", "64m", "--memory-swap", "128m", "--cpu-shares", "512",
               "--cpus", "0.5", "--pids-limit", "50", "--restart", "on-failure:3", "lim")
    host = json.loads(docker_cli("inspect", "--format", "{{json .HostConfig}}", "lim").stdout)
    assert host["Memory"] == 64 << 20
    assert host["NanoCpus"] == 500_000_000
    assert host["PidsLimit"] == 50
    assert host["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 3}
    cid = docker_cli("inspect", "--format", "{{.Id}}", "lim").stdout.strip()
    memory = "memory.limit_in_bytes" if cgroups.version() == "v1" else "memory.max"
    assert cgroup_file(cid, memory).read_text().strip() == str(64 << 20)  # in the running cgroup
    assert cgroup_file(cid, "pids.max").read_text().strip() == "50"
    assert pn("inspect", "--format", "{{.HostConfig.Memory}}", "lim").stdout.strip() == \
        str(64 << 20)
    bad = docker_cli("update", "--restart", "sometimes", "lim", check=False)
    assert bad.returncode != 0 and "sometimes" in bad.stderr
    refused = docker_cli("update", "--blkio-weight", "300", "lim", check=False)
    assert refused.returncode != 0 and "BlkioWeight" in refused.stderr
    docker_cli("rm", "-f", "lim")


# ---------------------------------------------------------------- import
def _rootfs_tar(path: Path) -> Path:
    """A tiny rootfs tar: busybox is not needed to read a file with the image's own sh."""
    with tarfile.open(path, "w") as tar:
        data = b"imported\n"
        info = tarfile.TarInfo("hello.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return path


def test_docker_import_from_stdin(docker_cli: Docker, pn: Pinnace, tmp_path: Path) -> None:
    tar = _rootfs_tar(tmp_path / "rootfs.tar")
    out = docker_cli("import", "-c", "ENV ORIGIN=import", "-c", 'CMD ["/hello.txt"]',
                     "-m", "imported here", str(tar), "imp:1").stdout.strip()
    assert out.startswith("sha256:")
    shown = json.loads(docker_cli("image", "inspect", "imp:1").stdout)[0]
    assert shown["Id"] == out
    assert "ORIGIN=import" in shown["Config"]["Env"]
    assert shown["Config"]["Cmd"] == ["/hello.txt"]
    assert pn("image", "inspect", "--format", "{{.Id}}", "imp:1").stdout.strip() == out
    history = json.loads(docker_cli("history", "--format", "{{json .}}", "--no-trunc",
                                    "imp:1").stdout.splitlines()[0])
    assert history["Comment"] == "imported here"
    bad = docker_cli("import", "-", "notatar", check=False, input="plain text, no tar\n")
    assert bad.returncode != 0 and bad.stderr.strip()
    assert "notatar" not in pn("images", "--format", "{{.Repository}}").stdout


def test_docker_import_from_a_loopback_url_only(docker_cli: Docker, pn: Pinnace,
                                                tmp_path: Path) -> None:
    _rootfs_tar(tmp_path / "rootfs.tar")

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, directory=str(tmp_path), **kwargs)  # type: ignore[arg-type]

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/rootfs.tar"
        image_id = docker_cli("import", url, "fromurl:1").stdout.strip()
        assert pn("image", "inspect", "--format", "{{.Id}}", "fromurl:1").stdout.strip() == \
            image_id
        gone = docker_cli("import", url.replace("rootfs.tar", "missing.tar"), "x",
                          check=False)
        assert gone.returncode != 0 and "File not found" in gone.stderr
    finally:
        server.shutdown()
        server.server_close()
    refused = docker_cli("import", "http://192.0.2.1/rootfs.tar", "far", check=False)
    assert refused.returncode != 0 and "loopback" in refused.stderr
