"""The ``pasta`` network (Debian package ``passt``): a user-mode network for each
container, like ``slirp4netns``, but translating the container's TCP and UDP to
sockets on the host instead of running a TCP/IP stack of its own. pasta runs beside
the container in the caller's network namespace, makes a tap device in the
container's, and listens on the published ports (``-p``, its ``-t``/``-u`` options).

The container gets 10.0.2.100/24 on ``eth0`` and its gateway 10.0.2.2; the host's
loopback is not reachable through the gateway (``--no-map-gw``) and no port of the
container's is forwarded back to the host (``-T none -U none``). pasta needs an
interface with a default route in the caller's namespace (it copies its MTU and
routes to the outside from it). Containers do not reach each other but through
published ports.
"""

from __future__ import annotations

import contextlib
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

IFNAME, ADDRESS, PREFIX, GATEWAY = "eth0", "10.0.2.100", 24, "10.0.2.2"
PROGRAMS = ("pasta", "passt", "pasta.avx2", "passt.avx2")
"""What the pasta process's executable is called (Debian's ``pasta`` runs ``passt.avx2``
where the CPU has AVX2)."""


class PastaNetwork(Plugin):
    """One pasta process per container, its PID in the plugin's run directory."""

    publishes_ports: ClassVar[bool] = True
    """Takes ``-p`` without named networks (the core reserves the host ports)."""

    def _files(self, cid: str) -> tuple[Path, Path]:
        """The container's pasta PID file and log."""
        return (self.ctx.run_dir / f"{cid[:12]}.pasta.pid",
                self.ctx.run_dir / f"{cid[:12]}.pasta.log")

    @hookimpl
    def pinnace_network_add(self, attachment: Attachment) -> NetworkResult:
        """Start pasta for the container's namespace, listening on its published ports."""
        from pinnace.plugin import netns

        user_mode.require_tun("pasta")
        pidfile, log = self._files(attachment.container_id)
        self.ctx.run_dir.mkdir(parents=True, exist_ok=True)
        argv = ["pasta", "--runas", "0:0", "--quiet", "--ipv4-only", "--config-net",
                "--address", ADDRESS, "--netmask", str(PREFIX), "--gateway", GATEWAY,
                "--ns-ifname", IFNAME, "--no-map-gw", "--tcp-ns", "none", "--udp-ns", "none",
                *port_options(attachment.ports), "--pid", str(pidfile),
                "--netns", attachment.netns]
        try:
            with open(log, "wb") as errors:  # pasta forks to the background once ready
                done = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=errors,
                                      stderr=errors, timeout=30)
        except FileNotFoundError:
            log.unlink()
            raise Unavailable("pasta is not installed (apt install passt)") from None
        except subprocess.TimeoutExpired:
            self.pinnace_network_del(attachment)
            raise FailedPrecondition("pasta did not start within 30 s") from None
        said = user_mode.last_line(log.read_text(errors="replace"))
        log.unlink()
        if done.returncode != 0:
            self.pinnace_network_del(attachment)
            raise FailedPrecondition(f"pasta failed: {said}")
        try:
            netns.run_in(attachment.netns, netns.loopback_up)
        except BaseException:
            self.pinnace_network_del(attachment)
            raise
        return NetworkResult(
            interfaces=(Interface(IFNAME, sandbox=attachment.netns),),
            ips=(IPConfig(f"{ADDRESS}/{PREFIX}", gateway=GATEWAY),),
            routes=(Route("0.0.0.0/0", GATEWAY),))

    @hookimpl
    def pinnace_network_del(self, attachment: Attachment) -> None:
        """Stop the container's pasta (its tap goes with it); idempotent."""
        pidfile, log = self._files(attachment.container_id)
        user_mode.stop(user_mode.recorded_pid(pidfile), PROGRAMS)
        for path in (pidfile, log):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    @hookimpl
    def pinnace_network_check(self, attachment: Attachment) -> None:
        """pasta runs, ``eth0`` and ``lo`` are up in the container's namespace."""
        from pinnace.plugin import netns

        pidfile, _ = self._files(attachment.container_id)
        pid = user_mode.recorded_pid(pidfile)
        if not pid:
            raise FailedPrecondition("pasta was not started")
        if not user_mode.is_running(pid, PROGRAMS):
            raise FailedPrecondition(f"pasta (PID {pid}) is gone")
        if not netns.run_in(attachment.netns,
                            lambda: netns.is_up("lo") and netns.is_up(IFNAME)):
            raise FailedPrecondition(f"{IFNAME} or lo is missing or down in {attachment.netns}")

    @hookimpl
    def pinnace_doctor(self) -> list[dict[str, str]]:
        """pasta installed, /dev/net/tun open to this user."""
        import shutil

        found = shutil.which("pasta")
        return [{"check": "network pasta: installed", "ok": "yes" if found else "warn",
                 "detail": found or "missing", "fix": "apt install passt"},
                user_mode.tun_check("pasta")]


def port_options(ports: tuple[PortMapping, ...] | list[PortMapping]) -> list[str]:
    """pasta's ``-t``/``-u`` options for published ports: ``[ADDRESS/]HOST:CONTAINER``
    each, ``none`` for a protocol without any (else pasta forwards UDP ports like the
    TCP ones, and would pick ports by itself)."""
    specs: dict[str, list[str]] = {"tcp": [], "udp": []}
    for port in ports:
        address = f"{port.host_ip}/" if port.host_ip else ""
        specs[port.protocol].append(f"{address}{port.host_port}:{port.container_port}")
    options = []
    for protocol, flag in (("tcp", "--tcp-ports"), ("udp", "--udp-ports")):
        for spec in specs[protocol] or ["none"]:
            options += [flag, spec]
    return options
