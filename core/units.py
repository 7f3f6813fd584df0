"""Sizes as people write them on command lines and in config files."""

from __future__ import annotations

from pinnace.errors import InvalidConfig

_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}


def parse_bytes(text: str, what: str) -> int:
    """A byte count from ``1024``, ``512k``, ``64m``, ``1.5g``, ``20G``, ``1GiB``
    (binary units, case-insensitive, an optional ``b``/``ib``); ``what`` names
    the flag or option in the one-line error."""
    import re

    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(?:([kmgtp])i?)?b?\s*", text.lower())
    if not m:
        raise InvalidConfig(f"invalid size for {what}: {text!r} (use e.g. 512k, 64m, 1g)")
    return int(float(m.group(1)) * _UNITS[m.group(2) or ""])


def ago(ts: float | None) -> str:
    """``3 minutes ago``-style age of a timestamp."""
    import time

    return f"{duration(time.time() - ts)} ago" if ts else ""


def duration(seconds: float) -> str:
    """A short human duration, as docker prints them (``Less than a second``, ``About an
    hour``, ``3 days``, ``2 weeks``, ``23 years``)."""
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s < 60:
        return "1 second" if s == 1 else f"{s} seconds"
    minutes = s // 60
    if minutes < 60:
        return "About a minute" if minutes == 1 else f"{minutes} minutes"
    hours = round(seconds / 3600)
    if hours < 48:
        return "About an hour" if hours == 1 else f"{hours} hours"
    for limit, unit, size_in_hours in ((24 * 7 * 2, "days", 24), (24 * 30 * 2, "weeks", 24 * 7),
                                       (24 * 365 * 2, "months", 24 * 30)):
        if hours < limit:
            return f"{hours // size_in_hours} {unit}"
    return f"{hours // (24 * 365)} years"
