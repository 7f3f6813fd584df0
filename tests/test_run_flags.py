"""``run``'s process and namespace flags, each seen from inside a real container:
--init, --ulimit, --stop-signal/--stop-timeout, --shm-size, --sysctl, --device,
--group-add, --cidfile, --pid/--ipc/--uts; bad input is a one-line error and leaves
nothing behind."""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

import pytest
from conftest import Pinnace, fails, host_leftovers


def nothing_left(pn: Pinnace) -> None:
    assert pn("ps", "-aq").stdout == ""
    assert host_leftovers(pn.root) == []


def out(pn: Pinnace, *args: str) -> str:
    return pn("run", "--rm", *args).stdout


def test_init_is_pid_1_and_reaps(pn: Pinnace, busybox: str) -> None:
    cmdline = out(pn, "--init", busybox, "cat", "/proc/1/cmdline").split("\0")
    assert cmdline[0] == "/run/pinnace-init" and cmdline[1:4] == ["--", "cat", "/proc/1/cmdline"]
    binary = out(pn, "--init", busybox, "sh", "-c", "md5sum /run/pinnace-init").split()[0]
    import hashlib

    installed = next(p for p in ("/usr/bin/catatonit", "/usr/bin/tini-static")
                     if os.path.exists(p))
    assert binary == hashlib.md5(Path(installed).read_bytes()).hexdigest()
    # the exit code of the command passes through the init
    assert pn("run", "--rm", "--init", busybox, "sh", "-c", "exit 7",
              check=False).returncode == 7
    # read-only in the container
    assert "Read-only" in pn("run", "--rm", "--init", busybox, "sh", "-c",
                             "echo x > /run/pinnace-init", check=False).stderr


def test_init_path_tini(pn: Pinnace, busybox: str) -> None:
    """Debian's tini (static) as the init: PID 1, an orphan reaped, the exit code kept."""
    script = "(sleep 0.1 &); sleep 0.6; ps -o stat | grep -c '^Z'; cat /proc/1/cmdline; exit 3"
    proc = pn("run", "--rm", "--init", "--init-path", "/usr/bin/tini-static", busybox, "sh",
              "-c", script, check=False)
    assert proc.returncode == 3
    zombies, cmdline = proc.stdout.split("\n", 1)
    assert zombies == "0" and cmdline.split("\0")[:2] == ["/run/pinnace-init", "--"]


def test_init_path_errors(pn: Pinnace, busybox: str, tmp_path: Path) -> None:
    assert "not an executable file" in fails(pn, "run", "--init", "--init-path",
                                            str(tmp_path / "none"), busybox, "true")
    nothing_left(pn)


def test_ulimit_and_default_ulimits(pn: Pinnace, busybox: str, tmp_path: Path) -> None:
    assert out(pn, "--ulimit", "nofile=1024:2048", busybox, "sh", "-c",
               "ulimit -n; ulimit -Hn").split() == ["1024", "2048"]
    assert out(pn, "--ulimit", "nproc=77", "--ulimit", "core=-1", busybox, "sh", "-c",
               "ulimit -u; ulimit -c").split() == ["77", "unlimited"]
    config = tmp_path / "pinnace.toml"
    config.write_text('[engine]\ndefault_ulimits = ["nofile=333:444", "stack=8388608"]\n')
    pn.env["PINNACE_CONFIG"] = str(config)
    assert out(pn, busybox, "sh", "-c", "ulimit -n; ulimit -Hn").split() == ["333", "444"]
    # a flag overrides the configured default of the same name
    assert out(pn, "--ulimit", "nofile=50", busybox, "sh", "-c",
               "ulimit -n; ulimit -s").split() == ["50", "8192"]


@pytest.mark.parametrize("flag,message", [
    ("nofile", "invalid ulimit argument"),
    ("nofiles=1", "invalid ulimit type: nofiles"),
    ("nofile=10:5", "soft limit must be less than or equal to hard limit"),
    ("nofile=x", "invalid ulimit argument"),
])
def test_bad_ulimits(pn: Pinnace, busybox: str, flag: str, message: str) -> None:
    assert message in fails(pn, "run", "--ulimit", flag, busybox, "true")
    nothing_left(pn)


