"""The third-party network plugin (examples/pinnace-routed): installed with pip into a
directory on the test's PYTHONPATH, discovered, selected with --net=routed, carrying
traffic between two containers, and run against the network contract suite. Every
pinnace command runs inside a private network namespace made by the test."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
from conftest import Pinnace, assert_discovered, assert_passes_its_contract

from pinnace.testing.netns import run_in


@pytest.fixture
def rpn(npn: Pinnace, busybox: str, routed_site: Path) -> Pinnace:
    """pinnace with the routed plugin on its PYTHONPATH, in this test's private ``netns``."""
    npn.env["PYTHONPATH"] = str(routed_site)
    return npn


def ip(netns: Path, *args: str) -> list[dict]:
    """``ip -j ARGS`` in the namespace at ``netns``, parsed."""
    return json.loads(run_in(netns, "ip", "-j", *args).stdout or "[]")


def test_routed_plugin_is_discovered(pn: Pinnace, routed_site: Path) -> None:
    assert_discovered(pn, routed_site, "network", "routed", "pinnace-routed")


def test_container_gets_a_32_and_a_default_route(rpn: Pinnace, busybox: str, netns: Path) -> None:
    out = rpn("run", "--rm", "--net=routed", busybox, "sh", "-c",
              "ip -4 -o addr show dev eth0; ip route").stdout
    assert "inet 10.213.0." in out and "/32 " in out, out
    assert "default via 169.254.1.1 dev eth0" in out, out
    assert [link["ifname"] for link in ip(netns, "link")] == ["lo"], "a veth was left behind"
    assert not list((rpn.root / "network" / "routed" / "leases").iterdir())


def test_two_containers_talk_through_host_routes(rpn: Pinnace, busybox: str, netns: Path) -> None:
    web = rpn.popen("run", "--name", "web", "--net=routed", busybox, "sh", "-c",
                    "mkdir /www && echo routed-ok > /www/index.html && "
                    "exec httpd -f -p 8000 -h /www",
                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        address = ""
        for _ in range(600):
            inspect = rpn("inspect", "web", check=False)
            if inspect.returncode == 0:
                networks = json.loads(inspect.stdout)[0]["NetworkSettings"]["Networks"]
                address = networks.get("routed", {}).get("IPAddress", "")
                if address:
                    break
            assert web.poll() is None, web.stderr.read() if web.stderr else ""
            time.sleep(0.1)
        assert address.startswith("10.213.0."), address
        routes = {r["dst"]: r.get("dev") for r in ip(netns, "route")}
        assert routes[address].startswith("rt"), routes
        got = rpn("run", "--rm", "--net=routed", busybox, "sh", "-c",
                  f"for i in 1 2 3 4 5 6 7 8 9 10; do wget -qO- http://{address}:8000/ && exit 0;"
                  f" sleep 0.5; done; exit 1").stdout
        assert got.strip() == "routed-ok"
    finally:
        rpn("rm", "-f", "web", check=False)
        web.wait(timeout=60)
    assert [link["ifname"] for link in ip(netns, "link")] == ["lo"]
    assert not ip(netns, "route"), "a /32 route was left behind"


def test_example_passes_the_network_contract(routed_site: Path, tmp_path: Path) -> None:
    assert_passes_its_contract("pinnace-routed", routed_site, tmp_path)
