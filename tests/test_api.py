"""The Python API, :class:`pinnace.client.Client`, used in this process on a test root:
containers (run, wait, logs, exec, attach, stop, remove), events, images (tag, push,
pull), volumes; what it makes is the CLI's too."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Pinnace

from pinnace.client import Client
from pinnace.errors import FailedPrecondition, InvalidConfig, NotFound
from pinnace.runtime.policy import parse_signal
from pinnace.runtime.watch import CLOSE_STDIN, FRAME, STDIN, frames
from pinnace.testing.registry import docker_registry


@pytest.fixture
def client(pn: Pinnace, busybox: str) -> Iterator[Client]:
    """A client of this test's root (with busybox)."""
    c = Client(root=pn.root)
    yield c
    for record in c.containers(all_=True):
        c.remove(record.id, force=True)


def test_run_wait_logs_inspect_remove(client: Client, pn: Pinnace) -> None:
    cid = client.run("busybox", ["sh", "-c", "echo out; echo err >&2; exit 3"], name="job")
    assert client.wait(cid) == 3
    assert [(e.stream, e.log) for e in client.logs("job")] == [("stdout", "out\n"),
                                                                ("stderr", "err\n")]
    assert [e.log for e in client.logs("job", tail=1)] == ["err\n"]
    details = client.inspect("job")
    assert (details["Id"], details["State"]["ExitCode"]) == (cid, 3)
    assert pn("logs", "job").stdout == "out\n"  # the CLI reads the same log
    assert [c.id for c in client.containers(all_=True)] == [cid]
    assert client.containers() == []
    assert client.remove("job") == cid
    with pytest.raises(NotFound):
        client.container("job")


def test_logs_follow_until_it_stops(client: Client) -> None:
    cid = client.run("busybox", ["sh", "-c", "for i in 1 2 3; do echo $i; sleep 0.1; done"])
    assert [e.log for e in client.logs(cid, follow=True)] == ["1\n", "2\n", "3\n"]
    assert client.wait(cid, "not-running") == 0


def test_options_are_run_s_and_checked(client: Client) -> None:
    with pytest.raises(InvalidConfig, match="unknown container options: colour"):
        client.create("busybox", ["true"], colour="red")
    with pytest.raises(InvalidConfig, match="conflicting options"):
        client.run("busybox", ["true"], auto_remove=True, restart="always")
    assert client.containers(all_=True) == []
    with pytest.raises(InvalidConfig, match="invalid wait condition"):
        client.wait("nothing-needed", "soon")


def test_auto_remove_and_the_removed_condition(client: Client) -> None:
    cid = client.run("busybox", ["sh", "-c", "exit 5"], auto_remove=True)
    assert client.wait(cid, "removed") == 5
    with pytest.raises(NotFound):
        client.container(cid)


def test_exec_run_and_exec_with_stdin(client: Client) -> None:
    cid = client.run("busybox", ["sleep", "300"])
    result = client.exec_run(cid, ["sh", "-c", "echo $A; echo e >&2; exit 4"], env=["A=b"])
    assert (result.exit_code, result.stdout, result.stderr) == (4, b"b\n", b"e\n")
    assert client.exec_run(cid, ["tty"], tty=True).stdout.startswith(b"/dev/pts/")
    process = client.exec_start(cid, ["sh", "-c", "read x; echo got $x"], stdin=True)
    assert process.streams.stdin is not None
    socket_free_write(process.streams.stdin, b"it\n")
    process.close_stdin()
    out: list[bytes] = []
    process.read(lambda _stream, data: out.append(data))
    assert (process.wait(), b"".join(out)) == (0, b"got it\n")
    client.stop(cid, timeout=1)
    with pytest.raises(FailedPrecondition, match="exec needs a running container"):
        client.exec_run(cid, ["true"])


def socket_free_write(fd: int, data: bytes) -> None:
    import os

    while data:
        data = data[os.write(fd, data):]