def test_stop_signal_and_timeout(pn: Pinnace, busybox: str) -> None:
    # the shell ignores TERM: only its stop signal (USR1, trapped) ends it quickly
    script = "trap 'exit 42' USR1; trap '' TERM; while :; do sleep 0.1; done"
    cid = pn("run", "-d", "--stop-signal", "USR1", busybox, "sh", "-c", script).stdout.strip()
    time.sleep(0.3)
    pn("stop", cid)
    assert json.loads(pn("inspect", cid).stdout)[0]["State"]["ExitCode"] == 42
    # TERM ignored: killed after its own --stop-timeout (1 s), not docker's 10
    cid = pn("run", "-d", "--stop-timeout", "1", busybox, "sh", "-c",
             "trap '' TERM; while :; do sleep 0.1; done").stdout.strip()
    time.sleep(0.3)
    started = time.monotonic()
    pn("stop", cid)
    assert time.monotonic() - started < 6
    assert json.loads(pn("inspect", cid).stdout)[0]["State"]["ExitCode"] == 137
    assert "invalid signal: NOPE" in fails(pn, "run", "--stop-signal", "NOPE", busybox, "true")


def test_image_stopsignal(pn: Pinnace, busybox_tar: Path) -> None:
    pn("import", "-c", "STOPSIGNAL SIGUSR2", "-c", 'CMD ["sh"]', str(busybox_tar), "stopper")
    cid = pn("run", "-d", "stopper", "sh", "-c",
             "trap 'exit 9' USR2; trap '' TERM; while :; do sleep 0.1; done").stdout.strip()
    time.sleep(0.3)
    pn("stop", "-t", "20", cid)
    assert json.loads(pn("inspect", cid).stdout)[0]["State"]["ExitCode"] == 9


def test_shm_size(pn: Pinnace, busybox: str) -> None:
    def shm_kib(*flags: str) -> int:
        return int(out(pn, *flags, busybox, "df", "-k", "/dev/shm").splitlines()[1].split()[1])

    assert shm_kib() == 65536
    assert shm_kib("--shm-size", "128m") == 131072
    assert "invalid size for --shm-size" in fails(pn, "run", "--shm-size", "lots", busybox,
                                                  "true")
    nothing_left(pn)


def test_sysctls(pn: Pinnace, busybox: str) -> None:
    assert out(pn, "--sysctl", "kernel.shmmax=123456", busybox, "cat",
               "/proc/sys/kernel/shmmax").strip() == "123456"
    assert out(pn, "--sysctl", "net.ipv4.ip_unprivileged_port_start=99", busybox, "cat",
               "/proc/sys/net/ipv4/ip_unprivileged_port_start").strip() == "99"
    with open("/proc/sys/kernel/shmmax") as f:
        assert f.read().strip() != "123456"  # the host's own is untouched
    assert "not whitelisted" in fails(pn, "run", "--sysctl", "vm.swappiness=1", busybox, "true")
    assert "host's IPC namespace" in fails(pn, "run", "--ipc", "host", "--sysctl",
                                           "kernel.msgmax=9000", busybox, "true")
    assert "host's network namespace" in fails(pn, "run", "--net", "host", "--sysctl",
                                               "net.ipv4.ip_forward=1", busybox, "true")
    assert "invalid --sysctl" in fails(pn, "run", "--sysctl", "kernel.shmmax", busybox, "true")
    # a namespaced prefix does not lead to a host-wide parameter through the path
    assert "invalid --sysctl" in fails(pn, "run", "--sysctl",
                                       "net.ipv4/../../kernel/sysrq=0", busybox, "true")
    nothing_left(pn)


def test_device(pn: Pinnace, busybox: str) -> None:
    listing = out(pn, "--device", "/dev/null:/dev/mynull", busybox, "sh", "-c",
                  "ls -l /dev/mynull && echo hi > /dev/mynull && cat /dev/mynull && echo ok")
    assert listing.startswith("crw-rw-rw-") and " 1,   3 " in listing
    assert listing.strip().endswith("ok")
    assert "/dev/kmsg" in out(pn, "--device", "/dev/kmsg", busybox, "ls", "/dev/kmsg")
    assert "not a device node" in fails(pn, "run", "--device", "/etc/passwd", busybox, "true")
    assert "error gathering device information" in fails(pn, "run", "--device", "/dev/nope",
                                                         busybox, "true")
    assert "invalid device mode" in fails(pn, "run", "--device", "/dev/null:/dev/x:rwz",
                                          busybox, "true")
    nothing_left(pn)


