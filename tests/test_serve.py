"""``pinnace serve`` at the HTTP level: ping and versions, docker's error shape and 501s,
the socket's access, loopback-only TCP, many clients at once, wait's early headers,
and daemonless: containers outlive the server and are shared with the CLI."""

from __future__ import annotations

import grp
import http.client
import json
import os
import socket
import stat
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from conftest import Pinnace, serving


class UnixConnection(http.client.HTTPConnection):
    """HTTP over a unix socket."""

    def __init__(self, path: Path, timeout: float = 60) -> None:
        super().__init__("localhost", timeout=timeout)
        self.socket_path = str(path)

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.socket_path)


def call(path: Path, method: str, url: str, body: Any = None
         ) -> tuple[int, dict[str, str], bytes]:
    """One request; its status, headers and body."""
    conn = UnixConnection(path)
    try:
        data = json.dumps(body).encode() if body is not None else None
        conn.request(method, url, body=data,
                     headers={"Content-Type": "application/json"} if data else {})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def test_ping_head_and_get_with_the_api_version(api_socket: Path) -> None:
    status, headers, body = call(api_socket, "GET", "/_ping")
    assert (status, body) == (200, b"OK")
    assert headers["Api-Version"] == "1.41"
    status, headers, body = call(api_socket, "HEAD", "/_ping")
    assert (status, body, headers["Api-Version"]) == (200, b"", "1.41")


def test_versioned_and_unversioned_paths(api_socket: Path) -> None:
    plain = json.loads(call(api_socket, "GET", "/version")[2])
    assert json.loads(call(api_socket, "GET", "/v1.24/version")[2]) == plain
    assert plain["MinAPIVersion"] == "1.24"
    status, _, body = call(api_socket, "GET", "/v1.12/version")
    assert status == 400
    assert "too old" in json.loads(body)["message"]


def test_errors_in_dockers_shape_and_501_for_what_is_left_out(api_socket: Path) -> None:
    status, _, body = call(api_socket, "GET", "/containers/nosuch/json")
    assert status == 404
    assert "nosuch" in json.loads(body)["message"]
    for method, url in (("POST", "/session"), ("GET", "/services"), ("GET", "/plugins")):
        status, _, body = call(api_socket, method, f"/v1.41{url}")
        assert status == 501, url
        assert json.loads(body)["message"].startswith("pinnace serve does not implement")
    status, _, body = call(api_socket, "GET", "/swarm")  # docker's answer off a swarm
    assert status == 503 and json.loads(body)["message"] == "This node is not part of a swarm"
    status, _, body = call(api_socket, "POST", "/containers/create", {"Cmd": ["true"]})
    assert status == 400 and json.loads(body)["message"] == "config is missing the image"


def test_socket_is_root_only_by_default_and_given_to_the_configured_group(
        api_socket: Path, pn: Pinnace) -> None:
    st = os.stat(api_socket)
    assert stat.S_IMODE(st.st_mode) == 0o660
    assert (st.st_uid, st.st_gid) == (0, 0)
    group = next(g for g in grp.getgrall() if g.gr_gid != 0)
    shared = Pinnace(pn.root, env={"PINNACE_API_GROUP": group.gr_name})
    with serving(shared) as path:
        assert os.stat(path).st_gid == group.gr_gid
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o660


