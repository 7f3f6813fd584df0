"""Two plugins of each role in one root and in one pinnace process: every command that
touches things of both reaches each owner, and leaves nothing behind. Then a fault after
each role hook of the everyday commands (``run -d``, ``exec``, ``stop``, ``rm -f``,
``network create``/``rm``, ``commit``, ``pull``): the command fails with one line naming
it, and whatever it left is reclaimed by the next ordinary command.

The second plugins are the examples (runc isolation, routed network, dir image source),
pip-installed into directories on the PYTHONPATH of the ``pinnace`` processes started here.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import Pinnace
from plugin_checks import (
    STORAGES,
    gone_soon,
    layer_keys,
    logged,
    nothing_left,
    runc_containers,
    with_fault,
)


def inspect(pn: Pinnace, *refs: str) -> list[dict]:
    """``pinnace inspect`` of ``refs``."""
    return json.loads(pn("inspect", *refs).stdout)


def statuses(pn: Pinnace, *refs: str) -> list[str]:
    """The status of each container."""
    return [row["State"]["Status"] for row in inspect(pn, *refs)]


def freezer_state(cid: str) -> str:
    """FROZEN when a freezer (v1's, or the unified hierarchy's) holds the container's
    cgroup frozen, else THAWED."""
    from pinnace.runtime import cgroups

    frozen = []
    for directory in cgroups.container_cgroup(cid).dirs:
        for name, value in (("freezer.state", "FROZEN"), ("cgroup.freeze", "1")):
            with contextlib.suppress(FileNotFoundError):
                frozen.append(Path(directory, name).read_text().strip() == value)
    assert frozen, f"no freezer for container {cid}"
    return "FROZEN" if any(frozen) else "THAWED"


def test_two_isolations_in_one_root_and_one_command(pn: Pinnace, busybox: str,
                                                    runc_site: Path) -> None:
    pn.add_site(runc_site)
    layers = layer_keys(pn, busybox)
    ids = {}
    for name, isolation in (("a", "unshare"), ("b", "runc")):
        ids[name] = pn("run", "-d", "--name", name, f"--isolation={isolation}", busybox,
                       "sleep", "3171").stdout.strip()
    assert runc_containers(pn.root) == [ids["b"]]  # a is not runc's

    def answers() -> None:
        for name, cid in ids.items():
            out = pn("exec", name, "sh", "-c", "hostname; tr '\\0' ' ' </proc/1/cmdline").stdout
            assert out.split() == [cid[:12], "sleep", "3171"], name

    answers()
    assert pn("pause", "a", "b").stdout.split() == ["a", "b"]
    assert statuses(pn, "a", "b") == ["paused", "paused"]
    assert [freezer_state(cid) for cid in ids.values()] == ["FROZEN", "FROZEN"]
    pn("unpause", "a", "b")
    assert statuses(pn, "a", "b") == ["running", "running"]
    assert [freezer_state(cid) for cid in ids.values()] == ["THAWED", "THAWED"]
    answers()
    assert pn("stop", "-t", "1", "a", "b").stdout.split() == ["a", "b"]
    assert statuses(pn, "a", "b") == ["exited", "exited"]
    held = {f"{storage} snapshot {cid}" for storage in ("dir", "btrfs") for cid in ids.values()}
    left = nothing_left(pn, None, layers, set(ids.values()))
    assert [t for t in left if not t.startswith("row ") and t not in held] == []
    assert len(left) == 4  # the two rows and the two rootfs snapshots
    pn("start", "a", "b")
    assert statuses(pn, "a", "b") == ["running", "running"]
    assert runc_containers(pn.root) == [ids["b"]]
    answers()
    pn("restart", "-t", "1", "b", "a")
    assert statuses(pn, "a", "b") == ["running", "running"]
    answers()
    assert pn("rm", "-f", "a", "b").stdout.split() == ["a", "b"]
    assert nothing_left(pn, None, layers, set(ids.values())) == []
    assert gone_soon("sleep 3171") == []


PULLS = '''
import json, sys
from pinnace import config
from pinnace.engine import Engine
from pinnace.errors import NotFound
from pinnace.images.sources import TransferOptions

engine = Engine(config.load(flags={"root": sys.argv[1]}))
found = {}
for reference in sys.argv[2:]:
    try:
        found[reference] = engine.pull(reference, TransferOptions())
    except NotFound as err:
        found[reference] = f"not found: {err}"
print(json.dumps(found))
'''


def test_three_image_sources_in_one_process(pn: Pinnace, busybox: str, rootfs: Path,
                                            dirsource_site: Path, tmp_path: Path) -> None:
    busybox_id = inspect(pn, busybox)[0]["Id"]
    archive = tmp_path / "busybox-docker.tar"
    pn("save", "-o", str(archive), busybox)
    pn("rmi", busybox)
    other = tmp_path / "other"
    subprocess.run(["cp", "-a", str(rootfs), str(other)], check=True)
    (other / "greeting").write_text("hello from a tarball\n")
    tarball = tmp_path / "other.tar"
    subprocess.run(["tar", "-C", str(other), "-cf", str(tarball), "."], check=True)
    pn.add_site(dirsource_site)
    refs = [f"dir:{rootfs}", f"tar:{tmp_path}/missing.tar", f"tar:{tarball}",
            f"docker-archive:{archive}", f"dir:{rootfs}"]
    proc = subprocess.run([sys.executable, "-c", PULLS, str(pn.root), *refs], env=pn.env,
                          capture_output=True, text=True, check=True)
    pulled = json.loads(proc.stdout)
    assert pulled[refs[1]] == f"not found: tar source {tmp_path}/missing.tar does not exist"
    assert pulled[refs[3]] == busybox_id  # the same config: the same image
    ids = {pulled[refs[0]], pulled[refs[2]], busybox_id}
    assert len(ids) == 3 and pulled[refs[4]] == pulled[refs[0]]
    assert {row["Id"] for row in json.loads(pn("images", "--format", "json").stdout)} == ids
    for ref, said in ((refs[0], "hello from a host directory"),
                      (refs[2], "hello from a tarball")):
        assert pn("run", "--rm", pulled[ref], "cat", "/greeting").stdout.strip() == said
        [history] = json.loads(pn("history", "--format", "json", pulled[ref]).stdout)
        assert ref.split(":")[0] + ":" in history["Comment"], history
    assert pn("run", "--rm", busybox_id, "sh", "-c", "test ! -e /greeting && echo ok").stdout \
        == "ok\n"


def test_rm_f_of_running_containers_on_two_storages_and_two_networks(
        npn: Pinnace, busybox: str, netns: Path, routed_site: Path) -> None:
    npn.add_site(routed_site)
    layers = layer_keys(npn, busybox)
    plan = {"c0": ("dir", "--net=bridge", "-p", "8091:80"), "c1": ("btrfs", "--net=routed"),
            "c2": ("dir", "--net=routed"), "c3": ("btrfs", "--net=bridge")}
    ids = {}
    for name, (storage, *net) in plan.items():
        ids[name] = npn("run", "-d", "--name", name, f"--storage={storage}", *net, busybox,
                        "sleep", "3172").stdout.strip()
    rows = {row["Name"].strip("/"): row for row in inspect(npn, *plan)}
    for name, (storage, net, *_) in plan.items():
        assert rows[name]["State"]["Status"] == "running"
        assert rows[name]["NetworkSettings"]["IPAddress"], name
        assert (rows[name]["Driver"], rows[name]["HostConfig"]["NetworkMode"]) == \
            (storage, net[6:]), name
    held = nothing_left(npn, netns, layers, set(ids.values()), settle=0)
    for storage, names in (("dir", ("c0", "c2")), ("btrfs", ("c1", "c3"))):
        assert {f"{storage} snapshot {ids[n]}" for n in names} <= set(held)
    assert sum(t.startswith("link pnv") for t in held) == 2
    assert sum(t.startswith("routed link rt") for t in held) == 2
    assert sum(t.startswith("routed lease") for t in held) == 2
    assert any("pn:ctr:" + ids["c0"][:12] in t for t in held)
    out = npn("rm", "-f", *plan)
    assert out.stdout.split() == list(plan) and out.stderr == ""
    assert nothing_left(npn, netns, layers, set(ids.values())) == []
    assert gone_soon("sleep 3172") == []


# ------------------------------------------------------------------ faults
SLEEPER = ("sh", "-c", "trap 'exit 0' TERM; sleep 3173 & wait")
"""A container command that runs until stopped, and stops at once on SIGTERM."""


def remove_all(pn: Pinnace) -> None:
    """``rm -f`` every container: the ordinary command that reclaims what one left."""
    left = pn("ps", "-aq", "--no-trunc").stdout.split()
    if left:
        pn("rm", "-f", *left)


@dataclass(frozen=True)
class Faulted:
    """A command to fault after each role hook it calls: ``setup`` runs before each try,
    ``reclaim`` after a failed one (ordinary commands, the faulted one again among them)."""

    command: tuple[str, ...]
    setup: Callable[[Pinnace], object] = lambda pn: None
    reclaim: Callable[[Pinnace], object] = remove_all
    undo: Callable[[Pinnace], object] | None = None
    """What undoes the command when it works (``reclaim`` when None)."""


def dir_bridge(pn: Pinnace) -> None:
    pn("run", "-d", "--name", "x", "--storage=dir", "--net=bridge", BUSYBOX, *SLEEPER)


def runc_btrfs_ports(pn: Pinnace) -> None:
    pn("run", "-d", "--name", "x", "--isolation=runc", "--storage=btrfs", "-p", "8094:80",
       BUSYBOX, *SLEEPER)


def fresh_layers(pn: Pinnace) -> None:
    """Drop busybox's layer snapshots: the next run unpacks them again."""
    tarball = pn.env["BUSYBOX_TAR"]
    pn("rmi", BUSYBOX)
    pn("import", "-c", 'CMD ["sh"]', tarball, BUSYBOX)