def test_attach_to_a_running_container(client: Client) -> None:
    cid = client.run("busybox", ["sh", "-c", "cat; echo end"], interactive=True)
    conn: socket.socket = client.attach(cid)
    conn.sendall(FRAME.pack(STDIN, 6) + b"hello\n" + FRAME.pack(CLOSE_STDIN, 0))
    data = b""
    while chunk := conn.recv(4096):
        data += chunk
    conn.close()
    complete, rest = frames(data)
    assert rest == b""
    assert b"".join(payload for _kind, payload in complete) == b"hello\nend\n"
    assert client.wait(cid) == 0


def test_stop_kill_restart_pause_and_events(client: Client) -> None:
    import time

    since = time.time() - 1
    cid = client.run("busybox", ["sleep", "300"], name="sleeper")
    client.pause(cid)
    assert client.container(cid).status == "paused"
    client.unpause(cid)
    client.kill(cid, parse_signal("KILL"))
    assert client.wait(cid) == 137
    client.restart(cid, timeout=1)
    assert client.container(cid).status == "running"
    client.stop(cid, timeout=1)
    client.rename(cid, "renamed")
    actions = [e.action for e in client.events(since=since) if e.actor == cid]
    assert actions[:5] == ["create", "start", "pause", "unpause", "die"]
    assert actions[-1] == "rename"
    assert client.prune() == [cid]


def test_images_tag_push_pull_remove(client: Client, tmp_path: Path) -> None:
    client.tag("busybox", "copy:1")
    assert sorted(t for i in client.images() for t in i.tags) == ["busybox:latest", "copy:1"]
    assert client.image_inspect("copy:1")["Id"] == client.image("busybox").id
    with docker_registry(tmp_path / "registry") as registry:
        target = f"{registry.host}/lib/copy:1"
        digest = client.push("copy:1", target)
        assert digest.startswith("sha256:")
        client.remove_image("copy:1")
        image_id = client.pull(target)
        assert client.image(target).id == image_id
    assert [r.untagged for r in [client.remove_image(target)]] == [[target]]
    with pytest.raises(NotFound):
        client.image("copy:1")
    assert client.history("busybox")[0]["Id"] == client.image("busybox").id


def test_volumes(client: Client) -> None:
    made = client.volume_create("data", labels={"k": "v"})
    assert made.name == "data"
    assert client.volume_inspect("data")["Labels"] == {"k": "v"}
    cid = client.run("busybox", ["sh", "-c", "echo x > /d/f"], volumes=["data:/d"])
    assert client.wait(cid) == 0
    with pytest.raises(FailedPrecondition):
        client.volume_remove("data")
    client.remove(cid)
    assert client.volume_remove("data") == "data"
    assert client.volumes() == []


def test_copy_stat_and_export(client: Client, tmp_path: Path) -> None:
    import io
    import tarfile

    cid = client.run("busybox", ["sleep", "300"])
    payload = io.BytesIO()
    with tarfile.open(fileobj=payload, mode="w") as tar:
        info = tarfile.TarInfo("note.txt")
        info.size = 4
        tar.addfile(info, io.BytesIO(b"note"))
    payload.seek(0)
    client.copy_to(cid, "/tmp", payload)
    found = client.stat(cid, "/tmp/note.txt")
    assert (found.name, found.size) == ("note.txt", 4)
    with pytest.raises(NotFound):
        client.stat(cid, "/tmp/none")
    out = io.BytesIO()
    client.copy_from(cid, "/tmp/note.txt", out)
    out.seek(0)
    with tarfile.open(fileobj=out) as tar:
        assert tar.extractfile("note.txt").read() == b"note"  # type: ignore[union-attr]
    with open(tmp_path / "root.tar", "wb") as f:
        client.export(cid, f.fileno())
    with tarfile.open(tmp_path / "root.tar") as tar:
        assert "bin/busybox" in tar.getnames()
    assert json.dumps(client.inspect(cid)["State"]["Running"]) == "true"