def test_tcp_only_on_loopback(pn: Pinnace, busybox: str, tmp_path: Path) -> None:
    refused = pn("serve", "--socket", str(tmp_path / "s.sock"), "--tcp", "0.0.0.0:2375",
                 check=False)
    assert refused.returncode == 125
    assert refused.stderr.strip().splitlines()[-1].startswith("Error: --tcp 0.0.0.0:2375: only")
    assert not (tmp_path / "s.sock").exists()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = pn.popen("serve", "--socket", str(tmp_path / "t.sock"), "--tcp",
                    f"127.0.0.1:{port}", stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                conn.request("GET", "/_ping")
                assert conn.getresponse().read() == b"OK"
                conn.close()
                break
            except ConnectionRefusedError:
                assert time.monotonic() < deadline and proc.poll() is None
                time.sleep(0.05)
    finally:
        proc.terminate()
        proc.wait(30)


def starters(root: Path) -> list[int]:
    """The PIDs of the monitor starters serving ``root`` (the servers' children; the
    monitors they fork have their command line too until they exec)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            args = (entry / "cmdline").read_bytes().split(b"\0")
            ours = b"pinnace.monitor.starter" in args and any(str(root).encode() in a
                                                             for a in args)
            if ours and b"serve" in Path(f"/proc/{parent(int(entry.name))}/cmdline").read_bytes():
                found.append(int(entry.name))
        except (OSError, ValueError):  # not a process, or gone
            continue
    return found


def parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def test_containers_outlive_the_server_and_are_shared_with_the_cli(
        pn: Pinnace, busybox: str) -> None:
    with serving(pn) as path:
        status, _, body = call(path, "POST", "/containers/create?name=kept", {
            "Image": "busybox", "Cmd": ["sh", "-c", "echo up; sleep 300"]})
        assert status == 201
        cid = json.loads(body)["Id"]
        assert call(path, "POST", f"/containers/{cid}/start")[0] == 204
        assert call(path, "POST", f"/containers/{cid}/start")[0] == 304
        [starter] = starters(pn.root)  # the server's threads have one process fork monitors
        pid = json.loads(call(path, "GET", f"/containers/{cid}/json")[2])["State"]["Pid"]
        assert parent(parent(pid)) != starter  # the monitor is not the starter's child
        pn("run", "-d", "--name", "from-cli", "busybox", "sleep", "300")
        listed = json.loads(call(path, "GET", "/containers/json")[2])
        assert sorted(c["Names"][0] for c in listed) == ["/from-cli", "/kept"]
        filtered = json.loads(call(path, "GET", '/containers/json?filters={"name":["kept"]}')[2])
        assert [c["Id"] for c in filtered] == [cid]
    # the server is gone, and its starter with it; the container runs on, and pinnace's
    # own CLI drives it
    deadline = time.monotonic() + 20
    while starters(pn.root) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert starters(pn.root) == []
    assert pn("inspect", "--format", "{{.State.Status}}", "kept").stdout.strip() == "running"
    assert pn("logs", "kept").stdout == "up\n"
    with serving(pn) as path:  # a new server finds it as it was
        state = json.loads(call(path, "GET", "/containers/kept/json")[2])["State"]
        assert state["Running"] is True
        assert call(path, "DELETE", "/containers/kept")[0] == 409  # running: needs force
        assert call(path, "DELETE", "/containers/kept?force=1")[0] == 204
    pn("rm", "-f", "from-cli")


def test_wait_sends_its_headers_at_once(api_socket: Path) -> None:
    cid = json.loads(call(api_socket, "POST", "/containers/create", {
        "Image": "busybox", "Cmd": ["sh", "-c", "sleep 2; exit 7"]})[2])["Id"]
    conn = UnixConnection(api_socket)
    began = time.monotonic()
    conn.request("POST", f"/containers/{cid}/wait?condition=next-exit")
    response = conn.getresponse()
    assert response.status == 200
    assert time.monotonic() - began < 1.5  # before the container even started
    call(api_socket, "POST", f"/containers/{cid}/start")
    assert json.loads(response.read()) == {"StatusCode": 7, "Error": None}
    assert time.monotonic() - began >= 2
    conn.close()


def test_a_long_stream_does_not_hold_up_other_clients(api_socket: Path) -> None:
    cid = json.loads(call(api_socket, "POST", "/containers/create", {
        "Image": "busybox", "Cmd": ["sh", "-c", "echo first; sleep 300"]})[2])["Id"]
    call(api_socket, "POST", f"/containers/{cid}/start")
    follower = UnixConnection(api_socket)
    follower.request("GET", f"/containers/{cid}/logs?follow=1&stdout=1&stderr=1")
    logs = follower.getresponse()
    assert logs.read(8 + len(b"first\n")) == b"\x01\0\0\0\0\0\0\x06first\n"
    events = UnixConnection(api_socket)
    events.request("GET", "/events")
    events_response = events.getresponse()
    replies: list[int] = []

    def ask() -> None:
        replies.append(call(api_socket, "GET", "/containers/json")[0])

    began = time.monotonic()
    askers = [threading.Thread(target=ask) for _ in range(8)]
    for t in askers:
        t.start()
    for t in askers:
        t.join(30)
    assert replies == [200] * 8
    assert time.monotonic() - began < 15
    call(api_socket, "POST", f"/containers/{cid}/kill")
    line = events_response.readline()  # the kill's die event reaches the events stream
    while b'"die"' not in line:
        line = events_response.readline()
    assert json.loads(line)["id"] == cid
    assert logs.read() == b""  # the follow ends with the container
    follower.close()
    events.close()
    call(api_socket, "DELETE", f"/containers/{cid}")


def test_many_concurrent_starts(api_socket: Path, pn: Pinnace) -> None:
    """Twenty clients create and start containers at once (the server's threads start
    their monitors without forking themselves)."""
    failures: list[str] = []

    def run_one(n: int) -> None:
        try:
            start_one(n)
        except Exception as err:  # a refused connection, a timeout
            failures.append(repr(err))

    def start_one(n: int) -> None:
        status, _, body = call(api_socket, "POST", f"/containers/create?name=c{n}", {
            "Image": "busybox", "Cmd": ["sleep", "300"]})
        if status != 201:
            failures.append(body.decode())
            return
        status, _, body = call(api_socket, "POST", f"/containers/c{n}/start")
        if status != 204:
            failures.append(body.decode())

    threads = [threading.Thread(target=run_one, args=(n,)) for n in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert failures == []
    assert not any(t.is_alive() for t in threads)
    running = json.loads(call(api_socket, "GET", "/containers/json?all=1")[2])
    assert [c["Status"] for c in running if c["State"] != "running"] == []
    assert sorted(c["Names"][0] for c in running) == sorted(f"/c{n}" for n in range(20))
    assert len(pn("ps", "-q").stdout.split()) == 20


def test_connections_leave_no_descriptors_behind(pn: Pinnace, busybox: str,
                                                  tmp_path: Path) -> None:
    """Each connection's state connection closes with it: a long-lived server does not
    run out of descriptors (nor pass select()'s 1024)."""
    path = tmp_path / "fd.sock"
    proc = pn.popen("serve", "--socket", str(path), stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while not path.exists():
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.05)
        call(path, "GET", "/containers/json")
        before = len(os.listdir(f"/proc/{proc.pid}/fd"))
        for _ in range(100):
            assert call(path, "GET", "/containers/json?all=1")[0] == 200
        time.sleep(0.5)  # the last connection's thread finishes
        assert len(os.listdir(f"/proc/{proc.pid}/fd")) <= before + 4
    finally:
        proc.terminate()
        proc.wait(30)
