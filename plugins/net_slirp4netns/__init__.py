"""The ``slirp4netns`` network: a user-mode network stack for each container, what a
rootless pinnace (which cannot make veths or firewall rules on the host) connects
containers with. slirp4netns runs beside the container in the caller's network
namespace, moves a tap device into the container's, and forwards published ports
(``-p``) from host sockets it opens itself (asked through its API socket).

The container gets 10.0.2.100/24 on ``tap0``, its gateway 10.0.2.2 and DNS 10.0.2.3
(the host's loopback is not reachable through the gateway). Containers do not reach
each other but through published ports.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
from pathlib import Path
from typing import ClassVar

from pinnace.plugin import (
    Attachment,
    FailedPrecondition,
    Interface,
    IPConfig,
    NetworkResult,
    Plugin,
    PortMapping,
    Route,
    Unavailable,
    hookimpl,
)
from pinnace_plugins import user_mode

TAP, ADDRESS, GATEWAY = "tap0", "10.0.2.100/24", "10.0.2.2"
PROGRAMS = ("slirp4netns",)


class Slirp4netnsNetwork(Plugin):
    """One slirp4netns process per container, its PID in the plugin's run directory."""

    publishes_ports: ClassVar[bool] = True
    """Takes ``-p`` without named networks (the core reserves the host ports)."""

    def _files(self, cid: str) -> tuple[Path, Path, Path]:
        """The container's slirp4netns PID file, API socket and log."""
        return tuple(self.ctx.run_dir / f"{cid[:12]}.{ext}"  # type: ignore[return-value]
                     for ext in ("pid", "sock", "log"))

    @hookimpl
    def pinnace_network_add(self, attachment: Attachment) -> NetworkResult:
        """Start slirp4netns for the container's namespace; publish its ports."""
        from pinnace.plugin import netns

        user_mode.require_tun("slirp4netns")
        pidfile, api, log = self._files(attachment.container_id)
        self.ctx.run_dir.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            api.unlink()
        ready_r, ready_w = os.pipe()
        try:
            with open(log, "wb") as errors:
                proc = subprocess.Popen(
                    ["slirp4netns", "--configure", "--mtu=65520", "--disable-host-loopback",
                     "--netns-type=path", "--api-socket", api.name, "--ready-fd",
                     str(ready_w), attachment.netns, TAP],
                    pass_fds=(ready_w,), stdin=subprocess.DEVNULL, stdout=errors,
                    stderr=errors, start_new_session=True, cwd=api.parent)  # a socket
                # path has at most 107 bytes: the socket is named relative to its directory
        except FileNotFoundError:
            raise Unavailable("slirp4netns is not installed (apt install slirp4netns)") from None
        finally:
            os.close(ready_w)
        try:
            ready = os.read(ready_r, 1)
        finally:
            os.close(ready_r)
        if ready != b"1":
            proc.wait()
            said = user_mode.last_line(log.read_text(errors="replace"))
            log.unlink()
            raise FailedPrecondition(f"slirp4netns failed: {said}")
        pidfile.write_text(str(proc.pid))
        try:
            netns.run_in(attachment.netns, netns.loopback_up)
            for port in attachment.ports:
                _forward(api, port)
        except BaseException:
            self.pinnace_network_del(attachment)
            raise
        return NetworkResult(
            interfaces=(Interface(TAP, sandbox=attachment.netns),),
            ips=(IPConfig(ADDRESS, gateway=GATEWAY),),
            routes=(Route("0.0.0.0/0", GATEWAY),))

    @hookimpl
    def pinnace_network_del(self, attachment: Attachment) -> None:
        """Stop the container's slirp4netns (its tap goes with it); idempotent."""
        pidfile, api, log = self._files(attachment.container_id)
        user_mode.stop(user_mode.recorded_pid(pidfile), PROGRAMS)
        for path in (pidfile, api, log):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    @hookimpl
    def pinnace_doctor(self) -> list[dict[str, str]]:
        """slirp4netns installed, /dev/net/tun open to this user."""
        import shutil

        found = shutil.which("slirp4netns")
        return [{"check": "network slirp4netns: installed", "ok": "yes" if found else "warn",
                 "detail": found or "missing", "fix": "apt install slirp4netns"},
                user_mode.tun_check("slirp4netns")]

    @hookimpl
    def pinnace_network_check(self, attachment: Attachment) -> None:
        """slirp4netns runs, ``tap0`` and ``lo`` are up in the container's namespace."""
        from pinnace.plugin import netns

        pidfile, _, _ = self._files(attachment.container_id)
        pid = user_mode.recorded_pid(pidfile)
        if not pid:
            raise FailedPrecondition("slirp4netns was not started")
        if not user_mode.is_running(pid, PROGRAMS):
            raise FailedPrecondition(f"slirp4netns (PID {pid}) is gone")

        if not netns.run_in(attachment.netns, lambda: netns.is_up("lo") and netns.is_up(TAP)):
            raise FailedPrecondition(f"{TAP} or lo is missing or down in {attachment.netns}")


def _forward(api: Path, port: PortMapping) -> None:
    """Ask slirp4netns to forward a host port to the container."""
    request = {"execute": "add_hostfwd", "arguments": {
        "proto": port.protocol, "host_addr": port.host_ip or "0.0.0.0",
        "host_port": port.host_port, "guest_port": port.container_port}}
    directory = os.open(api.parent, os.O_PATH | os.O_CLOEXEC)
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.connect(f"/proc/self/fd/{directory}/{api.name}")  # short, as above
            sock.sendall(json.dumps(request).encode())
            sock.shutdown(socket.SHUT_WR)
            answer = json.loads(sock.recv(65536) or b"{}")
    finally:
        os.close(directory)
    if "error" in answer:
        raise FailedPrecondition(f"slirp4netns cannot publish port {port.host_port}: "
                                 f"{answer['error'].get('desc', answer['error'])}")

