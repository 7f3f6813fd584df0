"""The default seccomp profile against the real kernel, side by side with podman: a
battery of system call probes (a static C program, tests/seccomp_probe.c, built here
and copied into a busybox image) run by pinnace and by podman (runc) with the same
capabilities, plus ordinary workloads, the ways to lift the filter, custom profiles
and the compiled-filter cache."""

from __future__ import annotations

import json
import shutil
import subprocess
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import PODMAN_RUN, Pinnace

PROBES = (
    "personality_read_implies_exec", "personality_linux", "personality_query",
    "unshare_user", "unshare_mount", "clone_plain", "clone_newuser", "clone_newns", "clone3",
    "threads", "keyctl", "add_key", "bpf", "perf_event_open", "ptrace_traceme",
    "process_vm_readv", "init_module", "kexec_load", "reboot", "swapon", "settimeofday",
    "acct", "iopl", "ioperm", "open_by_handle_at", "mount_tmpfs", "umount2", "pivot_root",
    "userfaultfd", "socket_vsock", "socket_unix", "syscall_1000", "i386_getpid",
    "i386_personality_read_implies_exec", "i386_unshare_user", "i386_clone_newuser",
    "i386_socket_vsock", "i386_kexec_load", "i386_syscall_1000",
    "x32_getpid", "x32_personality_read_implies_exec", "x32_kexec_load")
"""Probe names tests/seccomp_probe.c knows; each prints ``name=ok|ERRNO|signal N``."""

CAP_SETS = {
    "default": (),
    "CAP_SYS_ADMIN": ("SYS_ADMIN",),
    "the other gating capabilities": ("SYS_PTRACE", "SYS_BOOT", "SYS_TIME", "SYS_RAWIO",
                                      "SYS_MODULE", "SYS_PACCT", "DAC_READ_SEARCH",
                                      "SYS_NICE"),
}
"""Capabilities added to docker's default set for each battery."""

PODMAN_LACKS = ("NET_RAW", "MKNOD", "AUDIT_WRITE")
"""Capabilities of docker's (and pinnace's) default set that podman leaves out: added to
podman's containers so both sides hold the same set."""

DOCKER_ONLY = {
    "personality_read_implies_exec": "EPERM",
    "i386_personality_read_implies_exec": "EPERM",
    "x32_personality_read_implies_exec": "EPERM",
    "keyctl": "EPERM",
    "add_key": "EPERM",
    "socket_vsock": "EPERM",
    "i386_socket_vsock": "EPERM",
}
"""Where podman's bundled profile (containers-common 0.50) is not docker's, for every
capability set: it answers ENOSYS where docker answers EPERM (``defaultErrnoRet`` 38),
allows ``keyctl`` and, without CAP_AUDIT_WRITE in the exclusions, every socket family.
The value is what docker's policy, and so pinnace, answers."""
DOCKER_ONLY_WITHOUT_SYS_ADMIN = {"unshare_user": "EPERM", "clone_newuser": "EPERM",
                                 "clone3": "ENOSYS", "i386_unshare_user": "EPERM",
                                 "i386_clone_newuser": "EPERM"}
"""podman's profile allows user namespaces and clone3 to every container."""
DOCKER_ONLY_WITH_SYS_ADMIN = {"pivot_root": "EPERM"}
"""podman's profile allows pivot_root; docker's refuses it even with CAP_SYS_ADMIN."""


