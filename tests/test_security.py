"""Default hardening against the real kernel: capabilities, seccomp, masked and read-only
paths, the device allowlist, and escape attempts from inside a default container."""

from __future__ import annotations

import json
import os
import tarfile
from pathlib import Path

from conftest import Pinnace
from test_detached import inspect

DEFAULT_CAPS = 0xA80425FB  # docker's default set, as /proc/PID/status shows it
CAP_NET_ADMIN, CAP_SYS_ADMIN, CAP_CHOWN = 1 << 12, 1 << 21, 1 << 0


def status_fields(text: str) -> dict[str, str]:
    """/proc/self/status as a dict."""
    return {k.strip(): v.strip() for k, _, v in
            (line.partition(":") for line in text.splitlines()) if v}


def proc_status(pn: Pinnace, image: str, *flags: str) -> dict[str, str]:
    return status_fields(pn("run", "--rm", *flags, image, "cat", "/proc/self/status").stdout)


def test_default_capabilities_seccomp_and_no_new_privs(pn: Pinnace, busybox: str) -> None:
    st = proc_status(pn, busybox)
    assert int(st["CapEff"], 16) == DEFAULT_CAPS
    assert int(st["CapPrm"], 16) == DEFAULT_CAPS
    assert int(st["CapBnd"], 16) == DEFAULT_CAPS
    assert int(st["CapInh"], 16) == 0 and int(st["CapAmb"], 16) == 0
    assert st["Seccomp"] == "2"  # a filter is installed
    assert st["NoNewPrivs"] == "0"


def test_cap_add_and_cap_drop(pn: Pinnace, busybox: str) -> None:
    only = proc_status(pn, busybox, "--cap-drop", "ALL", "--cap-add", "net_admin")
    assert int(only["CapEff"], 16) == CAP_NET_ADMIN
    assert int(only["CapBnd"], 16) == CAP_NET_ADMIN
    fewer = proc_status(pn, busybox, "--cap-drop", "CAP_CHOWN")
    assert int(fewer["CapEff"], 16) == DEFAULT_CAPS & ~CAP_CHOWN
    # CAP_SYS_ADMIN also lifts the seccomp rules docker ties to it: mount works
    out = pn("run", "--rm", "--cap-add", "SYS_ADMIN", busybox, "sh", "-c",
             "grep CapEff /proc/self/status; mount -t tmpfs t /tmp && echo mounted")
    assert int(status_fields(out.stdout)["CapEff"], 16) == DEFAULT_CAPS | CAP_SYS_ADMIN
    assert "mounted" in out.stdout


def test_privileged_lifts_everything(pn: Pinnace, busybox: str) -> None:
    host = status_fields(Path("/proc/self/status").read_text())
    out = pn("run", "--rm", "--privileged", busybox, "sh", "-c",
             "cat /proc/self/status; mount -t tmpfs t /tmp && echo mounted;"
             " grep -c ' /proc/keys ' /proc/mounts; true").stdout
    st = status_fields(out)
    assert int(st["CapEff"], 16) == int(host["CapBnd"], 16)
    assert st["Seccomp"] == "0"
    assert "mounted" in out
    assert out.splitlines()[-1] == "0"  # /proc/keys is not masked


def test_non_root_user_has_no_effective_capabilities(pn: Pinnace, busybox: str) -> None:
    st = proc_status(pn, busybox, "-u", "1000")
    assert int(st["CapEff"], 16) == 0 and int(st["CapPrm"], 16) == 0
    assert int(st["CapBnd"], 16) == DEFAULT_CAPS
    assert st["Uid"].split()[0] == "1000"


def test_no_new_privileges(pn: Pinnace, busybox: str) -> None:
    assert proc_status(pn, busybox, "--security-opt", "no-new-privileges")["NoNewPrivs"] == "1"
    st = proc_status(pn, busybox, "--security-opt", "no-new-privileges:false")
    assert st["NoNewPrivs"] == "0"


