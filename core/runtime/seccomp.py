"""Seccomp profiles in docker's JSON format: the built-in default, parsing, compiling
through libseccomp (the ``pyseccomp`` binding) and installing the compiled filter.

The built-in profile is docker's policy, written here as pinnace's own data: an
allow list over a refusing default (EPERM). It allows the system calls an
ordinary program makes; those tied to a capability (mount, unshare, setns,
``clone`` with namespace flags, module loading, reboot, clock setting, raw I/O
ports, ``acct``, ...) only when the container holds it; ``personality`` only with
the values docker allows, ``socket`` with any family but AF_VSOCK; ``clone3``
answers ENOSYS (its flags are out of a filter's reach: libc falls back to
``clone``). ``bpf`` and ``perf_event_open`` need CAP_SYS_ADMIN, CAP_BPF or
CAP_PERFMON; keyrings, io_uring, swap, kexec, ``userfaultfd``, ``pivot_root`` and
obsolete calls are refused to every container. On x86_64 the filter covers
the i386 and x32 system call tables too, and a system call numbered above every
one the profile names for its table answers ENOSYS (one newer than the profile,
which libc may fall back from), as runc does for docker.

Compiling costs ~45 ms (most of it the binding finding libseccomp), so the BPF
program is cached under ``~/.cache/pinnace``, keyed on the profile, the
capabilities and the kernel; installing it is one prctl through ctypes.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import struct
from typing import Any

from pinnace.errors import InvalidConfig

ACTIONS = ("SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD", "SCMP_ACT_TRAP",
           "SCMP_ACT_ERRNO", "SCMP_ACT_TRACE", "SCMP_ACT_ALLOW", "SCMP_ACT_LOG")
OPERATORS = ("SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_EQ", "SCMP_CMP_GE",
             "SCMP_CMP_GT", "SCMP_CMP_MASKED_EQ")

NAMESPACE_FLAGS = 0x7E020000
"""CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET."""
AF_VSOCK = 40
PERSONALITIES = (0x0, 0x8, 0x20000, 0x20008, 0xFFFFFFFF)
"""PER_LINUX, PER_LINUX32, UNAME26, UNAME26 | PER_LINUX32, and the query."""

ALLOWED: dict[str, tuple[str, ...]] = {
    "files": (
        "access", "chdir", "chmod", "chown", "chown32", "close", "close_range",
        "copy_file_range", "creat", "dup", "dup2", "dup3", "faccessat", "faccessat2",
        "fadvise64", "fadvise64_64", "fallocate", "fchdir", "fchmod", "fchmodat", "fchmodat2",
        "fchown", "fchown32", "fchownat", "fcntl", "fcntl64", "fdatasync", "flock", "fstat",
        "fstat64", "fstatat64", "fstatfs", "fstatfs64", "fsync", "ftruncate", "ftruncate64",
        "futimesat", "getcwd", "getdents", "getdents64", "lchown", "lchown32", "link", "linkat",
        "_llseek", "lseek", "lstat", "lstat64", "mkdir", "mkdirat", "mknod", "mknodat",
        "name_to_handle_at", "newfstatat", "open", "openat", "openat2", "pread64", "preadv",
        "preadv2", "pwrite64", "pwritev", "pwritev2", "read", "readahead", "readlink",
        "readlinkat", "readv", "rename", "renameat", "renameat2", "rmdir", "sendfile",
        "sendfile64", "splice", "stat", "stat64", "statfs", "statfs64", "statx", "symlink",
        "symlinkat", "sync", "sync_file_range", "syncfs", "tee", "truncate", "truncate64",
        "umask", "unlink", "unlinkat", "utime", "utimensat", "utimensat_time64", "utimes",
        "vmsplice", "write", "writev", "cachestat"),
    "extended attributes": (
        "fgetxattr", "flistxattr", "fremovexattr", "fsetxattr", "getxattr", "lgetxattr",
        "listxattr", "llistxattr", "lremovexattr", "lsetxattr", "removexattr", "setxattr"),
    "waiting on descriptors": (
        "epoll_create", "epoll_create1", "epoll_ctl", "epoll_ctl_old", "epoll_pwait",
        "epoll_pwait2", "epoll_wait", "epoll_wait_old", "eventfd", "eventfd2", "fanotify_mark",
        "inotify_add_watch", "inotify_init", "inotify_init1", "inotify_rm_watch", "poll",
        "ppoll", "ppoll_time64", "pselect6", "pselect6_time64", "select", "_newselect",
        "signalfd", "signalfd4", "timerfd_create", "timerfd_gettime", "timerfd_gettime64",
        "timerfd_settime", "timerfd_settime64"),
    "asynchronous I/O and devices": (
        "io_cancel", "io_destroy", "io_getevents", "io_pgetevents", "io_pgetevents_time64",
        "io_setup", "io_submit", "ioctl"),
    "processes": (
        "capget", "capset", "execve", "execveat", "exit", "exit_group", "fork", "vfork",
        "getcpu", "getpgid", "getpgrp", "getpid", "getppid", "getpriority", "getrlimit",
        "getrusage", "getsid", "gettid", "get_robust_list", "get_thread_area", "ioprio_get",
        "ioprio_set", "kill", "landlock_add_rule", "landlock_create_ruleset",
        "landlock_restrict_self", "pidfd_open", "pidfd_send_signal", "prctl", "prlimit64",
        "process_mrelease", "restart_syscall", "rseq", "seccomp", "setpgid", "setpriority",
        "setrlimit", "set_robust_list", "setsid", "set_thread_area", "set_tid_address",
        "sysinfo", "tgkill", "times", "tkill", "ugetrlimit", "uname", "wait4", "waitid",
        "waitpid"),
    "scheduling": (
        "sched_getaffinity", "sched_getattr", "sched_getparam", "sched_get_priority_max",
        "sched_get_priority_min", "sched_getscheduler", "sched_rr_get_interval",
        "sched_rr_get_interval_time64", "sched_setaffinity", "sched_setattr",
        "sched_setparam", "sched_setscheduler", "sched_yield"),
    "identity": (
        "getegid", "getegid32", "geteuid", "geteuid32", "getgid", "getgid32", "getgroups",
        "getgroups32", "getresgid", "getresgid32", "getresuid", "getresuid32", "getuid",
        "getuid32", "setfsgid", "setfsgid32", "setfsuid", "setfsuid32", "setgid", "setgid32",
        "setgroups", "setgroups32", "setregid", "setregid32", "setresgid", "setresgid32",
        "setresuid", "setresuid32", "setreuid", "setreuid32", "setuid", "setuid32"),
    "memory": (
        "brk", "madvise", "map_shadow_stack", "membarrier", "memfd_create", "memfd_secret",
        "mincore", "mlock", "mlock2", "mlockall", "mmap", "mmap2", "mprotect", "mremap",
        "msync", "munlock", "munlockall", "munmap", "pkey_alloc", "pkey_free",
        "pkey_mprotect", "remap_file_pages"),
    "signals": (
        "alarm", "getitimer", "pause", "rt_sigaction", "rt_sigpending", "rt_sigprocmask",
        "rt_sigqueueinfo", "rt_sigreturn", "rt_sigsuspend", "rt_sigtimedwait",
        "rt_sigtimedwait_time64", "rt_tgsigqueueinfo", "setitimer", "sigaltstack",
        "sigprocmask", "sigreturn"),
    "time": (
        "adjtimex", "clock_adjtime", "clock_adjtime64", "clock_getres", "clock_getres_time64",
        "clock_gettime", "clock_gettime64", "clock_nanosleep", "clock_nanosleep_time64",
        "gettimeofday", "nanosleep", "time", "timer_create", "timer_delete",
        "timer_getoverrun", "timer_gettime", "timer_gettime64", "timer_settime",
        "timer_settime64"),
    "futexes": (
        "futex", "futex_requeue", "futex_time64", "futex_wait", "futex_waitv", "futex_wake"),
    "inter-process communication": (
        "ipc", "mq_getsetattr", "mq_notify", "mq_open", "mq_timedreceive",
        "mq_timedreceive_time64", "mq_timedsend", "mq_timedsend_time64", "mq_unlink", "msgctl",
        "msgget", "msgrcv", "msgsnd", "pipe", "pipe2", "semctl", "semget", "semop",
        "semtimedop", "semtimedop_time64", "shmat", "shmctl", "shmdt", "shmget"),
    "sockets": (
        "accept", "accept4", "bind", "connect", "getpeername", "getsockname", "getsockopt",
        "listen", "recv", "recvfrom", "recvmmsg", "recvmmsg_time64", "recvmsg", "send",
        "sendmmsg", "sendmsg", "sendto", "setsockopt", "shutdown", "socketcall", "socketpair"),
    "randomness": ("getrandom",),
}
"""System calls every container may make, by theme (``socket``, ``personality`` and
``clone`` are allowed with argument filters, see :func:`default_profile`)."""

WITH_CAPABILITY: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("CAP_SYS_ADMIN", ("bpf", "clone", "clone3", "fanotify_init", "fsconfig", "fsmount",
                       "fsopen", "fspick", "lookup_dcookie", "mount", "mount_setattr",
                       "move_mount", "open_tree", "perf_event_open", "quotactl", "quotactl_fd",
                       "setdomainname", "sethostname", "setns", "syslog", "umount", "umount2",
                       "unshare")),
    ("CAP_SYS_BOOT", ("reboot",)),
    ("CAP_SYS_CHROOT", ("chroot",)),
    ("CAP_SYS_MODULE", ("init_module", "finit_module", "delete_module")),
    ("CAP_SYS_PACCT", ("acct",)),
    ("CAP_SYS_PTRACE", ("kcmp", "pidfd_getfd", "process_madvise", "process_vm_readv",
                        "process_vm_writev", "ptrace")),
    ("CAP_SYS_RAWIO", ("iopl", "ioperm")),
    ("CAP_SYS_TIME", ("settimeofday", "stime", "clock_settime", "clock_settime64")),
    ("CAP_SYS_TTY_CONFIG", ("vhangup",)),
    ("CAP_SYS_NICE", ("get_mempolicy", "mbind", "set_mempolicy", "set_mempolicy_home_node")),
    ("CAP_SYSLOG", ("syslog",)),
    ("CAP_BPF", ("bpf",)),
    ("CAP_PERFMON", ("perf_event_open",)),
    ("CAP_DAC_READ_SEARCH", ("open_by_handle_at",)),
)
"""System calls allowed only to a container holding the capability."""

NATIVE_ONLY: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = (
    (("SCMP_ARCH_X86_64", "SCMP_ARCH_X32"), ("arch_prctl",)),
    (("SCMP_ARCH_X86_64", "SCMP_ARCH_X32", "SCMP_ARCH_X86"), ("modify_ldt",)),
    (("SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"),
     ("arm_fadvise64_64", "arm_sync_file_range", "sync_file_range2", "breakpoint",
      "cacheflush", "set_tls")),
    (("SCMP_ARCH_PPC64LE",), ("sync_file_range2", "swapcontext")),
    (("SCMP_ARCH_S390", "SCMP_ARCH_S390X"),
     ("s390_pci_mmio_read", "s390_pci_mmio_write", "s390_runtime_instr")),
    (("SCMP_ARCH_RISCV64",), ("riscv_flush_icache",)),
)
"""System calls of one machine, allowed when pinnace runs natively on it."""

SUB_ARCHITECTURES: dict[str, tuple[str, ...]] = {
    "SCMP_ARCH_X86_64": ("SCMP_ARCH_X86", "SCMP_ARCH_X32"),
    "SCMP_ARCH_AARCH64": ("SCMP_ARCH_ARM",),
    "SCMP_ARCH_S390X": ("SCMP_ARCH_S390",),
    "SCMP_ARCH_PPC64LE": (),
    "SCMP_ARCH_RISCV64": (),
}
"""The other system call tables a native process can reach, which the filter covers."""

GO_ARCHES = {"SCMP_ARCH_X86_64": "amd64", "SCMP_ARCH_X86": "386", "SCMP_ARCH_AARCH64": "arm64",
             "SCMP_ARCH_ARM": "arm", "SCMP_ARCH_PPC64LE": "ppc64le",
             "SCMP_ARCH_S390X": "s390x", "SCMP_ARCH_S390": "s390",
             "SCMP_ARCH_RISCV64": "riscv64"}
"""Docker profiles name the machine in ``includes.arches`` as Go does."""


def default_profile() -> dict[str, Any]:
    """The built-in profile, in docker's JSON format."""
    allow: dict[str, Any] = {"action": "SCMP_ACT_ALLOW"}
    names = sorted({n for group in ALLOWED.values() for n in group})
    rules: list[dict[str, Any]] = [dict(allow, names=names)]
    rules.append(dict(allow, names=["socket"], args=[_arg(0, "SCMP_CMP_NE", AF_VSOCK)]))
    rules += [dict(allow, names=["personality"], args=[_arg(0, "SCMP_CMP_EQ", value)])
              for value in PERSONALITIES]
    for arches, calls in NATIVE_ONLY:
        rules.append(dict(allow, names=list(calls), includes={"arches": list(arches)}))
    for cap, calls in WITH_CAPABILITY:
        rules.append(dict(allow, names=list(calls), includes={"caps": [cap]}))
    # without CAP_SYS_ADMIN: clone without namespace flags (s390 passes the flags second)
    no_ns = dict(allow, names=["clone"])
    rules.append(dict(no_ns, args=[_arg(0, "SCMP_CMP_MASKED_EQ", NAMESPACE_FLAGS, 0)],
                      excludes={"caps": ["CAP_SYS_ADMIN"],
                                "arches": ["SCMP_ARCH_S390", "SCMP_ARCH_S390X"]}))
    rules.append(dict(no_ns, args=[_arg(1, "SCMP_CMP_MASKED_EQ", NAMESPACE_FLAGS, 0)],
                      includes={"arches": ["SCMP_ARCH_S390", "SCMP_ARCH_S390X"]},
                      excludes={"caps": ["CAP_SYS_ADMIN"]}))
    rules.append({"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.ENOSYS,
                  "excludes": {"caps": ["CAP_SYS_ADMIN"]}})
    if _kernel() >= (4, 8):  # before 4.8 a tracer could change a call after the filter ran
        rules.append(dict(allow, names=["ptrace", "process_vm_readv", "process_vm_writev"]))
    return {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": errno.EPERM,
            "archMap": [{"architecture": arch, "subArchitectures": list(subs)}
                        for arch, subs in SUB_ARCHITECTURES.items()],
            "syscalls": rules}


