"""User namespaces for root's containers (--userns, --uidmap/--gidmap): container root is
an unprivileged host uid from pinnace's subordinate ranges, the rootfs and volumes are
idmapped, exec joins the namespace; the security battery runs again in that mode."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from conftest import USERNS_MODE, Pinnace, host_leftovers
from test_detached import inspect

from pinnace.runtime.userns import subordinate

TESTS = Path(__file__).resolve().parent


def pinnace_ranges() -> tuple[int, int]:
    """The first subordinate uid range of user pinnace (``make deps`` makes it)."""
    ranges = subordinate("pinnace", "/etc/subuid")
    assert ranges, "user pinnace has no /etc/subuid range: run `make deps`"
    return ranges[0]


def host_uid(pid: int) -> int:
    """The real uid of host process ``pid``."""
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        line = next(x for x in f if x.startswith("Uid:"))
    return int(line.split()[1])


def running_pid(pn: Pinnace, cid: str) -> int:
    return int(inspect(pn, cid)["State"]["Pid"])


def test_auto_gives_each_container_a_block_of_its_own(pn: Pinnace, busybox: str) -> None:
    start, count = pinnace_ranges()
    first = pn("run", "-d", "--userns=auto", busybox, "sleep", "60").stdout.strip()
    second = pn("run", "-d", "--userns=auto", busybox, "sleep", "60").stdout.strip()
    uids = [host_uid(running_pid(pn, c)) for c in (first, second)]
    assert all(start <= u < start + count for u in uids), uids
    assert abs(uids[0] - uids[1]) >= 65536  # disjoint blocks
    inside = pn("exec", first, "sh", "-c", "id -u; id -g; cat /proc/self/uid_map").stdout
    assert inside.split() == ["0", "0", "0", str(uids[0]), "65536"]
    exec_proc = pn.popen("exec", second, "sleep", "30")
    try:
        for _ in range(100):  # the exec'd sleep shows up beside the first one
            pids = subprocess.run(["pgrep", "-x", "-u", str(uids[1]), "sleep"],
                                  capture_output=True, text=True).stdout.split()
            if len(pids) == 2:
                break
            subprocess.run(["sleep", "0.05"], check=True)
        assert len(pids) == 2, pids  # exec joined the user namespace: the same host uid
    finally:
        pn("rm", "-f", second)
        exec_proc.wait(timeout=30)


def test_rootfs_is_idmapped_and_files_written_belong_to_container_root(
        pn: Pinnace, busybox: str) -> None:
    cid = pn("run", "-d", "--userns=auto", busybox, "sh", "-c",
             "mkdir -p /srv/made && echo hi > /srv/made/f && sleep 60").stdout.strip()
    pid = running_pid(pn, cid)
    owners = pn("exec", cid, "sh", "-c", "sleep 0.3; stat -c %u:%g / /bin/busybox /dev "
                                         "/srv/made/f").stdout.split()
    assert owners == ["0:0"] * 4
    with open(f"/proc/{pid}/mountinfo", encoding="utf-8") as f:
        root_line = next(line for line in f if line.split()[4] == "/")
    assert "idmapped" in root_line.split()[5]  # mapped by the mount, not by copying files
    pn("commit", cid, "made:1")
    pn("rm", "-f", cid)
    on_disk = pn("run", "--rm", "--userns=host", "made:1", "stat", "-c", "%u:%g",
                 "/srv/made/f").stdout.split()
    assert on_disk == ["0:0"]  # stored unshifted: any mapping (or none) sees root's file


def test_private_and_explicit_maps(pn: Pinnace, busybox: str) -> None:
    start, _ = pinnace_ranges()
    maps = pn("run", "--rm", "--userns=private", busybox, "cat", "/proc/self/uid_map",
              "/proc/self/gid_map").stdout.split()
    assert maps == ["0", str(start), "65536"] * 2
    explicit = pn("run", "--rm", "--uidmap", "0:1500000:1000", "--uidmap", "1000:1600000:10",
                  "--gidmap", "0:1700000:2000", busybox, "cat", "/proc/self/uid_map",
                  "/proc/self/gid_map").stdout.split()
    assert explicit == ["0", "1500000", "1000", "1000", "1600000", "10",
                        "0", "1700000", "2000"]


def test_config_default_and_host_override(pn: Pinnace, busybox: str) -> None:
    pn.env["PINNACE_USERNS"] = "auto"
    mapped = pn("run", "--rm", busybox, "cat", "/proc/self/uid_map").stdout.split()
    assert mapped[0] == "0" and mapped[1] != "0"
    host = pn("run", "--rm", "--userns=host", busybox, "cat", "/proc/self/uid_map")
    assert host.stdout.split() == ["0", "0", "4294967295"]
    privileged = pn("run", "--rm", "--privileged", busybox, "cat", "/proc/self/uid_map")
    assert privileged.stdout.split() == ["0", "0", "4294967295"]  # the default yields


@pytest.mark.parametrize("flags", [("--userns=auto",), ("--userns=private",),
                                   ("--uidmap", "0:1400000:65536")])
def test_container_root_cannot_read_a_root_only_host_file(
        pn: Pinnace, busybox: str, tmp_path: Path, flags: tuple[str, ...]) -> None:
    secret = tmp_path / "secret"
    secret.write_text("host root only\n")
    secret.chmod(0o600)
    script = ("cat /hostdir/secret; echo cat=$?; echo x >> /hostdir/secret; echo write=$?;"
              " stat -c %u /hostdir; kill -0 {pid}; echo kill=$?")
    victim = subprocess.Popen(["sleep", "60"])
    try:
        out = pn("run", "--rm", *flags, "-v", f"{tmp_path}:/hostdir", busybox, "sh", "-c",
                 "exec 2>&1; " + script.format(pid=victim.pid)).stdout
        assert victim.poll() is None
    finally:
        victim.kill()
        victim.wait()
    assert "cat=1" in out and "Permission denied" in out, out
    assert "write=1" in out, out
    assert "65534" in out.split(), out  # host root is nobody in there
    assert "kill=1" in out, out
    assert secret.read_text() == "host root only\n"
    as_root = pn("run", "--rm", "--userns=host", "-v", f"{tmp_path}:/hostdir", busybox,
                 "cat", "/hostdir/secret")
    assert as_root.stdout == "host root only\n"  # the same bind, without a user namespace


def test_capabilities_reach_only_the_containers_own_namespace(pn: Pinnace,
                                                              busybox: str) -> None:
    """CAP_SYS_ADMIN given to a container with a user namespace holds there only: its
    mounts, hostname and clock belong to host root."""
    out = pn("run", "--rm", "--userns=auto", "--cap-add", "SYS_ADMIN", "--cap-add",
             "SYS_TIME", busybox, "sh", "-c",
             "exec 2>&1; mount -t tmpfs t /tmp; echo mount=$?; hostname evil; echo host=$?;"
             " mknod /tmp/kmsg c 1 11; echo mknod=$?").stdout
    assert "mount=0" not in out and "host=0" not in out and "mknod=0" not in out, out
    assert os.uname().nodename != "evil"


def test_volumes_follow_the_mapping(pn: Pinnace, busybox: str) -> None:
    pn("run", "--rm", "--userns=auto", "-v", "shared:/data", busybox, "sh", "-c",
       "echo one > /data/f")
    second = pn("run", "--rm", "--userns=auto", "-v", "shared:/data", busybox, "sh", "-c",
                "stat -c %u /data/f; echo two >> /data/f; cat /data/f").stdout.split()
    assert second == ["0", "one", "two"]  # another block of ids, the same owner
    path = Path(json.loads(pn("volume", "inspect", "shared").stdout)[0]["Mountpoint"])
    assert (path / "f").stat().st_uid == 0  # stored as root's file


def import_far_owned(pn: Pinnace, busybox_tar: Path, tmp_path: Path) -> None:
    """Import ``wide:1``: busybox and ``/far``, owned by uid and gid 70000 (beyond a
    :data:`pinnace.runtime.userns.AUTO_SIZE` mapping)."""
    tar = tmp_path / "wide.tar"
    with tarfile.open(busybox_tar) as src, tarfile.open(tar, "w") as dst:
        for member in src.getmembers():
            dst.addfile(member, src.extractfile(member) if member.isfile() else None)
        far = tarfile.TarInfo("far")
        far.uid = far.gid = 70000
        dst.addfile(far)
    pn("import", "-c", 'CMD ["sh"]', str(tar), "wide:1")


def test_files_beyond_the_mapping_appear_as_the_overflow_uid(
        pn: Pinnace, busybox_tar: Path, tmp_path: Path) -> None:
    import_far_owned(pn, busybox_tar, tmp_path)
    squashed = pn("run", "--rm", "--userns=auto", "wide:1", "sh", "-c",
                  "exec 2>&1; stat -c %u:%g /far; echo x > /far; echo write=$?").stdout
    assert squashed.split()[0] == "65534:65534", squashed
    assert "write=1" in squashed, squashed  # an unmapped owner: not container root's
    wide = pn("run", "--rm", "--uidmap", "0:1100000:100000", "wide:1", "stat", "-c", "%u:%g",
              "/far").stdout.split()
    assert wide == ["70000:70000"]


def assert_refused(pn: Pinnace, image: str, flags: tuple[str, ...], message: str) -> None:
    """``run`` with ``flags`` fails in one line naming ``message`` and leaves nothing."""
    proc = pn("run", "--rm", *flags, image, "true", check=False)
    assert proc.returncode == 125, proc
    assert proc.stderr.count("\n") == 1 and message in proc.stderr, proc.stderr
    assert pn("ps", "-aq").stdout == ""
    assert host_leftovers(pn.root) == []


@pytest.mark.parametrize(("flags", "message"), [
    (("--uidmap", "0:1500000:1000", "--uidmap", "500:1600000:10"),
     "0:1500000:1000 and 500:1600000:10 overlap on the container side"),
    (("--uidmap", "0:1500000:1000", "--uidmap", "2000:1500500:10"),
     "overlap on the host side"),
    (("--uidmap", "0:1500000"), "expected CONTAINER:HOST:SIZE"),
    (("--uidmap", "0:1500000:0"), "the size at least 1"),
    (("--userns=keep-id",), "is for a run by an ordinary user"),
    (("--userns=sideways",), "unknown --userns mode 'sideways'"),
    (("--userns=auto", "--privileged"), "--privileged runs in the host's user namespace"),
])
def test_bad_mappings_are_one_line_and_leave_nothing(
        pn: Pinnace, busybox: str, flags: tuple[str, ...], message: str) -> None:
    assert_refused(pn, busybox, flags, message)


def test_a_user_without_subordinate_ranges(pn: Pinnace, busybox: str) -> None:
    pn.env["PINNACE_USERNS_USER"] = "nobody"
    assert_refused(pn, busybox, ("--userns=auto",),
                   "user nobody has no subordinate ids in /etc/subuid")


def test_auto_refuses_when_every_block_is_taken(pn: Pinnace, busybox: str) -> None:
    assert subordinate("pinnace-test", "/etc/subuid") == [(3000000, 65536)]  # one block
    pn.env["PINNACE_USERNS_USER"] = "pinnace-test"
    pn("create", "--userns=auto", busybox, "true")
    proc = pn("run", "--rm", "--userns=auto", busybox, "true", check=False)
    assert proc.returncode == 125 and "no free block of 65536 subuid ids" in proc.stderr
    assert len(pn("ps", "-aq").stdout.split()) == 1


GRANTS = ("test_cap_add_and_cap_drop", "CAP_SYS_ADMIN", "gating")
"""Tests of what a capability grants over host-owned mounts, clock and devices: in a user
namespace it grants nothing there (checked above), so the battery runs without them."""


def test_escape_battery_in_a_user_namespace(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "2",
         "-k", " and ".join(f"not {name}" for name in GRANTS),
         str(TESTS / "test_security.py"), str(TESTS / "test_seccomp.py")],
        capture_output=True, text=True, cwd=tmp_path,
        env={**os.environ, USERNS_MODE: "auto"}, timeout=900)
    assert run.returncode == 0, run.stdout[-4000:]
    assert " passed" in run.stdout and "failed" not in run.stdout


def test_concurrent_auto_runs_get_distinct_blocks(pn: Pinnace, busybox: str) -> None:
    """The block is chosen and recorded in one transaction: runs started together never
    share one."""
    start, count = pinnace_ranges()
    procs = [pn.popen("run", "-d", "--userns=auto", busybox, "sleep", "60",
                      stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(8)]
    outs = [p.communicate(timeout=180) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    blocks = []
    for out, _ in outs:
        maps = json.loads(pn("inspect", out.strip()).stdout)[0]
        pid = int(maps["State"]["Pid"])
        with open(f"/proc/{pid}/uid_map", encoding="ascii") as f:
            uid_block = int(f.read().split()[1])
        with open(f"/proc/{pid}/gid_map", encoding="ascii") as f:
            gid_block = int(f.read().split()[1])
        assert start <= uid_block < start + count
        blocks.append((uid_block, gid_block))
    assert len({b[0] for b in blocks}) == 8, blocks
    assert len({b[1] for b in blocks}) == 8, blocks
    pn("rm", "-f", *[out.strip() for out, _ in outs])
    again = pn("run", "--rm", "--userns=auto", busybox, "cat", "/proc/self/uid_map").stdout
    assert again.split()[1] == str(start)  # the removed containers' blocks are free again


def test_subordinate_ranges_overlapping_another_users_are_refused(
        pn: Pinnace, busybox: str, tmp_path: Path) -> None:
    """/etc/subuid giving pinnace ids that another user also has: --userns=auto refuses
    (their containers would share host ids); doctor warns. The files are replaced in a
    mount namespace of the test's own."""
    start, count = pinnace_ranges()
    fake = {}
    for name in ("subuid", "subgid"):
        fake[name] = tmp_path / name
        fake[name].write_text(f"pinnace:{start}:{count}\nintruder:{start + 70000}:65536\n")
    binds = " && ".join(f"mount --bind {fake[n]} /etc/{n}" for n in fake)
    shell = Pinnace(pn.root, env=pn.env, prefix=(
        "unshare", "--mount", "--propagation", "private", "sh", "-c",
        binds + ' && exec "$@"', "sh"))
    proc = shell("run", "--rm", "--userns=auto", busybox, "true", check=False)
    assert proc.returncode == 125, proc
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert (f"pinnace's ids {start}-{start + count - 1} in /etc/subuid overlap intruder's "
            f"{start + 70000}-{start + 70000 + 65535}") in proc.stderr, proc.stderr
    assert pn("ps", "-aq").stdout == "" and host_leftovers(pn.root) == []
    doctor = json.loads(shell("doctor", "--format", "json", check=False).stdout)
    check = next(c for c in doctor if c["check"] == "subordinate ids of pinnace are its own")
    assert check["ok"] == "warn" and "overlap intruder's" in check["detail"]
    fine = pn("doctor", "--format", "json", check=False).stdout
    assert next(c for c in json.loads(fine)
                if c["check"] == "subordinate ids of pinnace are its own")["ok"] == "yes"


def test_the_nosub_user_is_refused_in_one_line(pn: Pinnace, busybox: str) -> None:
    assert subordinate("pinnace-nosub", "/etc/subuid") == []
    pn.env["PINNACE_USERNS_USER"] = "pinnace-nosub"
    for mode in ("auto", "private"):
        assert_refused(pn, busybox, (f"--userns={mode}",),
                       "user pinnace-nosub has no subordinate ids in /etc/subuid")
