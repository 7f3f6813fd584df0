"""``--sysctl``: namespaced kernel parameters only, and only for namespaces the container
does not share with the host (docker's rule)."""

from __future__ import annotations

import re
from collections.abc import Iterable

from pinnace.errors import InvalidConfig

IPC_NAMES = ("kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem", "kernel.shmall",
             "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced")
"""Parameters of the IPC namespace, besides ``fs.mqueue.*``."""

_NAME = re.compile(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)+")
"""A parameter's dotted name: no ``/`` and no empty part, so its path under /proc/sys
is the parameter named and no other (``net.x/../../kernel`` is refused)."""


def parse(items: Iterable[str], private_ipc: bool, private_net: bool,
          private_uts: bool) -> dict[str, str]:
    """``KEY=VALUE`` pairs, each refused unless it belongs to a namespace of the container's own."""
    found: dict[str, str] = {}
    for item in items:
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq or not _NAME.fullmatch(key):
            raise InvalidConfig(f"invalid --sysctl {item!r} (use KEY=VALUE, KEY dotted "
                                "like net.ipv4.ip_forward)")
        if key in IPC_NAMES or key.startswith("fs.mqueue."):
            if not private_ipc:
                raise InvalidConfig(f"sysctl {key!r} is not allowed when sharing the host's "
                                    "IPC namespace")
        elif key.startswith("net."):
            if not private_net:
                raise InvalidConfig(f"sysctl {key!r} is not allowed when sharing the host's "
                                    "network namespace")
        elif key in ("kernel.domainname", "kernel.hostname"):
            if not private_uts:
                raise InvalidConfig(f"sysctl {key!r} is not allowed in the host's UTS "
                                    "namespace")
        else:
            raise InvalidConfig(f"sysctl {key!r} is not whitelisted (not a namespaced "
                                "parameter)")
        found[key] = value
    return found


def apply(values: dict[str, str]) -> None:
    """Write each under ``/proc/sys`` (in the container, before ``/proc/sys`` is made
    read-only)."""
    for key, value in values.items():
        path = "/proc/sys/" + key.replace(".", "/")
        try:
            with open(path, "w") as f:
                f.write(value)
        except OSError as err:
            raise OSError(err.errno, f"sysctl {key}={value}: {err.strerror}") from None