def _arg(index: int, op: str, value: int, value_two: int = 0) -> dict[str, Any]:
    return {"index": index, "value": value, "valueTwo": value_two, "op": op}


def _kernel() -> tuple[int, ...]:
    release = os.uname().release.split("-")[0].split(".")
    return tuple(int(x) for x in release[:2] if x.isdigit())


def parse_profile(text: str, source: str) -> dict[str, Any]:
    """Check a docker-format profile read from ``source``; raise InvalidConfig when malformed."""
    try:
        profile = json.loads(text)
    except ValueError as err:
        raise InvalidConfig(f"seccomp profile {source} is not JSON: {err}") from None
    if not isinstance(profile, dict) or profile.get("defaultAction") not in ACTIONS:
        raise InvalidConfig(f"seccomp profile {source} needs a known defaultAction")
    for rule in profile.get("syscalls") or []:
        if not isinstance(rule, dict) or rule.get("action") not in ACTIONS:
            raise InvalidConfig(f"seccomp profile {source}: a rule has no known action: {rule!r}")
        names = rule.get("names") or ([rule["name"]] if rule.get("name") else [])
        if not names or not all(isinstance(n, str) for n in names):
            raise InvalidConfig(f"seccomp profile {source}: a rule names no system call")
        for arg in rule.get("args") or []:
            if arg.get("op") not in OPERATORS or not isinstance(arg.get("index"), int):
                raise InvalidConfig(f"seccomp profile {source}: bad argument filter {arg!r}")
    return profile