def test_escape_attempts_from_a_default_container_fail(pn: Pinnace, busybox: str) -> None:
    script = "; ".join([
        "exec 2>&1",
        "mount -t tmpfs none /tmp 2>&1; echo mount=$?",
        "mount -t proc proc /tmp 2>&1; echo mountproc=$?",
        "echo evil > /proc/sys/kernel/hostname 2>&1; echo sysctl=$?",
        "echo b > /proc/sysrq-trigger 2>&1; echo sysrq=$?",
        "insmod /bin/busybox 2>&1; echo insmod=$?",
        "unshare -U true 2>&1; echo unshare=$?",
        "unshare -m true 2>&1; echo unsharem=$?",
        "nsenter -t 1 -n true 2>&1; echo nsenter=$?",
        "swapon /bin/busybox 2>&1; echo swapon=$?",
        "date -s 2001.01.01-00:00:00 >/dev/null",  # busybox exits 0 even when refused
        "hostname"])
    out = pn("run", "--rm", "-h", "inside", busybox, "sh", "-c", script).stdout
    results = dict(line.split("=", 1) for line in out.splitlines() if "=" in line and
                   line.split("=", 1)[1].isdigit())
    assert all(code != "0" for code in results.values()), out
    assert len(results) == 9, out
    assert "Read-only file system" in out  # /proc/sys
    assert "insmod: can't insert '/bin/busybox': Operation not permitted" in out
    assert "unshare(0x10000000): Operation not permitted" in out  # the profile, not a cap
    assert "date: can't set date: Operation not permitted" in out
    assert out.splitlines()[-1] == "inside"
    assert os.uname().nodename != "evil"


def test_unshare_is_refused_by_the_profile_itself(pn: Pinnace, busybox: str) -> None:
    """unshare(CLONE_NEWUSER) needs no capability: only the seccomp profile stops it."""
    refused = pn("run", "--rm", busybox, "unshare", "-U", "true", check=False)
    assert refused.returncode != 0 and "Operation not permitted" in refused.stderr
    pn("run", "--rm", "--security-opt", "seccomp=unconfined", busybox, "unshare", "-U", "true")
    assert proc_status(pn, busybox, "--security-opt", "seccomp=unconfined")["Seccomp"] == "0"


def test_masked_and_read_only_paths(pn: Pinnace, busybox: str) -> None:
    out = pn("run", "--rm", busybox, "sh", "-c",
             "cat /proc/keys /proc/timer_list | wc -c; ls -A /sys/firmware | wc -l;"
             " cat /proc/mounts").stdout
    lines = out.splitlines()
    assert lines[0].strip() == "0" and lines[1].strip() == "0"
    mounts = {fields[1]: fields[3].split(",") for fields in (line.split() for line in lines[2:])}
    for path in ("/proc/keys", "/proc/timer_list", "/proc/interrupts"):
        assert path in mounts, path  # /dev/null bound over it
    for path in ("/proc/acpi", "/sys/firmware"):
        if os.path.isdir(path):
            assert "ro" in mounts[path], path
    for path in ("/proc/sys", "/proc/bus", "/proc/fs", "/proc/irq"):
        assert "ro" in mounts[path], path
    assert "rw" in mounts["/proc"]


def test_no_host_process_or_descriptor_is_reachable(pn: Pinnace, busybox: str) -> None:
    # a descriptor this pinnace inherits (say from the shell that started it) must not
    # cross into the container, where fchdir() through it would leave the rootfs
    import fcntl
    import subprocess

    handle = os.open("/", os.O_RDONLY)
    leak = fcntl.fcntl(handle, fcntl.F_DUPFD, 50)  # inheritable, and far from 0-3
    os.close(handle)
    try:
        proc = subprocess.run(pn.argv("run", "--rm", busybox, "sh", "-c",
                                      "ls /proc/self/fd /proc/1/fd; echo; ls /proc"),
                              capture_output=True, text=True, env=pn.env, pass_fds=(leak,))
    finally:
        os.close(leak)
    assert proc.returncode == 0, proc.stderr
    fd_part, _, proc_part = proc.stdout.partition("\n\n")
    fds = {int(x) for x in fd_part.split() if x.isdigit()}
    assert fds <= {0, 1, 2, 3}, fd_part  # 3: ls's own handle on the directory it lists
    pids = [int(x) for x in proc_part.split() if x.isdigit()]
    assert pids and max(pids) < 10, pids  # sh and ls, numbered in their own namespace


