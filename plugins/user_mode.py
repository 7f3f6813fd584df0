"""What the user-mode network plugins (``slirp4netns``, ``pasta``) share: each runs one
helper process per container beside it, in the caller's network namespace, which moves
a tap device into the container's namespace and opens the published ports on the host.
Both need ``/dev/net/tun``; both are stopped by the PID they recorded."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from pinnace.plugin import FailedPrecondition

TUN = "/dev/net/tun"
TUN_FIX = (f"root: chmod 666 {TUN} (udev's default on most systems; `make deps` sets it), "
           "the host preparation rootless networking needs")


def require_tun(tool: str) -> None:
    """Refuse when this user may not open the tun device ``tool`` makes its tap with."""
    if not os.access(TUN, os.R_OK | os.W_OK):
        raise FailedPrecondition(
            f"{tool} needs {TUN}, which this user may not open (mode "
            f"{os.stat(TUN).st_mode & 0o777:o}): {TUN_FIX}")


def tun_check(tool: str) -> dict[str, str]:
    """``doctor``'s line on the tun device for ``tool``."""
    usable = os.access(TUN, os.R_OK | os.W_OK)
    return {"check": f"network {tool}: {TUN}", "ok": "yes" if usable else "warn",
            "detail": "usable" if usable else "this user may not open it: no network for "
            f"--net={tool}", "fix": TUN_FIX}


def recorded_pid(pidfile: Path) -> int:
    """The PID written in ``pidfile``, or 0 (no file, or not a number)."""
    try:
        return int(pidfile.read_text())
    except (FileNotFoundError, ValueError):
        return 0


def is_running(pid: int, programs: tuple[str, ...]) -> bool:
    """Whether ``pid`` runs one of ``programs`` (file names of executables)."""
    try:
        return pid > 0 and os.path.basename(os.readlink(f"/proc/{pid}/exe")) in programs
    except OSError:
        return False


def stop(pid: int, programs: tuple[str, ...]) -> None:
    """Kill ``pid`` if it runs one of ``programs`` and wait until it has exited, its
    files (the tap) closed: reaped when it is this process's child, else a zombie."""
    if not is_running(pid, programs):
        return
    os.kill(pid, signal.SIGKILL)
    try:
        os.waitpid(pid, 0)
        return
    except ChildProcessError:
        pass
    deadline = time.monotonic() + 5
    while not _exited(pid) and time.monotonic() < deadline:
        time.sleep(0.01)


def _exited(pid: int) -> bool:
    """Whether ``pid`` is gone or a zombie (an exiting process loses its executable's
    link before it closes its files, so the link alone does not tell)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rpartition(b")")[2].split()[0] in (b"Z", b"X")
    except (FileNotFoundError, ProcessLookupError):
        return True


def last_line(text: str) -> str:
    """The last line a helper printed (its error), without syslog complaints."""
    lines = [line for line in text.strip().splitlines()
             if line.strip() and not line.startswith("Failed to send")]
    return lines[-1] if lines else "no output"