def resolve(profile: dict[str, Any], capabilities: list[str], arch: str) -> dict[str, Any]:
    """``profile`` for a process holding ``capabilities`` on the machine ``arch``
    (``SCMP_ARCH_X86_64``, ...): the rules whose ``includes``/``excludes`` hold, without
    those conditions, and the ``architectures`` it covers (docker does this before runc)."""
    caps = set(capabilities)
    rules = []
    for rule in profile.get("syscalls") or []:
        if _applies(rule, caps, arch):
            kept = {k: v for k, v in rule.items() if k not in ("includes", "excludes", "name")}
            kept["names"] = rule.get("names") or [rule["name"]]
            rules.append(kept)
    out = {k: v for k, v in profile.items() if k not in ("archMap", "syscalls")}
    out["architectures"] = _architectures(profile, arch)
    out["syscalls"] = rules
    return out


def _applies(rule: dict[str, Any], caps: set[str], arch: str) -> bool:
    """docker's includes/excludes: every included capability held, no excluded one, the
    machine among the included (libseccomp's or Go's name) and the kernel recent enough."""
    inc, exc = rule.get("includes") or {}, rule.get("excludes") or {}
    if not set(inc.get("caps") or ()) <= caps or set(exc.get("caps") or ()) & caps:
        return False
    names = {arch, GO_ARCHES.get(arch, arch)}
    if inc.get("arches") and not names & set(inc["arches"]):
        return False
    if names & set(exc.get("arches") or ()):
        return False
    if inc.get("minKernel"):
        want = tuple(int(x) for x in str(inc["minKernel"]).split(".")[:2])
        if _kernel() < want:
            return False
    return True


