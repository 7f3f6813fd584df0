"""The docker CLI against `pinnace serve`, a private dockerd and `podman system service`,
side by side: `docker run --rm busybox true`, `docker ps -a` with 100 containers,
`docker exec`, and 20 concurrent `docker run -d`. Every container runs with
`--network none` (the host's network is never touched). The dockerd is one of the
benchmark's own: its own data root, exec root, socket and pidfile, in a network
namespace of its own without iptables rules or a bridge; a dockerd that answers on
/var/run/docker.sock is left alone. ``runc run`` of the same rootfs is the floor of
``run --rm``; the targets: pinnace serve within 2x of it, at most half of dockerd's and a
third of podman service's time.

Run as root: ``python bench/api.py [--rounds N]``. Prints tables and ratios. Not a
test: these machines are noisy.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import busybox_root, podman_store, report, runner, time_runs

DOCKER = "/usr/bin/docker"
TIMEOUT = 120
"""Seconds one docker command may take before its server counts as unable to do it."""
PODMAN_CONF = """[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]
"""
"""The service's containers.conf: podman asks runc for higher rlimits than a process
without CAP_SYS_RESOURCE may set (as ``common.PODMAN_RUN`` says), so lower ones."""


def wait_for_socket(path: Path, proc: subprocess.Popen[bytes]) -> None:
    """Until something answers on ``path`` (or the server died)."""
    import socket

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the API server exited: {proc.returncode}")
        with socket.socket(socket.AF_UNIX) as probe:
            try:
                probe.connect(str(path))
                return
            except OSError:
                time.sleep(0.05)
    raise SystemExit(f"nothing answers on {path}")


@contextmanager
def server(argv: list[str], path: Path, env: dict[str, str] | None = None) -> Iterator[Path]:
    """Run an API server (``argv``, with ``env`` added to its environment) listening on
    ``path`` for the block; yields ``path``."""
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, **(env or {})})
    try:
        wait_for_socket(path, proc)
        yield path
    finally:
        proc.terminate()
        proc.wait(60)


@contextmanager
def dockerd(base: Path, busybox_tar: Path) -> Iterator[Path]:
    """A dockerd of its own under ``base`` (data, exec root, pidfile, socket), in a network
    namespace of its own (loopback only), with busybox imported; yields its socket."""
    import signal

    base.mkdir()
    sock = base / "docker.sock"
    (base / "daemon.json").write_text("{}")
    command = (f"ip link set lo up && exec dockerd --data-root {base}/data --exec-root "
               f"{base}/exec --pidfile {base}/docker.pid -H unix://{sock} --iptables=false "
               f"--ip6tables=false --bridge=none --config-file {base}/daemon.json")
    with open(base / "dockerd.log", "w") as log:
        wrapper = subprocess.Popen(["unshare", "--net", "--fork", "sh", "-c", command],
                                   stdout=log, stderr=log)
        try:
            wait_for_socket(sock, wrapper)
            subprocess.run([DOCKER, "-H", f"unix://{sock}", "import", str(busybox_tar),
                            "busybox"], check=True, capture_output=True)
            yield sock
        finally:
            try:
                pid = int((base / "docker.pid").read_text())
                os.kill(pid, signal.SIGTERM)
            except (FileNotFoundError, ValueError, ProcessLookupError):
                wrapper.terminate()
            wrapper.wait(60)
            unmount_under(base)


def unmount_under(directory: Path) -> None:
    """Unmount what a daemon left mounted under ``directory`` (deepest first)."""
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    for point in sorted((p for p in points if p.startswith(f"{directory}/")), reverse=True):
        subprocess.run(["umount", "-l", point], check=False)


def docker(path: Path) -> Callable[..., Callable[[], None]]:
    """A maker of quiet docker CLI runs against the socket ``path``."""
    env = {**os.environ, "DOCKER_HOST": f"unix://{path}",
           "DOCKER_CONFIG": str(path.parent / "docker-config")}

    def make(*args: str) -> Callable[[], None]:
        return runner([DOCKER, *args], env=env, timeout=TIMEOUT)

    return make


def concurrent_runs(make: Callable[..., Callable[[], None]], count: int) -> Callable[[], None]:
    """``count`` ``docker run -d`` at once, then their removal (not timed apart)."""
    def run() -> None:
        threads = [threading.Thread(target=make("run", "-d", "--network", "none", "busybox",
                                                "sleep", "60")) for _ in range(count)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    return run


def remove_all(path: Path) -> None:
    env = {**os.environ, "DOCKER_HOST": f"unix://{path}",
           "DOCKER_CONFIG": str(path.parent / "docker-config")}
    ids = subprocess.run([DOCKER, "ps", "-aq"], env=env, capture_output=True,
                         text=True).stdout.split()
    if ids:
        subprocess.run([DOCKER, "rm", "-f", *ids], env=env, capture_output=True)


def runc_run(work: Path) -> Callable[[], None]:
    """``runc run`` of a bundle of the same busybox rootfs running ``true``: the floor."""
    from runtime import make_bundle

    bundle = make_bundle(work)
    names = iter(range(10**9))

    def run() -> None:
        runner(["runc", "--root", str(work / "runc-state"), "run", "--bundle", str(bundle),
                f"bench-{next(names)}"])()
    return run


def targets(run_times: dict[str, list[float]]) -> None:
    """Print how ``docker run --rm`` through pinnace serve compares with its targets."""
    import statistics

    med = {name: statistics.median(times) for name, times in run_times.items()}
    pin = med.get("pinnace serve")
    if pin is None:
        return
    if "runc run" in med:
        print(f"target pinnace serve <= 2x runc run: {pin / med['runc run']:.2f}x "
              f"{'OK' if pin <= 2 * med['runc run'] else 'MISSED'}")
    if "dockerd" in med:
        print(f"target pinnace serve <= 1/2 of dockerd: {pin / med['dockerd']:.2f}x "
              f"{'OK' if 2 * pin <= med['dockerd'] else 'MISSED'}")
    if "podman system service" in med:
        podman = med["podman system service"]
        print(f"target pinnace serve <= 1/3 of podman system service: {pin / podman:.2f}x "
              f"{'OK' if 3 * pin <= podman else 'MISSED'}")


def measure(name: str, path: Path, rounds: int, *tables: dict[str, list[float]]) -> None:
    """Time the four operations against the server on ``path``, into ``tables`` (run,
    exec, burst, ps)."""
    run_times, exec_times, burst_times, ps_times = tables
    make = docker(path)
    run_times.update(time_runs({name: make(
        "run", "--rm", "--network", "none", "busybox", "true")}, rounds))
    make("run", "-d", "--name", "bench-exec", "--network", "none", "busybox", "sleep",
         "3600")()
    exec_times.update(time_runs({name: make("exec", "bench-exec", "true")}, rounds))
    make("rm", "-f", "bench-exec")()
    burst_times.update(time_runs({name: concurrent_runs(make, 20)}, 1))
    remove_all(path)
    for _ in range(100):
        make("create", "--network", "none", "busybox", "true")()
    ps_times.update(time_runs({name: make("ps", "-a")}, rounds))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    if not Path(DOCKER).exists():
        raise SystemExit(f"{DOCKER} is missing: apt-get install docker.io (the CLI is used)")
    with busybox_root() as (pinnace, root, work):
        sockets = Path(tempfile.mkdtemp(prefix="pn-bench-", dir="/tmp"))
        servers: dict[str, Callable[[], AbstractContextManager[Path]]] = {
            "pinnace serve": lambda: server(
                pinnace + ["--root", str(root), "serve", "--socket",
                           str(sockets / "pinnace.sock")], sockets / "pinnace.sock")}
        if shutil.which("dockerd"):
            servers["dockerd"] = lambda: dockerd(work / "dockerd", work / "busybox.tar")
        podman_cleanup = None
        if shutil.which("podman"):
            podman, podman_cleanup = podman_store(work)
            subprocess.run(podman + ["import", str(work / "busybox.tar"), "busybox"],
                           check=True, capture_output=True)
            (work / "containers.conf").write_text(PODMAN_CONF)
            servers["podman system service"] = lambda: server(
                podman + ["system", "service", "--time=0", f"unix://{sockets / 'podman.sock'}"],
                sockets / "podman.sock", {"CONTAINERS_CONF": str(work / "containers.conf")})
        try:
            run_times: dict[str, list[float]] = {}
            ps_times: dict[str, list[float]] = {}
            exec_times: dict[str, list[float]] = {}
            burst_times: dict[str, list[float]] = {}
            for name, started in servers.items():
                try:
                    with started() as path:
                        try:
                            measure(name, path, args.rounds, run_times, exec_times,
                                    burst_times, ps_times)
                        finally:
                            remove_all(path)
                except (SystemExit, subprocess.CalledProcessError,
                        subprocess.TimeoutExpired) as failure:  # a peer that cannot
                    print(f"{name}: {failure}")  # start or run here
            if shutil.which("runc"):
                run_times.update(time_runs({"runc run": runc_run(work)}, args.rounds))
            base = "pinnace serve"
            report("docker run --rm busybox true (runc run: the same rootfs, no server)",
                   run_times, "runc run" if "runc run" in run_times else base)
            targets(run_times)
            report("docker exec (true) into a running container", exec_times, base)
            report("20 concurrent docker run -d (wall time)", burst_times, base)
            report("docker ps -a with 100 containers", ps_times, base)
        finally:
            if podman_cleanup is not None:
                podman_cleanup()
            shutil.rmtree(sockets, ignore_errors=True)


if __name__ == "__main__":
    main()
