"""Parsing and deciding the per-container policies a monitor applies: restart and log rotation."""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

from pinnace.errors import InvalidConfig
from pinnace.units import parse_bytes

RESTART_NAMES = ("no", "always", "unless-stopped", "on-failure")
MAX_BACKOFF = 60.0


class RestartPolicy(NamedTuple):
    """``--restart``: ``no``, ``always``, ``unless-stopped`` or ``on-failure`` (at most
    ``max`` times when ``max`` > 0)."""

    name: str = "no"
    max: int = 0


class LogOptions(NamedTuple):
    """json-file's rotation: files of at most ``max_size`` bytes (0: no limit), ``max_files``
    of them."""

    max_size: int = 0
    max_files: int = 1


def parse_restart(text: str) -> RestartPolicy:
    """``no``, ``always``, ``unless-stopped`` or ``on-failure[:N]``."""
    name, _, count = text.partition(":")
    if name not in RESTART_NAMES:
        raise InvalidConfig(
            f"invalid restart policy {text!r}: use no, always, unless-stopped or on-failure[:N]")
    if count and (name != "on-failure" or not count.isdigit()):
        raise InvalidConfig(
            f"invalid restart policy {text!r}: only on-failure takes a count N >= 0")
    return RestartPolicy(name, int(count or 0))


def should_restart(policy: RestartPolicy, exit_code: int | None, restarts: int,
                   stopped_by_user: bool) -> bool:
    """Docker's rule: never after ``stop``/``kill`` by a user; on-failure only for a
    non-zero code, at most N times when N > 0."""
    if stopped_by_user or policy.name == "no":
        return False
    if policy.name == "on-failure":
        return exit_code != 0 and (policy.max == 0 or restarts < policy.max)
    return True


def backoff(restarts: int) -> float:
    """Seconds to wait before restart number ``restarts + 1``: 100 ms doubling, at most a minute."""
    return min(0.1 * 2 ** restarts, MAX_BACKOFF)


def parse_log_opts(items: Iterable[str]) -> LogOptions:
    """``--log-opt max-size=10m --log-opt max-file=3`` (json-file's options; as docker's,
    ``max-file`` alone is kept and changes nothing: without ``max-size`` no file rotates)."""
    max_size, max_files = 0, 1
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise InvalidConfig(f"invalid --log-opt {item!r}: use KEY=VALUE")
        if key == "max-size":
            max_size = parse_bytes(value, "--log-opt max-size")
            if max_size <= 0:
                raise InvalidConfig(f"invalid max-size {value!r}: must be positive")
        elif key == "max-file":
            if not value.isdigit() or int(value) < 1:
                raise InvalidConfig(f"invalid max-file {value!r}: a whole number >= 1")
            max_files = int(value)
        else:
            raise InvalidConfig(
                f"unknown log option {key!r}: json-file takes max-size and max-file")
    return LogOptions(max_size, max_files)


def parse_signal(text: str) -> int:
    """``KILL``, ``SIGKILL``, ``kill`` or ``9`` as a signal number."""
    import signal

    name = text.upper()
    if name.isdigit():
        number = int(name)
        if number in {s.value for s in signal.Signals}:
            return number
    else:
        sig = getattr(signal.Signals, name if name.startswith("SIG") else f"SIG{name}", None)
        if sig is not None:
            return int(sig)
    raise InvalidConfig(f"invalid signal: {text}")