@pytest.fixture(scope="session")
def probe_tar(busybox_tar: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The busybox rootfs plus ``/probe``, the probe program built static."""
    work = tmp_path_factory.mktemp("seccomp-probe")
    source = Path(__file__).with_name("seccomp_probe.c")
    subprocess.run(["gcc", "-static", "-O1", "-Wall", "-Werror", "-pthread", "-o",
                    str(work / "probe"), str(source)], check=True, capture_output=True)
    tar = work / "probe-rootfs.tar"
    shutil.copy(busybox_tar, tar)
    with tarfile.open(tar, "a") as out:
        out.add(work / "probe", arcname="probe")
    return tar


@pytest.fixture
def probe_image(pn: Pinnace, probe_tar: Path) -> str:
    pn("import", "-c", 'CMD ["sh"]', str(probe_tar), "probe:1")
    return "probe:1"


@pytest.fixture
def podman_image(podman: Callable[..., subprocess.CompletedProcess[str]],
                 probe_tar: Path) -> str:
    podman("import", "--change", 'CMD ["sh"]', str(probe_tar), "localhost/probe:1")
    return "localhost/probe:1"


def results(output: str) -> dict[str, str]:
    """The probe's ``name=result`` lines, checked to cover every probe once."""
    found = dict(line.split("=", 1) for line in output.splitlines() if "=" in line)
    assert sorted(found) == sorted(PROBES), output
    return found


def docker_only(cap_set: str) -> dict[str, str]:
    """The probes where podman's bundled profile differs from docker's, with docker's result."""
    admin = "SYS_ADMIN" in CAP_SETS[cap_set]
    return {**DOCKER_ONLY,
            **(DOCKER_ONLY_WITH_SYS_ADMIN if admin else DOCKER_ONLY_WITHOUT_SYS_ADMIN)}


@pytest.mark.parametrize("cap_set", CAP_SETS)
def test_probes_match_podman(cap_set: str, pn: Pinnace, probe_image: str, podman,
                             podman_image: str, tmp_path: Path) -> None:
    """pinnace's default profile against podman running the same probes: podman with its
    own default profile where that profile is docker's policy, and podman given pinnace's
    profile (resolved for these capabilities) everywhere, so libseccomp as runc drives it
    and pinnace's compiled filter decide every probe alike."""
    from pinnace.runtime import seccomp, security

    adds = CAP_SETS[cap_set]
    pn_flags = [arg for cap in adds for arg in ("--cap-add", cap)]
    pd_flags = [arg for cap in (*adds, *PODMAN_LACKS) for arg in ("--cap-add", cap)]
    ours = results(pn("run", "--rm", *pn_flags, probe_image, "/probe", *PROBES).stdout)
    theirs = results(podman(*PODMAN_RUN, *pd_flags, podman_image, "/probe", *PROBES).stdout)

    caps = security.policy(cap_add=adds).capabilities
    profile = tmp_path / "resolved.json"
    profile.write_text(json.dumps(seccomp.resolve(seccomp.default_profile(), caps,
                                                  seccomp.native_arch())))
    same = results(podman(*PODMAN_RUN, *pd_flags, "--security-opt", f"seccomp={profile}",
                          podman_image, "/probe", *PROBES).stdout)
    assert ours == same

    differs = docker_only(cap_set)
    assert {p: ours[p] for p in differs} == differs
    assert {p: r for p, r in ours.items() if p not in differs} == \
        {p: r for p, r in theirs.items() if p not in differs}
    assert all(theirs[p] != r for p, r in differs.items()), theirs  # still podman's own


def test_default_refusals_are_dockers(pn: Pinnace, probe_image: str) -> None:
    """What docker's policy refuses to a container with the default capabilities, whatever
    the kernel would have said: EPERM from the filter, ENOSYS for clone3 and for numbers
    past the profile's, on the x86_64, i386 and x32 entries alike."""
    ours = results(pn("run", "--rm", probe_image, "/probe", *PROBES).stdout)
    eperm = {"personality_read_implies_exec", "unshare_user", "unshare_mount", "clone_newuser",
             "clone_newns", "keyctl", "add_key", "bpf", "perf_event_open", "init_module",
             "kexec_load", "reboot", "swapon", "settimeofday", "acct", "iopl", "ioperm",
             "open_by_handle_at", "mount_tmpfs", "umount2", "pivot_root", "userfaultfd",
             "socket_vsock", "i386_personality_read_implies_exec", "i386_unshare_user",
             "i386_clone_newuser", "i386_socket_vsock", "i386_kexec_load",
             "x32_personality_read_implies_exec", "x32_kexec_load"}
    enosys = {"clone3", "syscall_1000", "i386_syscall_1000"}
    allowed = {"personality_linux", "personality_query", "clone_plain", "threads",
               "ptrace_traceme", "process_vm_readv", "socket_unix", "i386_getpid"}
    assert ours.pop("x32_getpid") in ("ok", "ENOSYS")  # allowed: the kernel may lack x32
    assert {p for p, r in ours.items() if r == "EPERM"} == eperm, ours
    assert {p for p, r in ours.items() if r == "ENOSYS"} == enosys, ours
    assert {p for p, r in ours.items() if r == "ok"} == allowed, ours


def test_unconfined_and_privileged_lift_the_filter(pn: Pinnace, probe_image: str) -> None:
    refused = ("personality_read_implies_exec", "unshare_user", "clone3", "socket_unix",
               "keyctl")
    confined = results(pn("run", "--rm", probe_image, "/probe", *PROBES).stdout)
    assert [confined[p] for p in refused] == ["EPERM", "EPERM", "ENOSYS", "ok", "EPERM"]
    for flags in (("--security-opt", "seccomp=unconfined"), ("--privileged",)):
        out = pn("run", "--rm", *flags, probe_image, "sh", "-c",
                 f"grep Seccomp: /proc/self/status; /probe {' '.join(refused)}").stdout
        assert out.splitlines() == ["Seccomp:\t0", *(f"{p}=ok" for p in refused)], (flags, out)


def test_ordinary_workloads_run_under_the_default_profile(pn: Pinnace, probe_image: str) -> None:
    script = "; ".join([
        "set -e",
        "ls / > /dev/null && echo ls ok",
        "sleep 0.1 && echo sleep ok",
        "sleep 30 & sleep 0.2; ps -o pid,comm | grep -q ' sleep$' && echo ps ok; kill $!",
        "(nc -l -p 4242 > /tmp/got &) ; sleep 0.3; echo over nc | nc 127.0.0.1 4242 || true",
        "sleep 0.3; cat /tmp/got",
        "/probe threads clone_plain",
        "cat /proc/self/status | grep Seccomp:",
        "mkdir -p /tmp/d && echo x > /tmp/d/f && cp /tmp/d/f /tmp/d/g && cat /tmp/d/g",
        "chroot / true && echo chroot ok",
        "date +%Y > /dev/null && id -u"])
    out = pn("run", "--rm", probe_image, "sh", "-c", script).stdout
    assert out.splitlines() == ["ls ok", "sleep ok", "ps ok", "over nc", "threads=ok",
                                "clone_plain=ok", "Seccomp:\t2", "x", "chroot ok", "0"], out


def test_custom_refusing_profile_file(pn: Pinnace, probe_image: str, tmp_path: Path) -> None:
    """A docker-format allow list from a file: its own errno, docker's Go spelling of the
    machine in ``includes.arches`` (the static probe dies without arch_prctl), the
    capability conditions, and ENOSYS past the numbers it names."""
    from pinnace.runtime import seccomp

    profile = seccomp.default_profile()
    profile["defaultErrnoRet"] = 13  # EACCES
    for rule in profile["syscalls"]:
        rule["names"] = [n for n in rule["names"] if n not in ("mkdir", "mkdirat")]
        arches = (rule.get("includes") or {}).get("arches")
        if arches and "SCMP_ARCH_X86_64" in arches:
            rule["includes"]["arches"] = ["amd64"]
    path = tmp_path / "profile.json"
    path.write_text(json.dumps(profile))
    out = pn("run", "--rm", "--security-opt", f"seccomp={path}", probe_image, "sh", "-c",
             "mkdir /tmp/x 2>&1; echo rc=$?; /probe personality_read_implies_exec"
             " syscall_1000 clone3 threads").stdout
    assert out.splitlines() == ["mkdir: can't create directory '/tmp/x': Permission denied",
                                "rc=1", "personality_read_implies_exec=EACCES",
                                "syscall_1000=ENOSYS", "clone3=ENOSYS", "threads=ok"], out
    admin = pn("run", "--rm", "--cap-add", "SYS_ADMIN", "--security-opt", f"seccomp={path}",
               probe_image, "/probe", "clone3", "unshare_user").stdout
    assert admin.splitlines() == ["clone3=ok", "unshare_user=ok"]


def test_compiled_filter_is_cached_per_profile_and_capabilities(
        pn: Pinnace, probe_image: str, tmp_path: Path) -> None:
    from pinnace.runtime import seccomp, security

    cache = tmp_path / "cache"
    cached = Pinnace(pn.root, env={"XDG_CACHE_HOME": str(cache)})

    def files() -> dict[str, tuple[int, bytes]]:
        return {p.name: (p.stat().st_mtime_ns, p.read_bytes())
                for p in (cache / "pinnace").glob("seccomp-*.bpf")}

    probe = ("/probe", "unshare_user", "clone3")
    refused = "unshare_user=EPERM\nclone3=ENOSYS\n"
    assert cached("run", "--rm", probe_image, *probe).stdout == refused
    first = files()
    assert len(first) == 1
    (name, (_, data)), = first.items()
    caps = security.policy().capabilities
    assert data.endswith(seccomp.program(seccomp.default_profile(), caps))
    cached("run", "--rm", probe_image, "true")
    assert files() == first  # used, not rewritten
    cached("run", "--rm", "--cap-add", "SYS_ADMIN", probe_image, "true")
    assert len(files()) == 2 and files()[name] == first[name]
    (cache / "pinnace" / name).write_bytes(b"\0" * 64)  # not its key: compiled again
    assert cached("run", "--rm", probe_image, *probe).stdout == refused
    assert files()[name][1] == data
