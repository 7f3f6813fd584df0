"""Linux capabilities by name, and the system calls that set them (prctl, capset) via ctypes."""

from __future__ import annotations

import ctypes
import os
from collections.abc import Iterable

from pinnace.errors import InvalidConfig

NAMES = (
    "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID",
    "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW",
    "IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT",
    "SYS_ADMIN", "SYS_BOOT", "SYS_NICE", "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD",
    "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP", "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG",
    "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF", "CHECKPOINT_RESTORE",
)
"""Capability names without the ``CAP_`` prefix, indexed by number."""

NUMBERS = {f"CAP_{name}": number for number, name in enumerate(NAMES)}

PR_CAPBSET_DROP = 24
PR_SET_KEEPCAPS = 8
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_RAISE = 2
PR_CAP_AMBIENT_CLEAR_ALL = 4
_CAPABILITY_VERSION_3 = 0x20080522

_libc = ctypes.CDLL(None, use_errno=True)


def canonical(name: str) -> str:
    """``net_admin``, ``NET_ADMIN`` or ``CAP_NET_ADMIN`` as ``CAP_NET_ADMIN``; ``ALL`` stays."""
    upper = name.strip().upper()
    if upper == "ALL":
        return upper
    full = upper if upper.startswith("CAP_") else f"CAP_{upper}"
    if full not in NUMBERS:
        raise InvalidConfig(f"unknown capability: {name!r}")
    return full


def supported() -> list[str]:
    """Every capability this kernel knows, by name."""
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            last = int(f.read())
    except OSError:
        last = len(NAMES) - 1
    return [f"CAP_{n}" for n in NAMES[: last + 1]]


def mask(names: Iterable[str]) -> int:
    """The bit mask of ``names``."""
    bits = 0
    for name in names:
        bits |= 1 << NUMBERS[name]
    return bits


def _prctl(option: int, arg2: int = 0, arg3: int = 0) -> None:
    if _libc.prctl(ctypes.c_int(option), ctypes.c_ulong(arg2), ctypes.c_ulong(arg3), 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl({option}): {os.strerror(err)}")


def limit_bounding_set(keep: int) -> None:
    """Drop every capability not in the mask ``keep`` from the bounding set (needs CAP_SETPCAP)."""
    for number in range(len(supported())):
        if not keep & (1 << number):
            _prctl(PR_CAPBSET_DROP, number)


def set_keepcaps(on: bool) -> None:
    """Keep the permitted set across a switch from root to another user."""
    _prctl(PR_SET_KEEPCAPS, int(on))


def set_no_new_privs() -> None:
    """prctl(PR_SET_NO_NEW_PRIVS): exec can never grant privileges (setuid bits, file caps)."""
    _prctl(PR_SET_NO_NEW_PRIVS, 1)


def clear_ambient() -> None:
    """Empty the ambient set."""
    _prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)


def raise_ambient(mask: int) -> None:
    """Add the capabilities of ``mask`` to the ambient set (each must be permitted and
    inheritable already)."""
    for number in range(mask.bit_length()):
        if mask & (1 << number):
            _prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, number)


class _Header(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _Data(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


def current(which: str = "permitted") -> int:
    """The calling thread's ``effective``, ``permitted`` or ``inheritable`` mask (capget)."""
    header, data = _Header(_CAPABILITY_VERSION_3, 0), (_Data * 2)()
    if _libc.capget(ctypes.byref(header), data) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"capget: {os.strerror(err)}")
    return getattr(data[0], which) | getattr(data[1], which) << 32


def set_sets(effective: int, permitted: int, inheritable: int) -> None:
    """capset(2) on the calling thread."""
    header, data = _Header(_CAPABILITY_VERSION_3, 0), (_Data * 2)()
    for i in (0, 1):
        shift = 32 * i
        data[i].effective = (effective >> shift) & 0xFFFFFFFF
        data[i].permitted = (permitted >> shift) & 0xFFFFFFFF
        data[i].inheritable = (inheritable >> shift) & 0xFFFFFFFF
    if _libc.capset(ctypes.byref(header), data) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"capset: {os.strerror(err)}")