def test_chroot_and_dotdot_stay_inside_the_rootfs(pn: Pinnace, busybox: str,
                                                   busybox_tar: Path) -> None:
    with tarfile.open(busybox_tar) as tar:
        image_top = {m.name.strip("./").split("/")[0] for m in tar.getmembers()} - {""}
    host_only = set(os.listdir("/")) - image_top
    assert host_only, ("the host's / must have entries the image lacks for this test to mean "
                       "anything")
    script = ("mkdir -p /jail/bin && cp /bin/busybox /jail/bin/ &&"
              " chroot /jail /bin/busybox sh -c 'cd ../../../..; /bin/busybox ls -a .';"
              " echo ---; cd /proc/1/root/../../..; ls -a; echo ---; ls -a /proc/self/cwd/../..;"
              " echo ---; ls -a /..")
    out = pn("run", "--rm", busybox, "sh", "-c", script).stdout
    seen = set(out.split()) - {"---"}
    assert not seen & host_only, f"host entries visible: {seen & host_only}"
    assert "bin" in seen and "jail" in seen  # it did list the container's root


def test_device_allowlist(pn: Pinnace, busybox: str) -> None:
    """mknod is allowed, opening a device outside the allowlist is not (cgroup v1
    devices): /dev/kmsg (c 1:11) here, which --privileged may open."""
    script = "exec 2>&1; mknod /tmp/kmsg c 1 11 && (: < /tmp/kmsg); echo rc=$?"
    out = pn("run", "--rm", busybox, "sh", "-c", script).stdout
    assert "/tmp/kmsg: Operation not permitted" in out and "rc=1" in out, out
    assert "rc=0" in pn("run", "--rm", "--privileged", busybox, "sh", "-c", script).stdout
    pn("run", "-d", "--name", "dev", busybox, "sleep", "60")
    from pinnace.runtime import cgroups

    cid = inspect(pn, "dev")["Id"]
    listing = Path(f"/sys/fs/cgroup/devices/pinnace/{cid}/devices.list")
    if cgroups.version() == "v1":
        allowed = listing.read_text().splitlines()
        assert "c 1:3 rwm" in allowed and "c 136:* rwm" in allowed
        assert "a *:* rwm" not in allowed


def test_exec_gets_the_containers_hardening(pn: Pinnace, busybox: str) -> None:
    pn("run", "-d", "--name", "box", "--cap-drop", "ALL", "--cap-add", "NET_ADMIN",
       busybox, "sleep", "60")
    st = status_fields(pn("exec", "box", "cat", "/proc/self/status").stdout)
    assert int(st["CapEff"], 16) == CAP_NET_ADMIN and st["Seccomp"] == "2"
    refused = pn("exec", "box", "unshare", "-U", "true", check=False)
    assert refused.returncode != 0 and "Operation not permitted" in refused.stderr


def test_custom_seccomp_profile_file(pn: Pinnace, busybox: str, tmp_path: Path) -> None:
    profile = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}]}
    path = tmp_path / "profile.json"
    path.write_text(json.dumps(profile))
    out = pn("run", "--rm", "--security-opt", f"seccomp={path}", busybox, "sh", "-c",
             "mkdir /tmp/x 2>&1; echo rc=$?; unshare -U true && echo unshared")
    assert "Permission denied" in out.stdout and "rc=1" in out.stdout
    assert "unshared" in out.stdout  # only this profile applies, not the default one


def test_bad_security_input_is_one_line_and_leaves_nothing(pn: Pinnace, busybox: str,
                                                           tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    unknown_action = tmp_path / "unknown.json"
    unknown_action.write_text(json.dumps({"defaultAction": "SCMP_ACT_MAYBE"}))
    for flags, message in (
            (("--cap-add", "CAP_FLY"), "unknown capability"),
            (("--security-opt", "seccomp=/nonexistent.json"), "cannot read seccomp profile"),
            (("--security-opt", f"seccomp={bad}"), "is not JSON"),
            (("--security-opt", f"seccomp={unknown_action}"), "defaultAction"),
            (("--security-opt", "no-new-privileges=maybe"), "no-new-privileges"),
            (("--security-opt", "apparmor=docker-default"), "invalid --security-opt")):
        proc = pn("run", "--rm", *flags, busybox, "true", check=False)
        assert proc.returncode == 125, (flags, proc.stderr)
        assert proc.stderr.count("\n") == 1 and message in proc.stderr, (flags, proc.stderr)
    assert pn("ps", "-aq").stdout == ""
