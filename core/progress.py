"""Progress bars for transfers: one line per item, redrawn in place on a terminal.

Thread-safe (layers download in parallel) and cheap: no third-party
renderer, at most ten redraws a second. Off a terminal, nothing is drawn.
"""

from __future__ import annotations

import threading
import time
from typing import TextIO

_WIDTH = 30
_INTERVAL = 0.1


def _human(n: float) -> str:
    if n < 1000:
        return f"{int(n)}B"
    for unit in ("kB", "MB"):
        n /= 1000
        if n < 1000:
            return f"{n:.1f}{unit}"
    return f"{n / 1000:.1f}GB"


class Bar:
    """One item's line: a label, a bar, bytes done of the total, then a final status."""

    def __init__(self, owner: Progress, label: str, total: int | None) -> None:
        self.owner, self.label, self.total = owner, label, total
        self.done = 0
        self.status = ""

    def advance(self, n: int) -> None:
        """Count ``n`` more bytes."""
        self.done += n
        self.owner.redraw()

    def restart(self) -> None:
        """Start over (a retried download)."""
        self.done = 0
        self.owner.redraw()

    def finish(self, status: str) -> None:
        """Replace the bar with ``status`` (``Pull complete``, ``Already exists``)."""
        self.status = status
        self.owner.redraw(force=True)

    def render(self) -> str:
        """The line as it is drawn now."""
        if self.status:
            return f"{self.label}: {self.status}"
        if not self.total:
            return f"{self.label}: {_human(self.done)}"
        filled = min(_WIDTH, _WIDTH * self.done // self.total)
        bar = "=" * max(0, filled - 1) + (">" if filled else "") + " " * (_WIDTH - filled)
        return f"{self.label}: [{bar}] {_human(self.done)}/{_human(self.total)}"


class Progress:
    """Bars drawn on ``out`` (a terminal) below each other."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.bars: list[Bar] = []
        self.lock = threading.Lock()
        self.drawn = 0
        self.last = 0.0

    def bar(self, label: str, total: int | None = None) -> Bar:
        """A new bar at the bottom."""
        bar = Bar(self, label, total)
        with self.lock:
            self.bars.append(bar)
        self.redraw(force=True)
        return bar

    def redraw(self, force: bool = False) -> None:
        """Redraw every bar, at most every 0.1 s unless ``force``."""
        now = time.monotonic()
        if not force and now - self.last < _INTERVAL:
            return
        with self.lock:
            self.last = now
            self._erase()
            self._draw()

    def _erase(self) -> None:
        if self.drawn:
            self.out.write(f"\x1b[{self.drawn}F\x1b[J")
        self.drawn = 0

    def _draw(self) -> None:
        for bar in self.bars:
            self.out.write(bar.render()[:200] + "\n")
        self.drawn = len(self.bars)
        self.out.flush()
