"""Default hardening, as docker does it, for any isolation plugin.

The core builds a :class:`~pinnace.runtime.spec.Security` from docker's
defaults and the flags (:func:`policy`); an isolation plugin applies it at two
points of its container's first process (and of every ``exec``):

1. :func:`restrict_paths` once ``/proc`` and ``/sys`` are mounted and the root
   is pivoted: masked paths are hidden, read-only ones remounted read-only;
2. :meth:`Lockdown.apply` where the process switches to its user: it loads the
   seccomp filter, limits the bounding set, switches user keeping only the allowed
   capabilities, clears the ambient set and sets no_new_privs when asked. The
   :class:`Lockdown` is built earlier, while pinnace's modules can still be imported.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pinnace.errors import InvalidConfig
from pinnace.runtime.spec import Security, User


def policy(privileged: bool = False, cap_add: Iterable[str] = (), cap_drop: Iterable[str] = (),
           security_opts: Iterable[str] = ()) -> Security:
    """The container's security from ``--privileged``, ``--cap-add``, ``--cap-drop`` and
    ``--security-opt``; raise InvalidConfig for an unknown capability or option."""
    from pinnace.runtime import capabilities

    sec = Security(privileged=privileged)
    for opt in security_opts:
        _security_opt(sec, opt)
    adds = [capabilities.canonical(c) for c in cap_add]
    drops = [capabilities.canonical(c) for c in cap_drop]
    if privileged:
        sec.capabilities = capabilities.supported()
        sec.seccomp = "unconfined"
        sec.masked_paths, sec.readonly_paths = [], []
        return sec
    every = capabilities.supported()
    if "ALL" in adds:
        caps = list(every)
    elif "ALL" in drops:
        caps = []
    else:
        caps = list(sec.capabilities)
    caps = [c for c in caps if c not in drops]
    caps += [c for c in adds if c != "ALL" and c not in caps]
    sec.capabilities = caps
    return sec


def _security_opt(sec: Security, opt: str) -> None:
    key, sep, value = opt.partition("=")
    if not sep:
        key, sep, value = opt.partition(":")
    key = key.strip()
    if key == "no-new-privileges":
        if value not in ("", "true", "false"):
            raise InvalidConfig(f"invalid --security-opt {opt!r}: no-new-privileges takes "
                                "true or false")
        sec.no_new_privileges = value != "false"
    elif key == "seccomp" and value:
        sec.seccomp = value if value == "unconfined" else _profile_file(value)
    elif (key, value) in (("apparmor", "unconfined"), ("label", "disable")):
        pass  # pinnace applies no LSM profile: asking for none is already true
    else:
        raise InvalidConfig(f"invalid --security-opt {opt!r}: pinnace supports "
                            "no-new-privileges, seccomp=unconfined|FILE")


def _profile_file(path: str) -> dict[str, Any]:
    from pinnace.runtime.seccomp import parse_profile

    try:
        text = Path(path).read_text()
    except OSError as err:
        raise InvalidConfig(f"cannot read seccomp profile {path}: {err.strerror}") from None
    return parse_profile(text, path)


def restrict_paths(sec: Security) -> None:
    """In the container's mount namespace, after pivot_root: hide the masked paths
    (a read-only empty tmpfs over a directory, /dev/null over a file) and make the
    read-only ones read-only. Paths the kernel does not have are skipped."""
    from pinnace import linux

    for path in sec.masked_paths:
        if os.path.isdir(path) and not os.path.islink(path):
            linux.mount("tmpfs", path, "tmpfs", linux.MS_RDONLY, "size=0")
        elif os.path.exists(path):
            linux.mount("/dev/null", path, None, linux.MS_BIND)
    for path in sec.readonly_paths:
        if os.path.exists(path):
            linux.mount(path, path, None, linux.MS_BIND | linux.MS_REC)
            flags = os.statvfs(path).f_flag & (linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC)
            linux.mount("", path, None,
                        linux.MS_BIND | linux.MS_REMOUNT | linux.MS_RDONLY | flags)


class Lockdown:
    """A container's privileges, prepared while pinnace's modules are still reachable
    (before pivot_root or setns into the container's mounts): :meth:`apply` imports nothing."""

    def __init__(self, sec: Security) -> None:
        from pinnace.runtime import capabilities, seccomp

        self._caps, self._seccomp = capabilities, seccomp
        self.keep = capabilities.mask(sec.capabilities)
        self.inheritable = capabilities.mask(sec.inheritable)
        self.ambient = capabilities.mask(sec.ambient)
        self.no_new_privileges = sec.no_new_privileges
        self.program = b""
        with open("/proc/self/setgroups", encoding="ascii") as f:  # "deny" in a namespace
            self.setgroups = f.read().strip() != "deny"  # that maps one id (rootless)
        if sec.seccomp != "unconfined":
            profile = seccomp.default_profile() if sec.seccomp == "default" else sec.seccomp
            self.program = seccomp.compiled(profile, sec.capabilities)  # type: ignore[arg-type]

    def apply(self, user: User) -> None:
        """Become the container's process: seccomp filter, bounding set, user and groups,
        effective/permitted capabilities, the inheritable and ambient sets asked for (empty by
        default), no_new_privs.

        Runs as root with every capability. The filter goes first, while this process
        may still load one without no_new_privs; it must allow what follows (docker's does).
        """
        caps = self._caps
        if self.no_new_privileges:
            caps.set_no_new_privs()
        if self.program:
            self._seccomp.install(self.program)
        caps.limit_bounding_set(self.keep)
        caps.set_keepcaps(True)
        if self.setgroups or user.additional_gids:
            os.setgroups(user.additional_gids)
        os.setgid(user.gid)
        os.setuid(user.uid)
        caps.set_keepcaps(False)
        allowed = self.keep & caps.current("permitted")
        inheritable = self.inheritable & self.keep
        caps.set_sets(allowed, allowed, inheritable)
        caps.clear_ambient()
        caps.raise_ambient(self.ambient & allowed & inheritable)  # the kernel's rule (as runc)
        _close_on_exec_above_stdio()


def _close_on_exec_above_stdio() -> None:
    """Let no descriptor but stdin, stdout and stderr cross into the container's
    program: one inherited from whatever started pinnace could reach the host."""
    for name in os.listdir("/proc/self/fd"):
        if int(name) > 2:
            with contextlib.suppress(OSError):  # the listing's own, already closed
                os.set_inheritable(int(name), False)