def again_then(command: tuple[str, ...], *after: tuple[str, ...]) -> Callable[[Pinnace], None]:
    """Reclaim by running ``command`` again (it must work now), then ``after``, then
    removing every container."""
    def reclaim(pn: Pinnace) -> None:
        pn(*command)
        for args in after:
            pn(*args)
        remove_all(pn)
    return reclaim


def pull_again(pn: Pinnace) -> None:
    image_id = pn("pull", "-q", f"tar:{pn.env['BUSYBOX_TAR']}").stdout.strip()
    pn("rmi", image_id)


BUSYBOX = "busybox:latest"
SEQUENCES = {
    "run -d": Faulted(("run", "-d", "--name", "f", "--storage=dir", "--net=bridge",
                       "-p", "8092:80", BUSYBOX, *SLEEPER)),
    "run -d, first on btrfs and routed": Faulted(
        ("run", "-d", "--name", "f", "--storage=btrfs", "--net=routed", BUSYBOX, *SLEEPER),
        setup=fresh_layers),
    "exec": Faulted(("exec", "x", "sh", "-c", "echo hi"), setup=dir_bridge,
                    reclaim=again_then(("exec", "x", "true"))),
    "stop": Faulted(("stop", "x"), setup=dir_bridge, reclaim=again_then(("stop", "x"))),
    "rm -f": Faulted(("rm", "-f", "x"), setup=runc_btrfs_ports),
    "network create": Faulted(("network", "create", "-d", "bridge", "n1"),
                              reclaim=again_then(("network", "create", "n1"),
                                                 ("network", "rm", "n1")),
                              undo=lambda pn: pn("network", "rm", "n1")),
    "network rm": Faulted(("network", "rm", "n1"), setup=lambda pn: (
        pn("network", "create", "n1"), pn("run", "--rm", "--network", "n1", BUSYBOX, "true")),
        reclaim=again_then(("network", "rm", "n1")), undo=remove_all),
    "commit": Faulted(("commit", "x", "committed:1"), setup=lambda pn: pn(
        "run", "--name", "x", "--storage=btrfs", BUSYBOX, "sh", "-c", "echo changed >/new"),
        reclaim=again_then(("commit", "x", "committed:1"), ("rmi", "committed:1"))),
    "pull tar:": Faulted(("pull", "-q", "tar:BUSYBOX_TAR"), reclaim=pull_again),
}


