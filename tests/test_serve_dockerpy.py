"""docker-py (the ``docker`` package from PyPI) against ``pinnace serve`` on a private socket:
the high-level client (containers, images, networks, volumes) and the low-level
``APIClient`` (attach with stdin, exec with demux)."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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


def test_exec_output_framed_as_the_start_request_asks(client: docker.DockerClient) -> None:
    """A terminal's exec started without ``tty`` comes in frames, all of it stdout (docker
    frames by the start request, not by the exec)."""
    api = client.api
    box = client.containers.run("busybox", ["sleep", "300"], detach=True)
    exec_id = api.exec_create(box.id, ["sh", "-c", "echo out; echo err >&2"], tty=True)["Id"]
    assert api.exec_start(exec_id, demux=True) == (b"out\r\nerr\r\n", None)
    raw_id = api.exec_create(box.id, ["echo", "raw"], tty=True)["Id"]
    assert api.exec_start(raw_id, tty=True) == b"raw\r\n"
    box.remove(force=True)


def _detached(sock: socket.socket, keys: bytes) -> bool:
    """Type ``keys`` on a hijacked connection; whether the server then closed it."""
    sock.sendall(keys)
    sock.settimeout(30)
    try:
        while sock.recv(4096):  # a terminal's echo, until the end
            pass
    except TimeoutError:
        return False
    return True


def test_detach_keys_end_the_connection_and_leave_the_process(
        client: docker.DockerClient) -> None:
    api = client.api
    cid = api.create_container("busybox", "cat", stdin_open=True, tty=True)["Id"]
    api.start(cid)
    sock = api.attach_socket(cid, params={"stdin": 1, "stream": 1, "detachKeys": "ctrl-x"})
    assert _detached(sock._sock, b"typed\x18")
    sock.close()
    exec_id = api.exec_create(cid, "cat", stdin=True, tty=True)["Id"]
    sock = api.exec_start(exec_id, tty=True, socket=True)
    assert _detached(sock._sock, b"\x10\x11")  # the default: ctrl-p, ctrl-q
    sock.close()
    assert api.exec_inspect(exec_id)["Running"] is True
    assert api.inspect_container(cid)["State"]["Running"] is True
    api.remove_container(cid, force=True)


def test_sigkill_answers_once_the_container_stopped(client: docker.DockerClient) -> None:
    box = client.containers.run("busybox", ["sleep", "300"], detach=True)
    box.kill()
    state = client.api.inspect_container(box.id)["State"]
    assert (state["Running"], state["ExitCode"]) == (False, 137)
    box.remove()


def test_inspect_lists_mounts_and_host_config(client: docker.DockerClient,
                                              tmp_path: Path) -> None:
    api = client.api
    host = api.create_host_config(
        binds={str(tmp_path): {"bind": "/data", "ro": True}}, tmpfs={"/scratch": "size=3M"},
        mounts=[docker.types.Mount("/vol", "named", type="volume")])
    cid = api.create_container("busybox", "true", host_config=host)["Id"]
    details = api.inspect_container(cid)
    mounts = {m["Destination"]: m for m in details["Mounts"]}
    assert set(mounts) == {"/data", "/scratch", "/vol"}
    assert (mounts["/data"]["Source"], mounts["/data"]["RW"],
            mounts["/data"]["Propagation"]) == (str(tmp_path), False, "rprivate")
    assert (mounts["/vol"]["Type"], mounts["/vol"]["Name"], mounts["/vol"]["RW"]) == \
        ("volume", "named", True)
    assert details["HostConfig"]["Binds"] == [f"{tmp_path}:/data:ro"]
    assert details["HostConfig"]["Tmpfs"] == {"/scratch": "size=3M"}
    assert details["HostConfig"]["CgroupnsMode"] == "private"
    assert details["HostConfig"]["MemorySwappiness"] is None
    api.remove_container(cid, v=True)
    client.volumes.get("named").remove()


def test_log_config_as_docker_takes_it(client: docker.DockerClient) -> None:
    api = client.api

    def created(config: dict[str, str] | None) -> dict[str, Any]:
        log = docker.types.LogConfig(type="json-file", config=config)
        cid = api.create_container("busybox", "true",
                                   host_config=api.create_host_config(log_config=log))["Id"]
        shown = api.inspect_container(cid)["HostConfig"]["LogConfig"]
        api.remove_container(cid)
        return shown

    assert created({"max-file": "3"}) == {"Type": "json-file", "Config": {"max-file": "3"}}
    assert created(None) == {"Type": "json-file", "Config": {}}
    with pytest.raises(APIError) as refused:
        api.create_container("busybox", "true", host_config=api.create_host_config(
            log_config=docker.types.LogConfig(type="syslog")))
    assert refused.value.explanation == "logger: no log driver named 'syslog' is registered"


def test_create_takes_process_and_health_fields(client: docker.DockerClient) -> None:
    api = client.api
    cid = api.create_container(
        "busybox", ["sh", "-c", "id -G; sleep 300"], stop_signal="SIGINT", stop_timeout=25,
        healthcheck={"test": ["CMD", "true"], "interval": 200_000_000, "retries": 1},
        host_config=api.create_host_config(init=True, group_add=[1000], pid_mode="host",
                                           uts_mode="host"))["Id"]
    details = api.inspect_container(cid)
    host = details["HostConfig"]
    assert (host["Init"], host["PidMode"], host["UTSMode"]) == (True, "host", "host")
    assert (details["Config"]["StopSignal"], details["Config"]["StopTimeout"]) == \
        ("SIGINT", 25)
    assert details["Config"]["Healthcheck"]["Test"] == ["CMD-SHELL", "true"]
    api.start(cid)
    deadline = time.monotonic() + 30
    while api.inspect_container(cid)["State"]["Health"]["Status"] != "healthy":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert b"1000" in api.logs(cid).split()
    api.remove_container(cid, force=True)


def test_networks_as_docker_shows_them(api_socket_ns: Path) -> None:
    client = docker.DockerClient(base_url=f"unix://{api_socket_ns}", version="1.41")
    network = client.networks.create("labelled", labels={"team": "a"})
    assert network.attrs["Labels"] == {"team": "a"}
    assert network.attrs["IPAM"]["Driver"] == "default"
    assert [n.name for n in client.networks.list(filters={"label": "team=a"})] == ["labelled"]
    box = client.containers.run("busybox", "true", network="labelled", detach=True)
    box.wait()
    box.reload()  # stopped: its network is shown, without an address
    endpoint = box.attrs["NetworkSettings"]["Networks"]["labelled"]
    assert (endpoint["NetworkID"], endpoint["IPAddress"]) == (network.id, "")
    assert {"Aliases", "IPAMConfig", "Links", "DriverOpts"} <= set(endpoint)
    listed = client.api.containers(all=True)[0]["NetworkSettings"]["Networks"]
    assert list(listed) == ["labelled"]
    box.remove()
    network.remove()
    client.close()


def test_disk_usage_volume_prune_and_load_errors(client: docker.DockerClient) -> None:
    named = client.volumes.create("unused")
    usage = client.df()
    assert usage["LayersSize"] > 0
    assert [i["RepoTags"] for i in usage["Images"]] == [["busybox:latest"]]
    assert [(v["Name"], v["UsageData"]["RefCount"]) for v in usage["Volumes"]] == \
        [("unused", 0)]
    assert client.volumes.prune()["VolumesDeleted"] == [named.name]  # API 1.41: named too
    with pytest.raises(docker.errors.ImageLoadError):  # the error comes in the stream
        client.images.load(b"not an archive")


def test_attach_without_stream_gets_the_logs_and_prune_counts_space(
        client: docker.DockerClient) -> None:
    """The past output sent right after a hijack's headers reaches a client that reads
    the headers through a buffer; a prune reports what the snapshots held."""
    api = client.api
    cid = api.create_container("busybox", ["sh", "-c", "echo hello; echo data > /f"])["Id"]
    api.start(cid)
    api.wait(cid)
    for _ in range(5):
        assert api.attach(cid, stream=False, logs=True) == b"hello\n"
    pruned = api.prune_containers()
    assert pruned["ContainersDeleted"] == [cid]
    assert pruned["SpaceReclaimed"] > 0


def test_config_volumes_and_archives_in_them(client: docker.DockerClient) -> None:
    """``Config.Volumes`` makes anonymous volumes; archives go into and come out of the
    volume mounted at the path, as docker's ``cp`` does."""
    import io
    import tarfile

    api = client.api
    cid = api.create_container("busybox", "cat /vol1/in.txt", volumes=["/vol1"])["Id"]
    (mount,) = api.inspect_container(cid)["Mounts"]
    assert (mount["Type"], mount["Destination"]) == ("volume", "/vol1")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        entry = tarfile.TarInfo("in.txt")
        entry.size = 5
        tar.addfile(entry, io.BytesIO(b"given"))
    assert api.put_archive(cid, "/vol1", buf.getvalue()) is True
    api.start(cid)
    api.wait(cid)
    assert api.logs(cid) == b"given"
    stream, stat = api.get_archive(cid, "/vol1/in.txt")
    assert (stat["name"], stat["size"]) == ("in.txt", 5)
    with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
        assert tar.extractfile("in.txt").read() == b"given"  # type: ignore[union-attr]
    api.remove_container(cid, v=True)
    assert client.volumes.list() == []