def _architectures(profile: dict[str, Any], native: str) -> list[str]:
    """The architectures a profile lists for this machine (``archMap`` or ``architectures``)."""
    for entry in profile.get("archMap") or []:
        if entry.get("architecture") == native:
            return [native, *(entry.get("subArchitectures") or [])]
    return list(profile.get("architectures") or [])


def native_arch() -> str:
    """This machine's architecture as docker profiles name it (``SCMP_ARCH_X86_64``, ...)."""
    import pyseccomp as sc

    native = sc.system_arch()
    return next((f"SCMP_ARCH_{n}" for n in dir(sc.Arch)
                 if n.isupper() and n != "NATIVE" and getattr(sc.Arch, n) == native), "")


def build(profile: dict[str, Any], capabilities: list[str]) -> tuple[Any, dict[int, int]]:
    """Compile ``profile`` for a process holding ``capabilities``: the libseccomp filter
    (it leaves no_new_privs to the caller) and, for each architecture (libseccomp's
    token) the filter covers, the highest system call number the profile names there;
    :func:`program` makes the BPF program of both."""
    import pyseccomp as sc

    def action(name: str, errno_ret: int | None) -> int:
        if name == "SCMP_ACT_ERRNO":
            return sc.ERRNO(errno.EPERM if errno_ret is None else errno_ret)
        if name == "SCMP_ACT_TRACE":
            return sc.TRACE(errno.EPERM if errno_ret is None else errno_ret)
        return {"SCMP_ACT_KILL": sc.KILL, "SCMP_ACT_KILL_THREAD": sc.KILL_THREAD,
                "SCMP_ACT_KILL_PROCESS": sc.KILL_PROCESS, "SCMP_ACT_TRAP": sc.TRAP,
                "SCMP_ACT_ALLOW": sc.ALLOW, "SCMP_ACT_LOG": sc.LOG}[name]

    resolved = resolve(profile, capabilities, native_arch())
    default = action(resolved["defaultAction"], resolved.get("defaultErrnoRet"))
    flt = sc.SyscallFilter(default)
    flt.set_attr(sc.Attr.CTL_NNP, 0)  # no_new_privs is the caller's choice (--security-opt)
    arches = {sc.system_arch()}
    for name in resolved["architectures"]:
        value = getattr(sc.Arch, name.removeprefix("SCMP_ARCH_"), None)
        if value is not None and value not in arches:
            flt.add_arch(value)
            arches.add(value)
    highest = dict.fromkeys(arches, -1)
    for rule in resolved["syscalls"]:
        act = action(rule["action"], rule.get("errnoRet"))
        raw = rule.get("args") or []
        args = [sc.Arg(a["index"], OPERATORS.index(a["op"]) + 1, a.get("value", 0),
                       a.get("valueTwo", 0)) for a in raw]
        # libseccomp ANDs one comparison per argument; several on one argument are ORed rules
        distinct = len({a["index"] for a in raw}) == len(raw)
        groups = [args] if distinct else [[a] for a in args]
        for name in rule["names"]:
            number = sc.resolve_syscall(sc.Arch.NATIVE, name)
            if number == -1:  # unknown to this libseccomp: skipped, as docker does
                continue
            for arch in arches:
                highest[arch] = max(highest[arch], sc.resolve_syscall(arch, name))
            if act != default:
                for group in groups:
                    flt.add_rule(act, number, *group)
    return flt, highest