def test_group_add(pn: Pinnace, busybox: str) -> None:
    ids = out(pn, "-u", "nobody", "--group-add", "1234", "--group-add", "root", busybox,
              "id", "-G").split()
    assert ids == ["65534", "0", "1234"]  # primary group first, then the added ones
    assert "unable to find group nosuch" in fails(pn, "run", "--group-add", "nosuch", busybox,
                                                  "true")
    nothing_left(pn)


def test_cidfile(pn: Pinnace, busybox: str, tmp_path: Path) -> None:
    path = tmp_path / "cid"
    cid = pn("run", "-d", "--cidfile", str(path), busybox, "sleep", "60").stdout.strip()
    assert path.read_text() == cid
    assert "container ID file found" in fails(pn, "run", "--cidfile", str(path), busybox, "true")
    assert pn("ps", "-aq", "--no-trunc").stdout.split() == [cid]  # the refused one not made
    assert list(tmp_path.iterdir()) == [path]  # no temporary left
    made = tmp_path / "made"
    created = pn("create", "--cidfile", str(made), busybox, "true").stdout.strip()
    assert made.read_text() == created
    made.unlink()
    # a start that fails with --rm: the container and its file are gone
    gone = tmp_path / "gone"
    assert pn("run", "--rm", "--cidfile", str(gone), busybox, "/no/such",
              check=False).returncode == 127
    assert not gone.exists()


def test_pid_host_and_container(pn: Pinnace, busybox: str) -> None:
    assert str(os.getpid()) in out(pn, "--pid", "host", busybox, "sh", "-c",
                                   "ls /proc 2>/dev/null; true").split()
    first = pn("run", "-d", "--name", "first", busybox, "sleep", "60").stdout.strip()
    seen = out(pn, "--pid", "container:first", busybox, "ps", "-o", "args")
    assert "sleep 60" in seen
    pn("stop", "-t", "0", first)
    assert "not running" in fails(pn, "run", "--pid", "container:first", busybox, "true")
    assert "invalid --pid mode" in fails(pn, "run", "--pid", "nope", busybox, "true")
    assert "invalid --pid mode" in fails(pn, "run", "--pid", "shareable", busybox, "true")
    assert "nope" in fails(pn, "run", "--pid", "container:nope", busybox, "true")
    assert pn("ps", "-aq", "--no-trunc").stdout.split() == [first]
    assert host_leftovers(pn.root) == []


def test_ipc_container_shares_sysv_shm(pn: Pinnace, busybox: str) -> None:
    pn("run", "-d", "--name", "owner", "--ipc", "shareable", busybox, "sleep", "60")
    # busybox has no ipcmk: a segment from the host side of the owner's namespace
    owner_pid = json.loads(pn("inspect", "owner").stdout)[0]["State"]["Pid"]
    import subprocess

    made = subprocess.run(["nsenter", f"--ipc=/proc/{owner_pid}/ns/ipc", "ipcmk", "-M", "4096"],
                          capture_output=True, text=True, check=True).stdout
    shmid = made.split()[-1]
    shared = out(pn, "--ipc", "container:owner", busybox, "cat", "/proc/sysvipc/shm")
    assert any(line.split()[1] == shmid for line in shared.splitlines()[1:])
    private = out(pn, busybox, "cat", "/proc/sysvipc/shm")
    assert len(private.splitlines()) == 1  # only the header: a namespace of its own
    assert "invalid --ipc mode" in fails(pn, "run", "--ipc", "public", busybox, "true")


def test_uts_host(pn: Pinnace, busybox: str) -> None:
    assert out(pn, "--uts", "host", busybox, "hostname").strip() == socket.gethostname()
    assert out(pn, busybox, "hostname").strip() != socket.gethostname()
    assert "conflicting options" in fails(pn, "run", "--uts", "host", "-h", "x", busybox, "true")
    nothing_left(pn)
