"""``--device HOST[:CONTAINER[:PERMISSIONS]]``: a host device node made in the container,
and its rule in the device allowlist (applied on cgroup v1; v2's allowlist is an eBPF
program pinnace does not load, so there any node made is usable, as without the flag)."""

from __future__ import annotations

import os
import stat

from pinnace.errors import InvalidConfig
from pinnace.runtime.spec import Device


def parse(text: str) -> tuple[Device, str]:
    """The device and its allowlist rule (``c 1:3 rwm``), checked as docker checks them."""
    parts = text.split(":")
    if len(parts) > 3 or not parts[0]:
        raise InvalidConfig(f"invalid device specification: {text}")
    host = parts[0]
    target = parts[1] if len(parts) > 1 and parts[1] else host
    permissions = parts[2] if len(parts) > 2 else "rwm"
    if len(parts) == 2 and parts[1] and set(parts[1]) <= set("rwm"):
        target, permissions = host, parts[1]  # HOST:PERMISSIONS
    if not permissions or not set(permissions) <= set("rwm"):
        raise InvalidConfig(f"invalid device mode: {permissions} (a combination of r, w, m)")
    if not host.startswith("/") or not target.startswith("/"):
        raise InvalidConfig(f"invalid device specification: {text} (paths must be absolute)")
    try:
        st = os.stat(host)
    except OSError as err:
        raise InvalidConfig(f"error gathering device information of {host}: "
                            f"{err.strerror}") from None
    if stat.S_ISCHR(st.st_mode):
        kind = "c"
    elif stat.S_ISBLK(st.st_mode):
        kind = "b"
    else:
        raise InvalidConfig(f"{host} is not a device node")
    major, minor = os.major(st.st_rdev), os.minor(st.st_rdev)
    device = Device(os.path.normpath(target), kind, major, minor,
                    stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid)
    return device, f"{kind} {major}:{minor} {permissions}"


def make(devices: list[Device]) -> None:
    """mknod (mkfifo) each device in the container (after pivot_root: plain paths are its
    own)."""
    old = os.umask(0)
    try:
        for d in devices:
            os.makedirs(os.path.dirname(d.path), exist_ok=True)
            if os.path.lexists(d.path):
                os.unlink(d.path)
            if d.type == "p":
                os.mkfifo(d.path, d.file_mode)
            else:
                kind = stat.S_IFCHR if d.type == "c" else stat.S_IFBLK
                os.mknod(d.path, kind | d.file_mode, os.makedev(d.major, d.minor))
            os.chown(d.path, d.uid, d.gid)
    finally:
        os.umask(old)
