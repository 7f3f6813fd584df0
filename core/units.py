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
