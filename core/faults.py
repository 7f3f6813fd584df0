"""Crash points: named places in multi-step operations where a test can kill pinnace.

With ``PINNACE_CRASH_AT=NAME`` in the environment, the process that reaches
:func:`point` ``NAME`` kills itself with SIGKILL there (``NAME#N``: the Nth
time it is reached). The tests use it to check that a kill at any step leaves
only what the collector reclaims. Without the variable a point costs one
comparison.
"""

from __future__ import annotations

import os

_AT = os.environ.get("PINNACE_CRASH_AT", "")
_seen: dict[str, int] = {}


def point(name: str) -> None:
    """Die here (SIGKILL, no cleanup of any kind) if the environment asks for it."""
    if not _AT:
        return
    wanted, _, nth = _AT.partition("#")
    if name != wanted:
        return
    _seen[name] = _seen.get(name, 0) + 1
    if _seen[name] >= int(nth or 1):
        import signal

        os.kill(os.getpid(), signal.SIGKILL)
