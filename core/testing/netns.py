"""A private network namespace for tests: whatever bridges, veths and iptables rules
a network plugin makes there vanish with it, and the host's network is never touched."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def private_netns(path: Path) -> Iterator[Path]:
    """A new network namespace bind-mounted on ``path`` with ``lo`` up; gone afterwards."""
    from pinnace.plugin import netns

    netns.create(str(path))
    try:
        run_in(path, "ip", "link", "set", "lo", "up")
        yield path
    finally:
        netns.delete(str(path))


def run_in(path: Path, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` inside the network namespace at ``path``; return the finished process."""
    return subprocess.run(["nsenter", f"--net={path}", "--", *argv], capture_output=True,
                          text=True, check=check)


def leftovers(path: Path) -> list[str]:
    """pinnace's veths (``pnv*``) and port rules (``pn:ctr:``) still in the namespace."""
    links = [line.split()[1].split("@")[0].rstrip(":")
             for line in run_in(path, "ip", "-o", "link").stdout.splitlines()]
    rules = [line for line in run_in(path, "iptables-save").stdout.splitlines()
             if "pn:ctr:" in line]
    return [f"link {name}" for name in links if name.startswith("pnv")] + rules


def http_get(path: Path, host: str, port: int) -> str:
    """GET / from inside the namespace at ``path`` (a test's "host"); the whole reply."""
    import socket

    from pinnace.plugin import netns

    with netns.entered(str(path)):
        sock = socket.create_connection((host, port), timeout=5)
    with sock:
        sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks).decode()
