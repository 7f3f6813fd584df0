"""Debian's docker CLI (``/usr/bin/docker`` from docker.io) against ``pinnace serve`` on a
private socket: version, info, run (--rm, -d, -it under a pty), ps, logs -f, exec -it,
stop, rm, images, pull, push, tag, rmi, inspect, cp, network and volume commands."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import Pinnace

from pinnace.testing.registry import RegistryServer, docker_registry

DOCKER = "/usr/bin/docker"
Docker = Callable[..., subprocess.CompletedProcess[str]]


def docker_for(socket: Path, config_dir: Path) -> Docker:
    """Run the docker CLI against ``socket`` (its config kept in ``config_dir``)."""
    env = {**os.environ, "DOCKER_HOST": f"unix://{socket}", "DOCKER_CONFIG": str(config_dir)}

    def run(*args: str, check: bool = True, input: str | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([DOCKER, *args], capture_output=True, text=True, env=env,
                              input=input, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} exited {proc.returncode}\n"
                                 f"stdout: {proc.stdout}\nstderr: {proc.stderr}")
        return proc

    run.env = env  # type: ignore[attr-defined]
    return run


@pytest.fixture
def docker(api_socket: Path, tmp_path: Path) -> Docker:
    """The docker CLI bound to this test's server."""
    return docker_for(api_socket, tmp_path / "docker-config")


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    """A plain registry on loopback."""
    with docker_registry(tmp_path_factory.mktemp("registry")) as reg:
        yield reg


def under_pty(argv: list[str], env: dict[str, str], send: bytes = b"",
              timeout: float = 60) -> tuple[int, bytes]:
    """Run ``argv`` with a pty as its terminal, type ``send``; its exit code and output."""
    pid, master = pty.fork()
    if pid == 0:
        os.execve(argv[0], argv, env)
    if send:
        time.sleep(1.0)  # let it put the terminal in raw mode and attach
        os.write(master, send)
    out = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.5)
        if ready:
            try:
                data = os.read(master, 4096)
            except OSError:
                break
            if not data:
                break
            out += data
        elif os.waitpid(pid, os.WNOHANG)[0]:
            pid = 0
            break
    if pid:
        _, status = os.waitpid(pid, 0)
    else:
        status = 0
    os.close(master)
    return os.waitstatus_to_exitcode(status) if pid else -1, out


def test_version_and_info(docker: Docker) -> None:
    version = json.loads(docker("version", "--format", "{{json .Server}}").stdout)
    assert version["ApiVersion"] == "1.41"
    assert version["MinAPIVersion"] == "1.24"
    assert version["Platform"]["Name"] == "pinnace"
    info = json.loads(docker("info", "--format", "{{json .}}").stdout)
    assert info["Images"] == 1
    assert info["LoggingDriver"] == "json-file"


def test_run_rm_prints_output_and_exit_code(docker: Docker, pn: Pinnace) -> None:
    proc = docker("run", "--rm", "busybox", "sh", "-c", "echo out; echo err >&2; exit 3",
                  check=False)
    assert proc.returncode == 3
    assert proc.stdout == "out\n"
    assert proc.stderr == "err\n"
    assert pn("ps", "-aq").stdout == ""  # removed


def test_run_d_ps_logs_follow_exec_stop_rm(docker: Docker, pn: Pinnace) -> None:
    cid = docker("run", "-d", "--name", "web", "busybox", "sh", "-c",
                 "trap 'echo bye; exit 0' TERM; echo hello; while true; do sleep 0.1; done"
                 ).stdout.strip()
    assert len(cid) == 64
    ps = docker("ps", "--format", "{{.ID}} {{.Names}} {{.Status}}").stdout.split("\n")[0]
    assert ps.startswith(f"{cid[:12]} web Up")
    assert pn("ps", "-q").stdout.strip() == cid[:12]  # the CLI sees the same container
    follower = subprocess.Popen([DOCKER, "logs", "-f", "web"], stdout=subprocess.PIPE,
                                text=True, env=docker.env)  # type: ignore[attr-defined]
    exec_ = docker("exec", "web", "sh", "-c", "echo in-exec; exit 4", check=False)
    assert (exec_.returncode, exec_.stdout) == (4, "in-exec\n")
    assert docker("inspect", "--format", "{{.State.Status}} {{.Name}}", "web"
                  ).stdout.strip() == "running /web"
    assert docker("stop", "web").stdout.strip() == "web"
    out, _ = follower.communicate(timeout=30)
    assert out == "hello\nbye\n"  # -f ended when the container did
    assert docker("ps", "-a", "--format", "{{.Status}}").stdout.startswith("Exited (0)")
    docker("rm", "web")
    assert docker("ps", "-aq").stdout == ""


