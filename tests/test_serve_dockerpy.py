"""docker-py (the ``docker`` package from PyPI) against ``pinnace serve`` on a private socket:
the high-level client (containers, images, networks, volumes) and the low-level
``APIClient`` (attach with stdin, exec with demux)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
from docker.errors import APIError, NotFound

from pinnace.testing.registry import RegistryServer, docker_registry


@pytest.fixture
def client(api_socket: Path) -> Iterator[docker.DockerClient]:
    """A docker-py client of this test's server."""
    c = docker.DockerClient(base_url=f"unix://{api_socket}", version="1.41", timeout=60)
    yield c
    c.close()


def test_ping_version_info(client: docker.DockerClient) -> None:
    assert client.ping() is True
    assert client.version()["ApiVersion"] == "1.41"
    assert client.info()["Images"] == 1


def test_run_detached_stream_logs_and_wait(client: docker.DockerClient) -> None:
    container = client.containers.run(
        "busybox", ["sh", "-c", "for i in 1 2 3; do echo line$i; sleep 0.2; done; "
                                "echo oops >&2; exit 4"], detach=True, name="counter")
    assert container.name == "counter"
    streamed = b"".join(container.logs(stream=True, follow=True))
    assert streamed == b"line1\nline2\nline3\noops\n"
    assert container.wait() == {"StatusCode": 4, "Error": None}
    assert container.logs(stdout=True, stderr=False) == b"line1\nline2\nline3\n"
    container.reload()
    assert container.status == "exited"
    assert [c.name for c in client.containers.list(all=True)] == ["counter"]
    assert client.containers.list() == []
    container.remove()
    with pytest.raises(NotFound):
        client.containers.get("counter")


def test_run_attached_returns_output(client: docker.DockerClient) -> None:
    assert client.containers.run("busybox", ["echo", "direct"], remove=True) == b"direct\n"
    assert client.containers.list(all=True) == []


def test_exec_run_with_and_without_demux(client: docker.DockerClient) -> None:
    box = client.containers.run("busybox", ["sleep", "300"], detach=True)
    mixed = box.exec_run(["sh", "-c", "echo out; echo err >&2; exit 2"])
    assert mixed.exit_code == 2
    assert sorted(mixed.output.split()) == [b"err", b"out"]
    split = box.exec_run(["sh", "-c", "echo out; echo err >&2"], demux=True)
    assert (split.exit_code, split.output) == (0, (b"out\n", b"err\n"))
    assert box.exec_run(["pwd"], workdir="/tmp").output == b"/tmp\n"
    assert box.exec_run(["sh", "-c", "echo $X"], environment=["X=set"]).output == b"set\n"
    box.remove(force=True)


def test_images_pull_tag_remove(client: docker.DockerClient, tmp_path: Path) -> None:
    with docker_registry(tmp_path / "registry") as registry:
        _push_busybox(client, registry)
        image = client.images.pull(f"{registry.host}/lib/bb", tag="1")
        assert f"{registry.host}/lib/bb:1" in image.tags
        with pytest.raises(APIError):
            client.images.pull(f"{registry.host}/lib/missing", tag="1")
    assert image.tag("again", "2") is True
    assert "again:2" in client.images.get("again:2").tags
    client.images.remove("again:2")
    with pytest.raises(docker.errors.ImageNotFound):
        client.images.get("again:2")


def _push_busybox(client: docker.DockerClient, registry: RegistryServer) -> None:
    target = f"{registry.host}/lib/bb"
    client.images.get("busybox").tag(target, "1")
    lines = list(client.images.push(target, tag="1", stream=True, decode=True))
    assert any("aux" in line and line["aux"]["Digest"].startswith("sha256:") for line in lines)
    client.images.remove(f"{target}:1")


def test_volumes_create_use_remove(client: docker.DockerClient) -> None:
    volume = client.volumes.create("store", labels={"team": "a"})
    assert volume.name == "store"
    assert client.volumes.get("store").attrs["Labels"] == {"team": "a"}
    out = client.containers.run("busybox", ["sh", "-c", "echo x > /v/f; cat /v/f"],
                                volumes={"store": {"bind": "/v", "mode": "rw"}}, remove=True)
    assert out == b"x\n"
    assert [v.name for v in client.volumes.list(filters={"label": "team=a"})] == ["store"]
    volume.remove()
    assert client.volumes.list() == []


def test_networks_create_connect_remove(api_socket_ns: Path) -> None:
    client = docker.DockerClient(base_url=f"unix://{api_socket_ns}", version="1.41")
    network = client.networks.create("appnet", driver="bridge")
    assert client.networks.get(network.id).name == "appnet"
    box = client.containers.run("busybox", ["sleep", "300"], detach=True, network="appnet")
    network.reload()
    assert list(network.attrs["Containers"]) == [box.id]
    box.remove(force=True)
    network.remove()
    assert "appnet" not in [n.name for n in client.networks.list()]
    client.close()


def test_api_client_attach_with_stdin_half_close(client: docker.DockerClient) -> None:
    api = client.api
    cid = api.create_container("busybox", ["sh", "-c", "cat; echo done"], stdin_open=True)["Id"]
    sock = api.attach_socket(cid, params={"stdin": 1, "stream": 1, "stdout": 1, "stderr": 1})
    api.start(cid)
    raw = sock._sock
    raw.sendall(b"hello stdin\n")
    raw.shutdown(socket.SHUT_WR)  # the container's stdin closes: cat ends
    data = b""
    while chunk := raw.recv(4096):
        data += chunk
    assert demux(data) == {1: b"hello stdin\ndone\n"}
    assert api.wait(cid)["StatusCode"] == 0
    api.remove_container(cid)


def demux(data: bytes) -> dict[int, bytes]:
    """docker's multiplexed frames (8-byte headers: stream, 0, 0, 0, size) by stream."""
    out: dict[int, bytes] = {}
    while data:
        assert data[1:4] == b"\0\0\0"
        size = int.from_bytes(data[4:8], "big")
        out[data[0]] = out.get(data[0], b"") + data[8:8 + size]
        data = data[8 + size:]
    return out


def test_api_client_exec_demux_and_inspect(client: docker.DockerClient) -> None:
    api = client.api
    box = client.containers.run("busybox", ["sleep", "300"], detach=True)
    exec_id = api.exec_create(box.id, ["sh", "-c", "echo a; echo b >&2; exit 9"])["Id"]
    assert api.exec_start(exec_id, demux=True) == (b"a\n", b"b\n")
    details = api.exec_inspect(exec_id)
    assert (details["ExitCode"], details["Running"]) == (9, False)
    tty_id = api.exec_create(box.id, ["tty"], tty=True)["Id"]
    assert api.exec_start(tty_id, tty=True).startswith(b"/dev/pts/")  # raw, no frames
    box.remove(force=True)