def listed(pn: Pinnace) -> tuple[list[str], list[str]]:
    """Image IDs and network names: what a failed command must leave as they were."""
    return (sorted(pn("images", "-q", "--no-trunc").stdout.split()),
            sorted(pn("network", "ls", "-q").stdout.split()))


def not_owned(pn: Pinnace, netns: Path, layers: set[str], ids: set[str]) -> list[str]:
    """With no container running: what no row owns (a row owns its rootfs snapshot; the
    runtime of a container that is not running is gone). Nothing while one runs."""
    rows = json.loads(pn("ps", "-a", "--format", "json").stdout)
    if any(row["State"] in ("running", "paused") for row in rows):
        return []
    owned = {f"row {row['Id'][:12]}" for row in rows}
    owned |= {f"{storage} snapshot {row['Id']}" for storage in STORAGES for row in rows}
    return [thing for thing in nothing_left(pn, netns, layers, ids) if thing not in owned]


@pytest.mark.parametrize("name", list(SEQUENCES))
def test_a_fault_after_each_role_hook_of_a_command_leaves_nothing(
        name: str, npn: Pinnace, busybox: str, busybox_tar: Path, netns: Path, faults: Path,
        runc_site: Path, routed_site: Path) -> None:
    sequence = SEQUENCES[name]
    npn.add_site(runc_site)
    npn.add_site(routed_site)
    npn.env["BUSYBOX_TAR"] = str(busybox_tar)
    command = tuple(a.replace("BUSYBOX_TAR", str(busybox_tar)) for a in sequence.command)
    layers = layer_keys(npn, busybox)
    for storage in ("dir", "btrfs"):  # the layers are unpacked, the default network exists
        npn("run", "--rm", "--net=bridge", f"--storage={storage}", busybox, "true")
    sequence.setup(npn)
    faults.unlink(missing_ok=True)
    with_fault(npn, "")(*command)
    hooks = list(dict.fromkeys(hook for hook, _ in logged(faults)))
    assert hooks, f"{name} calls no role hook"
    (sequence.undo or sequence.reclaim)(npn)
    assert nothing_left(npn, netns, layers, set()) == []
    problems = {}
    for hook in hooks:
        sequence.setup(npn)
        before = listed(npn)
        faults.unlink()
        proc = with_fault(npn, hook)(*command, check=False)
        said = proc.stderr.strip().splitlines()
        ids = {key for h, key in logged(faults) if h == "pinnace_storage_prepare"}
        ids |= set(npn("ps", "-aq", "--no-trunc").stdout.split())
        found = []
        if proc.returncode == 0 or len(said) != 1 or not said[0].startswith("Error: ") \
                or f"fault injected after {hook}" not in said[0]:
            found.append(f"exit {proc.returncode}, said {said}")
        if listed(npn) != before:
            found.append(f"images and networks {before} became {listed(npn)}")
        found += [f"before reclaiming: {thing}" for thing in not_owned(npn, netns, layers, ids)]
        sequence.reclaim(npn)
        found += nothing_left(npn, netns, layers, ids)
        if found:
            problems[hook] = found
            remove_all(npn)
    assert not problems, "\n".join(f"{hook}: {found}" for hook, found in problems.items())


