"""Seccomp profiles in docker's JSON format: the built-in default, parsing, compiling
through libseccomp (the ``pyseccomp`` binding) and installing the compiled filter.

Compiling costs ~45 ms (most of it the binding finding libseccomp), so the BPF
program is cached under ``~/.cache/pinnace``, keyed on the profile, the
capabilities and the kernel; installing it is one prctl through ctypes.

The built-in profile refuses (EPERM) what docker's default profile refuses: module
loading, kexec, reboot, mounts, namespaces (``unshare``, ``setns``, ``clone`` with
namespace flags), the kernel keyring, ``bpf``, ``perf_event_open``, clock setting,
swap, ``acct``, raw I/O ports, cross-process memory access, io_uring and obsolete
calls, each unless the container holds the capability docker ties it to. It is
written as a deny list over an allowing default, so a system call it does not
name is allowed (docker's profile is an allow list: see docs/decisions.md).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
from typing import Any

from pinnace.errors import InvalidConfig

ACTIONS = ("SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD", "SCMP_ACT_TRAP",
           "SCMP_ACT_ERRNO", "SCMP_ACT_TRACE", "SCMP_ACT_ALLOW", "SCMP_ACT_LOG")
OPERATORS = ("SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_EQ", "SCMP_CMP_GE",
             "SCMP_CMP_GT", "SCMP_CMP_MASKED_EQ")

NAMESPACE_FLAGS = (0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000,
                   0x40000000)
"""CLONE_NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET."""

_GATED: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = (
    (("mount", "umount", "umount2", "pivot_root", "unshare", "setns", "fsopen", "fsconfig",
      "fsmount", "fspick", "move_mount", "open_tree", "mount_setattr", "quotactl",
      "quotactl_fd", "lookup_dcookie", "name_to_handle_at", "swapon", "swapoff",
      "fanotify_init"), ("CAP_SYS_ADMIN",)),
    (("bpf",), ("CAP_SYS_ADMIN", "CAP_BPF")),
    (("perf_event_open",), ("CAP_SYS_ADMIN", "CAP_PERFMON")),
    (("init_module", "finit_module", "delete_module"), ("CAP_SYS_MODULE",)),
    (("reboot", "kexec_load", "kexec_file_load"), ("CAP_SYS_BOOT",)),
    (("clock_settime", "clock_settime64", "clock_adjtime", "clock_adjtime64", "settimeofday",
      "stime"), ("CAP_SYS_TIME",)),
    (("acct",), ("CAP_SYS_PACCT",)),
    (("iopl", "ioperm"), ("CAP_SYS_RAWIO",)),
    (("process_vm_readv", "process_vm_writev", "kcmp", "pidfd_getfd", "userfaultfd"),
     ("CAP_SYS_PTRACE",)),
    (("mbind", "set_mempolicy", "get_mempolicy", "move_pages", "migrate_pages"),
     ("CAP_SYS_NICE",)),
    (("open_by_handle_at",), ("CAP_DAC_READ_SEARCH",)),
    (("syslog",), ("CAP_SYSLOG",)),
    (("vhangup",), ("CAP_SYS_TTY_CONFIG",)),
)
"""System calls refused unless the container holds one of the capabilities."""

_ALWAYS = ("add_key", "keyctl", "request_key", "io_uring_setup", "io_uring_enter",
           "io_uring_register", "create_module", "get_kernel_syms", "query_module",
           "nfsservctl", "sysfs", "_sysctl", "uselib", "ustat", "vm86", "vm86old")
"""System calls refused to every container (keyrings are not namespaced; the rest is
obsolete or a known attack surface)."""


def default_profile() -> dict[str, Any]:
    """The built-in profile, in docker's JSON format."""
    eperm = {"action": "SCMP_ACT_ERRNO", "errnoRet": errno.EPERM}
    rules: list[dict[str, Any]] = [dict(eperm, names=list(_ALWAYS))]
    rules += [dict(eperm, names=list(names), excludes={"caps": list(caps)})
              for names, caps in _GATED]
    rules += [dict(eperm, names=["clone"], excludes={"caps": ["CAP_SYS_ADMIN"]},
                   args=[{"index": 0, "value": flag, "valueTwo": flag,
                          "op": "SCMP_CMP_MASKED_EQ"}]) for flag in NAMESPACE_FLAGS]
    # clone3 hides its flags in memory a filter cannot read: ENOSYS makes libc use clone
    rules.append({"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.ENOSYS,
                  "excludes": {"caps": ["CAP_SYS_ADMIN"]}})
    return {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": rules}


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


def _applies(rule: dict[str, Any], caps: set[str], arch: str) -> bool:
    """docker's includes/excludes: every included capability held, no excluded one."""
    inc, exc = rule.get("includes") or {}, rule.get("excludes") or {}
    if not set(inc.get("caps") or ()) <= caps or set(exc.get("caps") or ()) & caps:
        return False
    if inc.get("arches") and arch not in inc["arches"]:
        return False
    if arch in (exc.get("arches") or ()):
        return False
    if inc.get("minKernel"):
        have = tuple(int(x) for x in os.uname().release.split("-")[0].split(".")[:2])
        want = tuple(int(x) for x in str(inc["minKernel"]).split(".")[:2])
        if have < want:
            return False
    return True


def build(profile: dict[str, Any], capabilities: list[str]) -> Any:
    """Compile ``profile`` for a process holding ``capabilities``; the result's ``load()``
    installs it on the calling thread (which needs CAP_SYS_ADMIN or no_new_privs:
    it does not set no_new_privs itself)."""
    import pyseccomp as sc

    def action(name: str, errno_ret: int | None) -> int:
        if name == "SCMP_ACT_ERRNO":
            return sc.ERRNO(errno.EPERM if errno_ret is None else errno_ret)
        if name == "SCMP_ACT_TRACE":
            return sc.TRACE(errno.EPERM if errno_ret is None else errno_ret)
        return {"SCMP_ACT_KILL": sc.KILL, "SCMP_ACT_KILL_THREAD": sc.KILL_THREAD,
                "SCMP_ACT_KILL_PROCESS": sc.KILL_PROCESS, "SCMP_ACT_TRAP": sc.TRAP,
                "SCMP_ACT_ALLOW": sc.ALLOW, "SCMP_ACT_LOG": sc.LOG}[name]

    default = action(profile["defaultAction"], profile.get("defaultErrnoRet"))
    flt = sc.SyscallFilter(default)
    flt.set_attr(sc.Attr.CTL_NNP, 0)  # no_new_privs is the caller's choice (--security-opt)
    native = sc.system_arch()
    arch_names = {getattr(sc.Arch, n): f"SCMP_ARCH_{n}" for n in dir(sc.Arch) if n.isupper()}
    arch = arch_names.get(native, "")
    for name in _architectures(profile, arch):
        value = getattr(sc.Arch, name.removeprefix("SCMP_ARCH_"), None)
        if value is not None and value != native:
            flt.add_arch(value)
    caps = set(capabilities)
    for rule in profile.get("syscalls") or []:
        act = action(rule["action"], rule.get("errnoRet"))
        if act == default or not _applies(rule, caps, arch):
            continue
        raw = rule.get("args") or []
        args = [sc.Arg(a["index"], OPERATORS.index(a["op"]) + 1, a.get("value", 0),
                       a.get("valueTwo", 0)) for a in raw]
        # libseccomp ANDs one comparison per argument; several on one argument are ORed rules
        distinct = len({a["index"] for a in raw}) == len(raw)
        groups = [args] if distinct else [[a] for a in args]
        for name in rule.get("names") or [rule["name"]]:
            number = sc.resolve_syscall(sc.Arch.NATIVE, name)
            if number == -1:  # unknown to this libseccomp: skipped, as docker does
                continue
            for group in groups:
                flt.add_rule(act, number, *group)
    return flt


def _architectures(profile: dict[str, Any], native: str) -> list[str]:
    """The architectures a profile lists for this machine (``archMap`` or ``architectures``)."""
    for entry in profile.get("archMap") or []:
        if entry.get("architecture") == native:
            return [native, *(entry.get("subArchitectures") or [])]
    return list(profile.get("architectures") or [])


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
    with open(os.memfd_create("seccomp", os.MFD_CLOEXEC), "w+b") as f:
        build(profile, capabilities).export_bpf(f)
        f.seek(0)
        program = f.read()
    tmp = f"{path}.{os.getpid()}.tmp"
    try:  # best effort: an unwritable cache only costs the next run the compile
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(tmp, "wb") as out:
            out.write(header + program)
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
    return program


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