def program(profile: dict[str, Any], capabilities: list[str]) -> bytes:
    """The BPF program of ``profile`` for a process holding ``capabilities``: libseccomp's,
    behind a check that answers ENOSYS to a system call numbered above every one the
    profile names for its architecture, when the profile refuses by default."""
    flt, highest = build(profile, capabilities)
    with open(os.memfd_create("seccomp", os.MFD_CLOEXEC), "w+b") as f:
        flt.export_bpf(f)
        f.seek(0)
        compiled_filter = f.read()
    if profile["defaultAction"] in ("SCMP_ACT_ALLOW", "SCMP_ACT_LOG"):
        return compiled_filter
    return enosys_stub(highest) + compiled_filter


X32_SYSCALL_BIT = 0x40000000
_X32_TOKEN, _X86_64_AUDIT = 0x4000003E, 0xC000003E
_LD_ABS, _JEQ, _JGT, _JSET, _JA, _RET = 0x20, 0x15, 0x25, 0x45, 0x05, 0x06
SECCOMP_RET_ERRNO = 0x00050000


def enosys_stub(highest: dict[int, int]) -> bytes:
    """BPF instructions that return ENOSYS for a system call numbered above ``highest``
    of its architecture (libseccomp's tokens are audit architectures, but x32 calls
    are x86_64's with X32_SYSCALL_BIT set) and fall through to what follows otherwise."""
    limits: dict[int, dict[bool, int]] = {}
    for token, top in highest.items():
        if top >= 0:
            audit = _X86_64_AUDIT if token == _X32_TOKEN else token
            limits.setdefault(audit, {})[token == _X32_TOKEN] = top
    # (code, jump-if-true target, jump-if-false target, k); targets "enosys" or "next"
    body: list[tuple[int, Any, Any, int]] = [(_LD_ABS, 0, 0, 4)]  # the architecture
    for audit, tops in limits.items():
        x32, own = tops.get(True), tops.get(False)
        checks: list[tuple[int, Any, Any, int]] = [(_LD_ABS, 0, 0, 0)]  # the number
        if x32 is not None and own is not None:  # x32's numbers carry the bit: test it
            checks.append((_JSET, 0, 1, X32_SYSCALL_BIT))
        if x32 is not None:
            checks.append((_JGT, "enosys", "next", x32))
        if own is not None:
            checks.append((_JGT, "enosys", "next", own))
        body.append((_JEQ, 0, len(checks), audit))
        body += checks
    body.append((_JA, 0, 0, 1))  # past the ENOSYS return, into libseccomp's program
    enosys, after = len(body), len(body) + 1
    body.append((_RET, 0, 0, SECCOMP_RET_ERRNO | errno.ENOSYS))
    out = b""
    for i, (code, jt, jf, k) in enumerate(body):
        jumps = [{"enosys": enosys, "next": after}[j] - i - 1 if isinstance(j, str) else j
                 for j in (jt, jf)]
        out += struct.pack("=HBBI", code, *jumps, k)
    return out


