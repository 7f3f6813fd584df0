"""``--ulimit name=soft[:hard]`` and the config's ``default_ulimits``: resource limits
by docker's names, set in the container's first process before exec."""

from __future__ import annotations

import resource
from collections.abc import Iterable

from pinnace.errors import InvalidConfig
from pinnace.runtime.spec import Rlimit

NAMES = {
    "as": "RLIMIT_AS", "core": "RLIMIT_CORE", "cpu": "RLIMIT_CPU", "data": "RLIMIT_DATA",
    "fsize": "RLIMIT_FSIZE", "locks": "RLIMIT_LOCKS", "memlock": "RLIMIT_MEMLOCK",
    "msgqueue": "RLIMIT_MSGQUEUE", "nice": "RLIMIT_NICE", "nofile": "RLIMIT_NOFILE",
    "nproc": "RLIMIT_NPROC", "rss": "RLIMIT_RSS", "rtprio": "RLIMIT_RTPRIO",
    "rttime": "RLIMIT_RTTIME", "sigpending": "RLIMIT_SIGPENDING", "stack": "RLIMIT_STACK",
}
"""docker's ulimit names and the kernel's resources they set."""


def parse(text: str) -> Rlimit:
    """One ``name=soft[:hard]`` (``-1`` is unlimited), checked as docker checks it."""
    name, eq, values = text.partition("=")
    if not eq:
        raise InvalidConfig(f"invalid ulimit argument: {text}")
    if name not in NAMES:
        raise InvalidConfig(f"invalid ulimit type: {name} (one of {', '.join(sorted(NAMES))})")
    soft_text, colon, hard_text = values.partition(":")
    try:
        soft = int(soft_text)
        hard = int(hard_text) if colon else soft
    except ValueError:
        raise InvalidConfig(f"invalid ulimit argument: {text}") from None
    if soft > hard and hard != -1 or soft == -1 and hard != -1:
        raise InvalidConfig(f"ulimit soft limit must be less than or equal to hard limit: "
                            f"{soft} > {hard}")
    return Rlimit(type=NAMES[name], soft=soft, hard=hard)


def rlimits(flags: Iterable[str], defaults: str = "") -> list[Rlimit]:
    """The limits of ``--ulimit`` over the config's ``default_ulimits`` (comma-separated)."""
    chosen = {r.type: r for r in map(parse, filter(None, defaults.split(",")))}
    chosen.update((r.type, r) for r in map(parse, flags))
    return list(chosen.values())


def apply(limits: Iterable[Rlimit]) -> None:
    """``setrlimit`` each (in the container's process, while it may still raise them)."""
    for limit in limits:
        value = (resource.RLIM_INFINITY if limit.soft == -1 else limit.soft,
                 resource.RLIM_INFINITY if limit.hard == -1 else limit.hard)
        resource.setrlimit(getattr(resource, limit.type), value)