def test_a_fault_in_a_monitors_teardown_is_reclaimed(npn: Pinnace, busybox: str, netns: Path,
                                                    faults: Path) -> None:
    """The monitor of ``run -d`` tears its container down when it exits (here on
    ``stop``): a fault after each role hook it calls then is written to its log, the
    container is exited with nothing running, and ``rm -f`` reclaims the rest."""
    layers = layer_keys(npn, busybox)
    run = ("run", "-d", "--name", "x", "--storage=dir", "--net=bridge", "-p", "8095:80",
           busybox, *SLEEPER)
    with_fault(npn, "")(*run)
    faults.unlink()
    npn("stop", "x")
    hooks = list(dict.fromkeys(hook for hook, _ in logged(faults)))
    assert {"pinnace_isolation_delete", "pinnace_network_del"} <= set(hooks)
    remove_all(npn)
    problems = {}
    for hook in hooks:
        cid = with_fault(npn, hook)(*run).stdout.strip()
        out = npn("stop", "x")
        found = [] if out.stderr == "" else [f"stop said {out.stderr!r}"]
        if statuses(npn, "x") != ["exited"]:
            found.append(f"x is {statuses(npn, 'x')}")
        said = (npn.root / "containers" / cid / "monitor.log").read_text()
        if f"fault injected after {hook}" not in said:
            found.append(f"the monitor's log says {said[-300:]!r}")
        found += [f"before reclaiming: {thing}"
                  for thing in not_owned(npn, netns, layers, {cid})]
        npn("rm", "-f", "x")
        found += nothing_left(npn, netns, layers, {cid})
        if found:
            problems[hook] = found
            remove_all(npn)
    assert not problems, "\n".join(f"{hook}: {found}" for hook, found in problems.items())


def test_a_network_del_that_fails_is_asked_again(npn: Pinnace, busybox: str, netns: Path,
                                                 faults: Path) -> None:
    """When a driver's ``del`` fails (here: it is never reached) in the monitor's teardown,
    the container's lease is kept, so ``rm`` asks the driver again and its port rules go."""
    layers = layer_keys(npn, busybox)
    failing = Pinnace(npn.root, env={**npn.env, "FAULT_BEFORE": "pinnace_network_del"},
                      prefix=tuple(npn.prefix))
    cid = failing("run", "-d", "--name", "x", "--storage=dir", "--net=bridge", "-p", "8096:80",
                  busybox, *SLEEPER).stdout.strip()
    npn("stop", "x")
    log = npn.root / "containers" / cid / "monitor.log"
    deadline = time.monotonic() + 30  # the monitor says it once the exit is recorded
    while "fault injected" not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "fault injected before pinnace_network_del" in log.read_text()
    left = not_owned(npn, netns, layers, set())
    assert [f for f in left if "pn:ctr:" in f], \
        f"the failed del should have left the port rules: {left}"
    npn("rm", "x")
    assert nothing_left(npn, netns, layers, {cid}) == []
