"""``pinnace experiment net``: compare network strategies (network plugins) on one workload.

For each strategy and each run, two real containers are started with
``pinnace --trace run --rm --net=STRATEGY``: a server (busybox ``nc`` as a TCP
echo service and as a source of zeros) and a client (``sleep``). Measured:

- network setup and teardown time per container: the durations of the
  network hooks in each ``pinnace`` process's ``--trace`` output;
- container-to-container TCP connect time, 1-byte round trip and throughput:
  the measuring code runs in the client container's network namespace
  (``setns``), so its packets take the client container's path to the server;
- host-to-published-port connect time and round trip, where ``-p`` publishes.

A measurement a strategy cannot make is recorded as n/a with the reason,
never as zero. The caller runs all of it inside a private network namespace, with
an uplink (:func:`pinnace.netns.add_uplink`) for the user-mode networks (pasta) that
copy the outside's configuration from one.
"""

from __future__ import annotations

import contextlib
import re
import signal
import socket
import statistics
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pinnace.errors import NotFound, PinnaceError
from pinnace.experiments import framework
from pinnace.experiments.framework import Metric, Strategy, StrategyFailed, error_line

if TYPE_CHECKING:
    from pinnace.containers.record import ContainerRecord
    from pinnace.engine import Engine

ECHO_PORT = 5000
SOURCE_PORT = 5001
PUBLISHED_PORT = 18080
BLOCK = 65536
TRACE = re.compile(r"^trace: (pinnace_network_\w+) \[[^\]]*\] ([0-9.]+) ms", re.M)
TEARDOWN_HOOKS = ("pinnace_network_del", "pinnace_network_remove")


METRICS = (
    Metric("setup", "network setup per container", "ms"),
    Metric("teardown", "network teardown per container", "ms"),
    Metric("c2c_connect", "container-to-container TCP connect", "ms"),
    Metric("c2c_rtt", "container-to-container round trip (1 byte)", "ms"),
    Metric("c2c_throughput", "container-to-container throughput", "MB/s"),
    Metric("port_connect", "host-to-published-port TCP connect", "ms"),
    Metric("port_rtt", "host-to-published-port round trip (1 byte)", "ms"),
)


@dataclass
class Parameters(framework.Parameters):
    """The strategies, runs and image, and the traffic."""

    payload: int = 32 << 20
    """Bytes the server sends for the throughput measurement (a multiple of 64 KiB)."""
    pings: int = 200
    """1-byte round trips per run (the run's value is their median)."""
    connects: int = 20
    """TCP connects per run (the run's value is their median)."""


# ------------------------------------------------------------------ measuring
@contextlib.contextmanager
def _socket_in(netns: str | None) -> Iterator[socket.socket]:
    """A TCP socket made in network namespace ``netns`` (None: this thread's)."""
    from pinnace import netns as namespaces

    with contextlib.ExitStack() as stack:
        if netns:
            stack.enter_context(namespaces.entered(netns))
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    with sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(10)
        yield sock


