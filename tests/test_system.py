"""``system df`` (storage plugins measure what they hold) and ``system check`` (isolation
and network plugins say whether a running container is as they made it)."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

from conftest import Pinnace

from pinnace.testing.netns import leftovers, run_in


def usage(pn: Pinnace) -> dict[str, dict[str, int]]:
    listed = pn("system", "df", "--storage", "--format", "json").stdout
    return {u["Storage"]: u for u in json.loads(listed)}


def test_df_asks_each_storage_plugin(pn: Pinnace, busybox: str) -> None:
    pn("run", "--name", "small", "--storage=dir", busybox, "true")
    pn("run", "--name", "big", "--storage=btrfs", busybox, "sh", "-c",
       "dd if=/dev/urandom of=/blob bs=1M count=3 2>/dev/null")
    found = usage(pn)
    assert set(found) == {"dir", "btrfs"}
    assert found["dir"]["Containers"] == 1 and found["btrfs"]["Containers"] == 1
    assert found["dir"]["Layers"] >= 1 and found["btrfs"]["Layers"] >= 1
    assert found["btrfs"]["Size"] >= 3 * 1024 * 1024
    assert found["dir"]["Inodes"] > 0
    table = pn("system", "df", "--storage").stdout.splitlines()
    assert table[0].split() == ["STORAGE", "CONTAINERS", "LAYERS", "SIZE", "INODES"]
    pn("rm", "big")
    assert usage(pn)["btrfs"]["Containers"] == 0
    assert usage(pn)["btrfs"]["Size"] < found["btrfs"]["Size"]


def test_check_finds_a_broken_network_and_repairs_it(npn: Pinnace, busybox: str,
                                                     netns: Path) -> None:
    npn("run", "-d", "--name", "web", "--net=bridge", busybox, "sleep", "600")
    npn("run", "-d", "--name", "quiet", "--net=none", busybox, "sleep", "600")
    assert npn("system", "check").stdout == ""
    [veth] = [line.split()[1].split("@")[0].rstrip(":") for line in
              run_in(netns, "ip", "-o", "link").stdout.splitlines() if " pnv" in line]
    run_in(netns, "ip", "link", "set", veth, "nomaster")
    proc = npn("system", "check", check=False)
    assert proc.returncode == 1
    assert proc.stdout.splitlines() == [
        f"container web: network pinnace0: {veth} is not on its bridge"]
    npn("system", "check", "--repair", check=False)
    states = {r["Names"][0]: r["State"] for r in
              json.loads(npn("ps", "-a", "--format", "json").stdout)}
    assert states == {"web": "exited", "quiet": "running"}
    assert npn("system", "check").returncode == 0
    npn("rm", "-f", "web", "quiet")
    assert leftovers(netns) == []


def test_check_asks_the_isolation_plugin(pn: Pinnace, busybox: str) -> None:
    pn("run", "-d", "--name", "held", "--net=none", busybox, "sleep", "600")
    record = json.loads(pn("inspect", "held").stdout)[0]
    pid = record["State"]["Pid"]
    monitor = int(Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[1])
    os.kill(monitor, signal.SIGSTOP)  # the monitor cannot reap or record what follows
    try:
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0] != "Z":
            assert time.monotonic() < deadline, "the container's process did not die"
            time.sleep(0.02)
        proc = pn("system", "check", check=False)
        assert proc.returncode == 1
        assert proc.stdout.splitlines() == ["container held: its unshare isolation sees it "
                                            "stopped"]
    finally:
        os.kill(monitor, signal.SIGCONT)
    pn("rm", "-f", "held")


def test_check_asks_the_storage_for_every_layer(pn: Pinnace, busybox: str) -> None:
    from pinnace import config
    from pinnace.engine import Engine

    pn("run", "--rm", "--storage=dir", busybox, "true")
    engine = Engine(config.load(flags={"root": str(pn.root)}))
    [layer] = [s.key for s in engine.plugins.call("storage", "dir", "walk")]
    engine.plugins.call("storage", "dir", "remove", key=layer)  # lost behind pinnace's back
    proc = pn("system", "check", check=False)
    assert proc.returncode == 1
    assert proc.stdout.splitlines() == [f"layer {layer} is gone from storage dir"]
    pn("system", "check", "--repair", check=False)
    assert pn("system", "check").stdout == ""
    assert pn("run", "--rm", "--storage=dir", busybox, "echo", "again").stdout == "again\n"


def dead_pid() -> int:
    """The PID of a process that has exited."""
    import subprocess

    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_check_finds_and_repairs_what_nothing_names(pn: Pinnace, busybox: str) -> None:
    """What a pinnace killed mid-way leaves (an unpack snapshot, a commit view, a rootfs
    of no container, a blob temp file) is reported, and removed by --repair."""
    from pinnace import config
    from pinnace.engine import Engine

    pn("run", "--rm", "--storage=dir", busybox, "true")
    engine = Engine(config.load(flags={"root": str(pn.root)}))
    [layer] = [s.key for s in engine.plugins.call("storage", "dir", "walk")]
    pid = dead_pid()
    stray = {f"extract-{pid}-{layer}": None, f"commit-{pid}-feed": layer, "ab" * 32: layer}
    for key, parent in stray.items():
        engine.plugins.call("storage", "dir", "prepare", key=key, parent=parent, labels={})
    temp = pn.root / "images" / "blobs" / "sha256" / f".tmp-{pid}-0123"
    temp.write_bytes(b"half a blob")
    proc = pn("system", "check", check=False)
    assert proc.returncode == 1
    assert sorted(proc.stdout.splitlines()) == sorted(
        [f"snapshot {key} of storage dir belongs to nothing" for key in stray]
        + [f"blob temp file {temp.name} belongs to nothing"])
    pn("system", "check", "--repair", check=False)
    assert pn("system", "check").stdout == ""
    assert [s.key for s in engine.plugins.call("storage", "dir", "walk")] == [layer]
    assert not temp.exists()
    assert pn("run", "--rm", "--storage=dir", busybox, "echo", "fine").stdout == "fine\n"


def test_a_run_rm_whose_pinnace_was_killed_is_removed(pn: Pinnace, busybox: str) -> None:
    """kill -9 of ``pinnace run --rm`` (its container dies with it): the next command
    finds the container's monitor gone and removes it, as --rm asked."""
    proc = pn.popen("run", "--rm", "--name", "gone", busybox, "sleep", "60",
                    stdout=-1, stderr=-1)
    deadline = time.monotonic() + 30
    while not any(r["Names"] == ["gone"] and r["State"] == "running"
                  for r in json.loads(pn("ps", "--format", "json").stdout)):
        assert time.monotonic() < deadline, "the container did not start"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    assert pn("ps", "-a", "-q").stdout.strip() == ""
    assert usage(pn)["btrfs"]["Containers"] == 0
