"""Waiting on what another process does (a container's exit, its monitor's socket) by
looking again and again: short pauses first, so what happens soon is seen at once,
longer ones later, so a long wait costs little."""

from __future__ import annotations

import os
import select
import time

FIRST = 0.002
LONGEST = 0.02


class Pauses:
    """The pauses of one poll loop: :data:`FIRST` seconds, each half as long again as
    the one before, up to ``longest``; cut short when a watched process exits."""

    def __init__(self, longest: float = LONGEST) -> None:
        self.longest = longest
        self.next = min(FIRST, longest)
        self.pid = 0
        self.pidfd: int | None = None

    def watch(self, pid: int) -> None:
        """End the pause under way when process ``pid`` exits (a container's monitor,
        which has recorded the container's end by then), once."""
        if pid <= 0 or pid == self.pid:
            return
        self.close()
        self.pid = pid
        try:
            self.pidfd = os.pidfd_open(pid)
        except OSError:  # gone already
            pass

    def sleep(self) -> None:
        """Pause before looking again."""
        if self.pidfd is None:
            time.sleep(self.next)
        elif select.select([self.pidfd], [], [], self.next)[0]:
            self.close()  # it exited: plain pauses from now on
        self.next = min(self.longest, self.next * 1.5)

    def close(self) -> None:
        """Stop watching."""
        if self.pidfd is not None:
            os.close(self.pidfd)
            self.pidfd = None