def reachable(netns: str | None, address: str, port: int, timeout: float) -> bool:
    """Whether a TCP connect from ``netns`` to ``address:port`` succeeds within ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        with _socket_in(netns) as sock:
            sock.settimeout(1)
            try:
                sock.connect((address, port))
                return True
            except OSError:
                if time.monotonic() >= deadline:
                    return False
        time.sleep(0.05)


def echoes(address: str, port: int, timeout: float) -> bool:
    """Whether the echo service at ``address:port`` (from this thread's namespace) echoes
    a byte within ``timeout`` s. A connect alone does not tell for a published port: a
    user-mode network accepts on the host before the container's server listens."""
    deadline = time.monotonic() + timeout
    while True:
        with _socket_in(None) as sock:
            sock.settimeout(1)
            try:
                sock.connect((address, port))
                sock.sendall(b"x")
                if sock.recv(1) == b"x":
                    return True
            except OSError:
                pass
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


def connect_times(netns: str | None, address: str, port: int, count: int) -> list[float]:
    """Milliseconds each of ``count`` TCP connects takes (until the handshake completes)."""
    times = []
    for _ in range(count):
        with _socket_in(netns) as sock:
            start = time.perf_counter()
            sock.connect((address, port))
            times.append((time.perf_counter() - start) * 1000)
    return times


def round_trips(netns: str | None, address: str, port: int, count: int) -> list[float]:
    """Milliseconds each of ``count`` 1-byte exchanges with an echo service takes."""
    times = []
    with _socket_in(netns) as sock:
        sock.connect((address, port))
        for _ in range(count):
            start = time.perf_counter()
            sock.sendall(b"x")
            if sock.recv(1) != b"x":
                raise StrategyFailed(f"the echo service at {address}:{port} did not echo")
            times.append((time.perf_counter() - start) * 1000)
    return times


def throughput(netns: str | None, address: str, port: int, expected: int) -> float:
    """MB/s of a stream of ``expected`` bytes the server sends until it closes."""
    with _socket_in(netns) as sock:
        start = time.perf_counter()
        sock.connect((address, port))
        received = 0
        while chunk := sock.recv(1 << 20):
            received += len(chunk)
        elapsed = time.perf_counter() - start
    if received != expected:
        raise StrategyFailed(f"received {received} of {expected} bytes from {address}:{port}")
    return expected / elapsed / 1e6


def trace_times(text: str) -> tuple[float, float] | None:
    """(setup ms, teardown ms): sums of the network hook durations in ``--trace`` output."""
    calls = TRACE.findall(text)
    if not calls:
        return None
    teardown = sum(float(ms) for hook, ms in calls if hook in TEARDOWN_HOOKS)
    return sum(float(ms) for hook, ms in calls if hook not in TEARDOWN_HOOKS), teardown


# -------------------------------------------------------------------- running
@dataclass
class _Box:
    """A container started in the background by ``pinnace run``."""

    name: str
    proc: subprocess.Popen[bytes]
    stderr: Path
    cid: str = ""
    pid: int = 0
    result: dict[str, Any] = field(default_factory=dict)


class NetExperiment(framework.Experiment):
    """Two containers per run of each network plugin, and traffic between them; the
    ``pinnace run`` processes' stderr goes to files in ``workdir``."""

    role = "network"

    def __init__(self, engine: Engine, argv: list[str], params: Parameters, workdir: Path,
                 say: Callable[[str], None]) -> None:
        super().__init__(engine, argv, params, say)
        self.dir = workdir
        self.boxes: list[_Box] = []

    def clean_up(self) -> None:
        """Stop the containers a failed run left."""
        for box in list(self.boxes):
            self._stop(box)

    def measure(self, strategy: Strategy, number: int) -> None:
        """A client and a server container, the traffic between them, the port."""
        p, add = self.params, strategy.samples.setdefault
        client = self._start(f"netexp-{strategy.name}-{number}-client", strategy.name,
                             [p.image, "sleep", "3600"])
        server = None
        try:
            server = self._start_server(strategy, f"netexp-{strategy.name}-{number}-server")
            self._wait_running(client)
            self._container_to_container(strategy, server, client)
            self._published_port(strategy)
        except BaseException:
            for box in (client, server):
                if box is not None:
                    self._stop(box)
            raise
        for box in (client, server):
            times = self._stop(box)
            if times is None:
                raise StrategyFailed(f"no network hook timings in the --trace output of {box.name}")
            add("setup", []).append(times[0])
            add("teardown", []).append(times[1])

    def _start_server(self, strategy: Strategy, name: str) -> _Box:
        """The server container, running; with ``-p`` unless the strategy refuses it."""
        p = self.params
        command = [p.image, "sh", "-c", f"nc -ll -p {ECHO_PORT} -e cat & exec nc -ll -p "
                   f"{SOURCE_PORT} -e dd if=/dev/zero bs={BLOCK} count={p.payload // BLOCK}"]
        if "port_connect" not in strategy.missing:
            server = self._start(name, strategy.name,
                                 ["-p", f"{PUBLISHED_PORT}:{ECHO_PORT}", *command])
            try:
                self._wait_running(server)
                return server
            except StrategyFailed as err:
                self._stop(server)
                strategy.missing["port_connect"] = strategy.missing["port_rtt"] = \
                    f"-p {PUBLISHED_PORT}:{ECHO_PORT} refused: {err}"
        server = self._start(name, strategy.name, command)
        self._wait_running(server)
        return server

    def _container_to_container(self, strategy: Strategy, server: _Box, client: _Box) -> None:
        from pinnace.network import routable_ipv4

        p, add = self.params, strategy.samples.setdefault
        plugin = self.engine.plugins.load("network", strategy.name)
        if getattr(plugin, "host_netns", False):
            address: str | None = "127.0.0.1"  # both containers are in the host's namespace
        else:
            address = routable_ipv4([ip["address"] for ip in server.result.get("ips", [])])
        reason = ""
        if address is None:
            reason = "containers get no address outside loopback"
        elif address == routable_ipv4([ip["address"] for ip in client.result.get("ips", [])]):
            reason = (f"every container is {address} (a user-mode network each): containers "
                      "meet through published ports only")
        if reason:
            for key in ("c2c_connect", "c2c_rtt", "c2c_throughput"):
                strategy.missing[key] = reason
            return
        netns = f"/proc/{client.pid}/ns/net"
        for port in (ECHO_PORT, SOURCE_PORT):
            if not reachable(netns, address, port, timeout=20):
                raise StrategyFailed(f"the server at {address}:{port} is unreachable "
                                     f"from the client container")
        connects = connect_times(netns, address, ECHO_PORT, p.connects)
        add("c2c_connect", []).append(statistics.median(connects))
        add("c2c_rtt", []).append(statistics.median(round_trips(netns, address, ECHO_PORT,
                                                                p.pings)))
        add("c2c_throughput", []).append(throughput(netns, address, SOURCE_PORT, p.payload))

    def _published_port(self, strategy: Strategy) -> None:
        p, add = self.params, strategy.samples.setdefault
        if "port_connect" in strategy.missing:
            return
        if not echoes("127.0.0.1", PUBLISHED_PORT, timeout=10):
            reason = f"-p {PUBLISHED_PORT}:{ECHO_PORT} publishes nothing with this strategy"
        else:
            add("port_connect", []).append(statistics.median(connect_times(
                None, "127.0.0.1", PUBLISHED_PORT, p.connects)))
            add("port_rtt", []).append(statistics.median(round_trips(
                None, "127.0.0.1", PUBLISHED_PORT, p.pings)))
            return
        strategy.missing["port_connect"] = strategy.missing["port_rtt"] = reason

    # ----------------------------------------------------------- containers
    def _start(self, name: str, strategy: str, args: list[str]) -> _Box:
        stderr = self.dir / f"{name}.stderr"
        with open(stderr, "wb") as err:
            proc = subprocess.Popen(
                [*self.argv, "--trace", "run", "--rm", "--name", name, f"--net={strategy}", *args],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
        box = _Box(name, proc, stderr)
        self.boxes.append(box)
        return box

    def _wait_running(self, box: _Box, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            record = self._record(box.name)
            if record is not None and record.status == "running" and record.pid:
                box.cid, box.pid = record.id, record.pid
                box.result = record.network_result
                return
            if box.proc.poll() is not None:
                raise StrategyFailed(error_line(box.stderr.read_text(errors="replace"))
                                     or f"pinnace run exited {box.proc.returncode}")
            time.sleep(0.02)
        raise StrategyFailed(f"container {box.name} was not running after {timeout:.0f} s")

    def _record(self, name: str) -> ContainerRecord | None:
        """The container called ``name``, or None (not created yet, or gone)."""
        try:
            return self.engine.containers.get(self.engine.resolve(name))
        except NotFound:
            return None

    def _stop(self, box: _Box) -> tuple[float, float] | None:
        """Kill the container, let its ``pinnace run --rm`` tear it down; its hook timings."""
        if box.proc.poll() is None:
            cid = box.cid
            if not cid:
                record = self._record(box.name)
                cid = record.id if record else ""
            with contextlib.suppress(PinnaceError):
                if cid:
                    self.engine.kill(cid, signal.SIGKILL, by_user=True)
            try:
                box.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                box.proc.kill()
                box.proc.wait()
        with contextlib.suppress(PinnaceError):
            self.engine.remove(box.name, force=True)
        self.boxes.remove(box)
        text = box.stderr.read_text(errors="replace")
        box.stderr.unlink()
        return trace_times(text)
