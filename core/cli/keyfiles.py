"""``--env-file`` and ``--label-file``, in docker's format, and ``--label`` pairs.

One ``KEY=VALUE`` a line; blank lines and lines starting with ``#`` are skipped; leading
whitespace is dropped, the value is kept as written (quotes included). In an env file a
bare ``KEY`` takes the host's value (and is left out when the host has none).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from pinnace.errors import InvalidConfig


def _lines(path: str) -> list[tuple[int, str]]:
    """The numbered lines of ``path`` that hold an entry."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as err:
        raise InvalidConfig(f"cannot read {path}: {err.strerror}") from None
    except UnicodeDecodeError:
        raise InvalidConfig(f"{path} is not UTF-8 text") from None
    found = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.lstrip()
        if line and not line.startswith("#"):
            found.append((number, line))
    return found


def _key(path: str, number: int, line: str) -> tuple[str, str, bool]:
    """The key, value and whether a ``=`` was given, of one entry; a bad key is an error
    naming the file and the line."""
    key, sep, value = line.partition("=")
    if not key:
        raise InvalidConfig(f"{path}, line {number}: no variable name before '='")
    if any(c.isspace() for c in key):
        raise InvalidConfig(f"{path}, line {number}: variable {key.strip()!r} contains "
                            "whitespace")
    return key, value, bool(sep)


def env_file(path: str) -> list[str]:
    """The ``KEY=VALUE`` entries of an env file (a bare key takes the host's value)."""
    env = []
    for number, line in _lines(path):
        key, value, given = _key(path, number, line)
        if given:
            env.append(f"{key}={value}")
        elif key in os.environ:
            env.append(f"{key}={os.environ[key]}")
    return env


def labels(files: Sequence[str], pairs: Sequence[str]) -> dict[str, str]:
    """Labels from ``--label-file`` files, then ``--label K[=V]`` (which win)."""
    found: dict[str, str] = {}
    for path in files:
        for number, line in _lines(path):
            key, value, _ = _key(path, number, line)
            found[key] = value
    for pair in pairs:
        key, _, value = pair.partition("=")
        if not key:
            raise InvalidConfig(f"invalid label {pair!r}: expected KEY=VALUE")
        found[key] = value
    return found
