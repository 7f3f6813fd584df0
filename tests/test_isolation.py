"""What a process inside a default container started by ``pinnace run`` sees: only its own
processes, a pivoted root, a minimal /dev, read-only /sys, only loopback. The isolation
contract (tests/test_isolation_contract.py) covers the plugin's side: namespaces, cgroup,
limits, security, mounts, hostname, read-only rootfs and cleanup."""

from __future__ import annotations

from conftest import Pinnace

SH = "sh", "-c"


def run(pn: Pinnace, busybox: str, script: str, *flags: str) -> str:
    return pn("run", "--rm", *flags, busybox, *SH, script).stdout


def test_only_container_processes_are_visible(pn: Pinnace, busybox: str) -> None:
    pids = run(pn, busybox, "ls /proc | grep -E '^[0-9]+$'").split()
    assert "1" in pids and len(pids) <= 3  # sh, ls, grep: never the host's processes


def test_root_is_pivoted_not_chrooted(pn: Pinnace, busybox: str) -> None:
    out = run(pn, busybox, "ls /work /usr/lib/python3 2>&1; awk '$5==\"/\"' /proc/self/mountinfo")
    assert "No such file or directory" in out
    root_mounts = [line for line in out.splitlines() if line.split()[4:5] == ["/"]]
    assert len(root_mounts) == 1  # exactly one mount at /: the old root is gone


def test_dev_has_the_minimal_nodes(pn: Pinnace, busybox: str) -> None:
    out = run(pn, busybox, "ls /dev; echo x > /dev/null && echo null-ok; "
                           "head -c 4 /dev/zero | wc -c; ls /dev/pts; stat -c %a /dev/shm")
    names = set(out.split())
    assert {"null", "zero", "full", "random", "urandom", "tty", "pts", "shm", "ptmx"} <= names
    assert "null-ok" in out and "4" in out.split() and "1777" in out.split()
    assert not {"sda", "vda", "mem", "kmsg"} & names


def test_sys_is_read_only_and_proc_is_mounted(pn: Pinnace, busybox: str) -> None:
    out = run(pn, busybox, "touch /sys/x 2>&1; echo 1 > /sys/kernel/profiling 2>&1; "
                           "grep -E ' /(sys|proc) ' /proc/mounts")
    assert "Read-only file system" in out
    assert "sysfs /sys sysfs ro" in out and "proc /proc proc rw" in out


def test_own_network_has_only_loopback(pn: Pinnace, busybox: str) -> None:
    out = run(pn, busybox, "ls /sys/class/net; cat /sys/class/net/lo/operstate; "
                           "ifconfig lo | grep -o 'inet addr:[0-9.]*'")
    assert out.split()[0] == "lo"  # no host interface is visible
    assert "inet addr:127.0.0.1" in out


def test_a_missing_workdir_is_made_on_a_read_only_rootfs(pn: Pinnace, busybox: str) -> None:
    """``-w`` of a directory the image lacks is created before the root becomes read-only,
    as docker does; the rest of the root stays read-only."""
    out = pn("run", "--rm", "--read-only", "-w", "/srv/work", busybox, "sh", "-c",
             "pwd; touch /srv/work/x 2>/dev/null || echo read-only")
    assert out.stdout.split() == ["/srv/work", "read-only"]