def compiled(profile: dict[str, Any], capabilities: list[str]) -> bytes:
    """The BPF program of ``profile`` for a process holding ``capabilities`` (cached).

    A cache file holds its key (the profile, capabilities, kernel release and
    machine) in full before the program, and is used only when that key
    matches exactly: a cheap checksum names the file, the comparison decides.
    """
    import zlib

    uname = os.uname()
    key = json.dumps([profile, sorted(capabilities), uname.release, uname.machine],
                     sort_keys=True).encode()
    header = len(key).to_bytes(8, "little") + key
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    path = os.path.join(base, "pinnace", f"seccomp-{zlib.crc32(key):08x}-{len(key)}.bpf")
    try:
        with open(path, "rb") as f:
            data = f.read()
        if data.startswith(header):
            return data[len(header):]
    except OSError:
        pass
    bpf = program(profile, capabilities)
    tmp = f"{path}.{os.getpid()}.tmp"
    try:  # best effort: an unwritable cache only costs the next run the compile
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(tmp, "wb") as out:
            out.write(header + bpf)
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
    return bpf


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2


def install(program: bytes) -> None:
    """Install a compiled BPF program as the calling thread's seccomp filter."""
    buf = ctypes.create_string_buffer(program, len(program))
    prog = _SockFprog(len(program) // 8, ctypes.cast(buf, ctypes.c_void_p))
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(ctypes.c_int(PR_SET_SECCOMP), ctypes.c_ulong(SECCOMP_MODE_FILTER),
                  ctypes.byref(prog), 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"seccomp: {os.strerror(err)}")
