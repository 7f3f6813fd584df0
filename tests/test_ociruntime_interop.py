"""pinnace-runtime under the real callers from Debian: podman (through conmon), a private
containerd 1.6 (``ctr run --runc-binary``), and a private dockerd (``--add-runtime``, then
swarm mode on loopback with pinnace-runtime as the default runtime). Each daemon has its
own config, root, state and socket under a temporary directory; dockerd runs in a
network namespace of its own, without iptables or a bridge."""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

RUNTIME = str(Path(sys.executable).parent / "pinnace-runtime")
LIMITS = ("--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024")
"""podman's default limits are above what this host lets even root raise to."""

Run = Callable[..., subprocess.CompletedProcess[str]]


def runner(argv: list[str], what: str) -> Run:
    def run(*args: str, check: bool = True,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            proc = subprocess.run([*argv, *args], stdout=out, stderr=err, timeout=timeout,
                                  check=False)
            out.seek(0)
            err.seek(0)
            done = subprocess.CompletedProcess(proc.args, proc.returncode,
                                               out.read().decode(), err.read().decode())
        if check and done.returncode != 0:
            raise AssertionError(f"{what} {' '.join(args)} exited {done.returncode}: "
                                 f"{done.stderr.strip()}")
        return done
    return run


def wait_for(path: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} did not appear")
        time.sleep(0.05)


def unmount_under(directory: str) -> None:
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    for point in sorted((p for p in points if p.startswith(directory + "/")), reverse=True):
        subprocess.run(["umount", "-l", point], check=False)


def stop_daemon(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.1)


# ---------------------------------------------------------------- podman


@pytest.fixture
def podman_argv(tmp_path: Path, busybox_tar: Path) -> Iterator[list[str]]:
    """podman with a private store, cgroupfs and pinnace-runtime; the image ``bb`` imported."""
    runroot = tempfile.mkdtemp(prefix="pd-")  # podman wants a runroot under 50 characters
    argv = ["podman", "--root", str(tmp_path / "root"), "--runroot", runroot,
            "--storage-driver", "vfs", "--cgroup-manager", "cgroupfs",
            "--runtime", RUNTIME, "--events-backend", "file", "--tmpdir", str(tmp_path / "tmp")]
    run = runner(argv, "podman")
    run("import", str(busybox_tar), "bb")
    yield argv
    run("rm", "--all", "--force", check=False)
    shutil.rmtree(runroot, ignore_errors=True)


@pytest.fixture
def podman(podman_argv: list[str]) -> Run:
    return runner(podman_argv, "podman")


def test_podman_run_exec_logs_stop_rm(podman: Run) -> None:
    out = podman("run", "--rm", "--network=none", "--hostname", "pod-box", *LIMITS, "bb",
                 "sh", "-c", "echo hello; hostname").stdout
    assert out.split() == ["hello", "pod-box"]
    assert podman("run", "--rm", "--network=none", *LIMITS, "bb", "sh", "-c", "exit 3",
                  check=False).returncode == 3
    podman("run", "-d", "--name", "s1", "--network=none", *LIMITS, "bb", "sh", "-c",
           "echo started; trap 'exit 0' TERM; while :; do sleep 0.1; done")
    assert podman("exec", "s1", "sh", "-c", "echo exec $((6*7))").stdout.strip() == "exec 42"
    assert podman("logs", "s1").stdout.strip() == "started"
    assert podman("inspect", "--format", "{{.State.Status}}", "s1").stdout.strip() == "running"
    podman("stop", "-t", "10", "s1")
    assert podman("inspect", "--format", "{{.State.ExitCode}}", "s1").stdout.strip() == "0"
    podman("rm", "s1")
    assert "s1" not in podman("ps", "-a").stdout


def test_podman_run_it(podman_argv: list[str]) -> None:
    """-it: conmon's console socket receives the container's pty master."""
    import pty

    argv = [*podman_argv, "run", "--rm", "-it", "--network=none", *LIMITS, "bb", "sh", "-c",
            "tty; echo typed-$(head -c 3)"]
    pid, master = pty.fork()
    if pid == 0:
        os.execvp(argv[0], argv)
    output = b""
    deadline = time.monotonic() + 60
    sent = False
    while time.monotonic() < deadline:
        if not select.select([master], [], [], 1)[0]:
            continue
        try:
            chunk = os.read(master, 1024)
        except OSError:
            break
        if not chunk:
            break
        output += chunk
        if b"/dev/pts/0" in output and not sent:
            os.write(master, b"abc\n")
            sent = True
    if time.monotonic() >= deadline:
        os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    assert b"/dev/pts/0" in output and b"typed-abc" in output, output
    assert os.waitstatus_to_exitcode(status) == 0


# ---------------------------------------------------------------- containerd


@pytest.fixture
def containerd() -> Iterator[tuple[Run, Path]]:
    """A containerd of its own (config, root, state, sockets in a temporary directory)."""
    base = Path(tempfile.mkdtemp(prefix="ctd-"))
    config = base / "config.toml"
    config.write_text(f"""version = 2
root = "{base}/root"
state = "{base}/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "{base}/ctd.sock"
[ttrpc]
  address = "{base}/ctd.ttrpc.sock"
[debug]
  address = "{base}/debug.sock"
""")
    log = open(base / "containerd.log", "w")
    daemon = subprocess.Popen(["containerd", "--config", str(config)], stdout=log, stderr=log)
    try:
        wait_for(base / "ctd.sock")
        run = runner(["ctr", "--address", str(base / "ctd.sock"), "--namespace", "pinnace"],
                     "ctr")
        yield run, base
    finally:
        run = runner(["ctr", "--address", str(base / "ctd.sock"), "--namespace", "pinnace"],
                     "ctr")
        for task in run("task", "ls", "-q", check=False).stdout.split():
            run("task", "kill", "-s", "KILL", task, check=False)
            run("task", "delete", "--force", task, check=False)
        for ctr in run("container", "ls", "-q", check=False).stdout.split():
            run("container", "delete", ctr, check=False)
        daemon.terminate()
        daemon.wait(30)
        log.close()
        unmount_under(str(base))
        shutil.rmtree(base, ignore_errors=True)


def test_containerd_ctr_run_exec_kill_delete(containerd: tuple[Run, Path], rootfs: Path) -> None:
    ctr, base = containerd
    runtime = ("--runc-binary", RUNTIME, "--runc-root", str(base / "runtime"))
    out = ctr("run", "--rm", *runtime, "--rootfs", str(rootfs), "c1", "sh", "-c",
              "cat /greeting; echo pid $$").stdout
    assert out.split("\n")[:2] == ["hello from a host directory", "pid 1"]
    ctr("run", "-d", *runtime, "--rootfs", str(rootfs), "c2", "sleep", "60")
    tasks = ctr("task", "ls").stdout
    assert "c2" in tasks and "RUNNING" in tasks
    assert (base / "runtime" / "pinnace" / "c2" / "state.json").exists()
    assert ctr("task", "exec", "--exec-id", "e1", "c2", "sh", "-c",
               "echo in-c2 $(cat /proc/1/cmdline | tr '\\0' ' ')").stdout.strip() \
        == "in-c2 sleep 60"
    ctr("task", "kill", "-s", "KILL", "c2")
    deadline = time.monotonic() + 10
    while "STOPPED" not in ctr("task", "ls").stdout and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "STOPPED" in ctr("task", "ls").stdout
    ctr("task", "delete", "c2")
    ctr("container", "delete", "c2")
    assert not (base / "runtime" / "pinnace" / "c2").exists()


# ---------------------------------------------------------------- dockerd and swarm


@pytest.fixture
def dockerd(busybox_tar: Path) -> Iterator[Run]:
    """A dockerd of its own in a private network namespace (loopback only), with
    pinnace-runtime added as ``pinnace`` and made the default runtime."""
    base = Path(tempfile.mkdtemp(prefix="dk-"))
    (base / "daemon.json").write_text("{}")
    sock = base / "docker.sock"
    command = (f"ip link set lo up && exec dockerd --data-root {base}/data --exec-root "
               f"{base}/exec --pidfile {base}/docker.pid -H unix://{sock} --iptables=false "
               f"--ip6tables=false --bridge=none --config-file {base}/daemon.json "
               f"--add-runtime pinnace={RUNTIME} --default-runtime pinnace")
    log = open(base / "dockerd.log", "w")
    wrapper = subprocess.Popen(["unshare", "--net", "--fork", "sh", "-c", command],
                               stdout=log, stderr=log)
    run = runner(["docker", "-H", f"unix://{sock}"], "docker")
    try:
        wait_for(sock, 60)
        run("import", str(busybox_tar), "bb")
        yield run
    finally:
        run("swarm", "leave", "--force", check=False)
        run("rm", "--force", *run("ps", "-aq", check=False).stdout.split(), check=False)
        with contextlib.suppress(FileNotFoundError, ValueError):
            stop_daemon(int((base / "docker.pid").read_text()))
        wrapper.wait(30)
        log.close()
        unmount_under(str(base))
        shutil.rmtree(base, ignore_errors=True)


def test_docker_run_with_runtime_pinnace(dockerd: Run) -> None:
    out = dockerd("run", "--rm", "--runtime", "pinnace", "--hostname", "dk-box", "bb", "sh",
                  "-c", "hostname; echo ok").stdout
    assert out.split() == ["dk-box", "ok"]
    cid = dockerd("run", "-d", "bb", "sleep", "60").stdout.strip()
    assert dockerd("inspect", "--format", "{{.HostConfig.Runtime}}", cid).stdout.strip() \
        == "pinnace"
    assert dockerd("exec", cid, "cat", "/proc/1/cmdline").stdout.startswith("sleep")
    dockerd("rm", "--force", cid)


def test_swarm_service_replicas_and_rolling_update(dockerd: Run) -> None:
    dockerd("swarm", "init", "--advertise-addr", "127.0.0.1", "--listen-addr", "127.0.0.1:2377")
    dockerd("service", "create", "--detach=false", "--name", "web", "--replicas", "3", "bb",
            "sleep", "600", timeout=180)

    def running() -> list[str]:
        return dockerd("ps", "--filter", "label=com.docker.swarm.service.name=web",
                       "--format", "{{.ID}}").stdout.split()

    first = running()
    assert len(first) == 3
    assert {dockerd("inspect", "--format", "{{.HostConfig.Runtime}}", c).stdout.strip()
            for c in first} == {"pinnace"}
    dockerd("service", "update", "--detach=false", "--update-parallelism", "1",
            "--update-delay", "1s", "--env-add", "VERSION=2", "web", timeout=240)
    second = running()
    assert len(second) == 3 and not set(second) & set(first)
    for cid in second:
        assert "VERSION=2" in dockerd("exec", cid, "env").stdout
    dockerd("service", "rm", "web")