def test_run_rm_it_under_a_pty(docker: Docker) -> None:
    code, out = under_pty([DOCKER, "run", "--rm", "-it", "busybox", "sh", "-c",
                           "tty; read line; echo got:$line; exit 6"],
                          docker.env, send=b"typed\r")  # type: ignore[attr-defined]
    assert code == 6
    assert b"/dev/pts/" in out
    assert b"got:typed" in out


def test_exec_it_under_a_pty(docker: Docker) -> None:
    docker("run", "-d", "--name", "box", "busybox", "sleep", "300")
    code, out = under_pty([DOCKER, "exec", "-it", "box", "sh"], docker.env,  # type: ignore[attr-defined]
                          send=b"echo from-$((6*7))\rexit 5\r")
    assert code == 5
    assert b"from-42" in out
    docker("rm", "-f", "box")


def test_images_tag_rmi_inspect(docker: Docker) -> None:
    assert docker("images", "--format", "{{.Repository}}:{{.Tag}}").stdout == "busybox:latest\n"
    docker("tag", "busybox", "mybox:1")
    tags = docker("images", "--format", "{{.Repository}}:{{.Tag}}").stdout.split()
    assert sorted(tags) == ["busybox:latest", "mybox:1"]
    assert docker("image", "inspect", "--format", "{{index .RepoTags 0}}", "mybox:1"
                  ).stdout.strip() in ("busybox:latest", "mybox:1")
    assert "Untagged: mybox:1" in docker("rmi", "mybox:1").stdout
    missing = docker("rmi", "nosuch:1", check=False)
    assert missing.returncode != 0 and "No such image" in missing.stderr


def test_push_pull_through_a_registry(docker: Docker, registry: RegistryServer) -> None:
    target = f"{registry.host}/lib/bb:1"
    docker("tag", "busybox", target)
    pushed = docker("push", target)
    assert "digest: sha256:" in pushed.stdout
    docker("rmi", target)
    pulled = docker("pull", target)
    assert f"Downloaded newer image for {target}" in pulled.stdout
    assert target in docker("images", "--format", "{{.Repository}}:{{.Tag}}").stdout
    failed = docker("pull", f"{registry.host}/lib/nothing:1", check=False)
    assert failed.returncode != 0 and failed.stderr.strip()


def test_cp_both_ways(docker: Docker, tmp_path: Path) -> None:
    docker("run", "-d", "--name", "files", "busybox", "sleep", "300")
    (tmp_path / "in.txt").write_text("to the container\n")
    docker("cp", str(tmp_path / "in.txt"), "files:/tmp/")
    assert docker("exec", "files", "cat", "/tmp/in.txt").stdout == "to the container\n"
    docker("exec", "files", "sh", "-c", "mkdir /out && echo back > /out/b.txt")
    docker("cp", "files:/out", str(tmp_path / "copied"))
    assert (tmp_path / "copied" / "b.txt").read_text() == "back\n"
    missing = docker("cp", "files:/nonexistent", str(tmp_path / "x"), check=False)
    assert missing.returncode != 0
    docker("rm", "-f", "files")


def test_volume_commands(docker: Docker) -> None:
    assert docker("volume", "create", "data").stdout.strip() == "data"
    assert docker("volume", "ls", "--format", "{{.Name}}").stdout.split() == ["data"]
    docker("run", "--rm", "-v", "data:/data", "busybox", "sh", "-c", "echo kept > /data/f")
    assert docker("run", "--rm", "-v", "data:/data", "busybox", "cat", "/data/f"
                  ).stdout == "kept\n"
    info = json.loads(docker("volume", "inspect", "data").stdout)
    assert info[0]["Name"] == "data" and info[0]["Driver"] == "local"
    docker("volume", "rm", "data")
    assert docker("volume", "ls", "-q").stdout == ""


def test_network_commands(api_socket_ns: Path, tmp_path: Path) -> None:
    docker = docker_for(api_socket_ns, tmp_path / "docker-config")
    net_id = docker("network", "create", "backend").stdout.strip()
    assert net_id
    assert "backend" in docker("network", "ls", "--format", "{{.Name}}").stdout.split()
    docker("run", "-d", "--name", "srv", "--network", "backend", "busybox", "sleep", "300")
    inspected = json.loads(docker("network", "inspect", "backend").stdout)[0]
    assert inspected["Name"] == "backend" and inspected["Driver"] == "bridge"
    address = docker("inspect", "--format",
                     "{{.NetworkSettings.Networks.backend.IPAddress}}", "srv").stdout.strip()
    assert address.count(".") == 3
    ping = docker("run", "--rm", "--network", "backend", "busybox", "ping", "-c", "1",
                  "-W", "5", address)
    assert "1 packets received" in ping.stdout
    refused = docker("network", "rm", "backend", check=False)
    assert refused.returncode != 0  # in use
    docker("rm", "-f", "srv")
    docker("network", "rm", "backend")
    assert "backend" not in docker("network", "ls", "--format", "{{.Name}}").stdout.split()
