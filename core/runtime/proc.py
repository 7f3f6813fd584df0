"""Host process facts read from /proc, to tell a live container from a recycled PID."""

from __future__ import annotations


def start_time(pid: int) -> int:
    """The process's start time in clock ticks since boot (0 if it does not exist)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except OSError:
        return 0
    # the command name (field 2) may hold spaces and parentheses: split after the last ')'
    fields = raw[raw.rindex(b")") + 2:].split()
    return int(fields[19])


def is_alive(pid: int, started: int) -> bool:
    """True when ``pid`` runs and is the process that started at ``started`` (not a zombie)."""
    if pid <= 0:
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except OSError:
        return False
    fields = raw[raw.rindex(b")") + 2:].split()
    return fields[0] != b"Z" and int(fields[19]) == started
