"""``--pid``, ``--ipc`` and ``--uts``: the container's own namespace (the default), the
host's, or (``pid`` and ``ipc``) another running container's, joined by its path."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from pinnace.errors import FailedPrecondition, InvalidConfig

MODES = {"pid": ("host", "container:"), "ipc": ("host", "private", "shareable", "container:"),
         "uts": ("host",)}
"""The modes each flag takes besides the default (its own namespace)."""


class Sharing(NamedTuple):
    """The namespaces a container makes, and those of them it joins instead."""

    namespaces: list[str]
    paths: dict[str, str]


def sharing(default: list[str], modes: dict[str, str | None],
            container_id: Callable[[str], str]) -> Sharing:
    """The namespaces from ``default`` given ``--pid/--ipc/--uts`` (``modes``); a joined
    one is kept as ``container:ID`` (``container_id`` resolves a name or raises) until
    :func:`resolve` finds its path at each start."""
    namespaces, paths = list(default), {}
    for ns, mode in modes.items():
        if not mode or mode in ("private", "shareable") and mode in MODES[ns]:
            continue
        if mode == "host":
            namespaces.remove(ns)
        elif mode.startswith("container:") and "container:" in MODES[ns] and mode[10:]:
            paths[ns] = "container:" + container_id(mode[10:])
        else:
            known = ", ".join(m + ("NAME" if m.endswith(":") else "") for m in MODES[ns])
            raise InvalidConfig(f"invalid --{ns} mode {mode!r} (one of: {known})")
    return Sharing(namespaces, paths)


def resolve(paths: dict[str, str], running_pid: Callable[[str], tuple[str, int]]
            ) -> dict[str, str]:
    """``container:ID`` entries as the ``/proc/PID/ns/NS`` path of that container's first
    process now; ``running_pid`` gives its label and PID (0 when it is not running)."""
    resolved = {}
    for ns, where in paths.items():
        if where.startswith("container:"):
            label, pid = running_pid(where[10:])
            if not pid:
                raise FailedPrecondition(f"cannot join the {ns} namespace of container "
                                         f"{label}: it is not running")
            where = f"/proc/{pid}/ns/{ns}"
        resolved[ns] = where
    return resolved
