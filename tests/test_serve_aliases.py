"""Network aliases through ``pinnace serve``: the docker CLI's ``run --network-alias`` and
``network connect --alias`` make a container reachable by those names from the other
containers of the network (their /etc/hosts), and ``network disconnect`` takes them
away."""

from __future__ import annotations

from pathlib import Path

from conftest import Pinnace
from test_serve_docker_cli import Docker, docker_for


def _reaches(docker: Docker, container: str, name: str) -> bool:
    """Whether ``container`` resolves and pings ``name``."""
    proc = docker("exec", container, "ping", "-c", "1", "-W", "5", name, check=False)
    return proc.returncode == 0 and "1 packets received" in proc.stdout


def test_run_network_alias_and_connect_alias(api_socket_ns: Path, npn: Pinnace,
                                             tmp_path: Path) -> None:
    docker = docker_for(api_socket_ns, tmp_path / "docker-config")
    docker("network", "create", "backend")
    docker("network", "create", "front")
    docker("run", "-d", "--name", "srv", "--network", "backend", "--network-alias", "api",
           "--network-alias", "api.internal", "busybox", "sleep", "300")
    docker("run", "-d", "--name", "client", "--network", "backend", "busybox", "sleep", "300")
    assert _reaches(docker, "client", "api")
    assert _reaches(docker, "client", "api.internal")
    assert _reaches(docker, "client", "srv")  # the container's name too
    assert docker("inspect", "--format", "{{json .NetworkSettings.Networks.backend.Aliases}}",
                  "srv").stdout.strip() == '["api","api.internal"]'
    # a container on another network joins backend under an alias: both sides see it
    docker("run", "-d", "--name", "late", "--network", "front", "busybox", "sleep", "300")
    assert not _reaches(docker, "late", "api")
    docker("network", "connect", "--alias", "cache", "backend", "late")
    assert _reaches(docker, "srv", "cache")
    assert _reaches(docker, "late", "api")
    assert "cache" in npn("exec", "srv", "cat", "/etc/hosts").stdout  # as pinnace sees it
    docker("network", "disconnect", "backend", "late")
    assert not _reaches(docker, "srv", "cache")
    bad = docker("run", "-d", "--network", "backend", "--network-alias", "no spaces",
                 "busybox", "true", check=False)
    assert bad.returncode != 0 and "invalid network alias" in bad.stderr
    for name in ("srv", "client", "late"):
        docker("rm", "-f", name)
    docker("network", "rm", "backend", "front")


def test_pinnace_run_network_alias(npn: Pinnace, busybox: str) -> None:
    npn("network", "create", "mesh")
    npn("run", "-d", "--name", "one", "--network", "mesh", "--network-alias", "first",
        busybox, "sleep", "300")
    out = npn("run", "--rm", "--network", "mesh", busybox, "ping", "-c", "1", "-W", "5",
              "first")
    assert "1 packets received" in out.stdout
    refused = npn("run", "--rm", "--network-alias", "x", busybox, "true", check=False)
    assert refused.returncode != 0 and "--network-alias applies to named networks" in \
        refused.stderr
    npn("rm", "-f", "one")
    npn("network", "rm", "mesh")
