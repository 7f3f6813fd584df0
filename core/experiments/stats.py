"""Summaries of measured samples: median and 95th percentile, or n/a."""

from __future__ import annotations

import statistics
from dataclasses import dataclass

NA = "n/a"


@dataclass
class Summary:
    """The samples of one metric of one strategy, or why there are none (``reason``)."""

    samples: tuple[float, ...] = ()
    reason: str = ""

    @property
    def available(self) -> bool:
        """Whether anything was measured."""
        return bool(self.samples)

    def percentile(self, p: int) -> float:
        """The ``p``-th percentile (inclusive method; the sample itself when there is one)."""
        if len(self.samples) == 1:
            return self.samples[0]
        return statistics.quantiles(self.samples, n=100, method="inclusive")[p - 1]

    @property
    def median(self) -> float:
        """The median sample."""
        return statistics.median(self.samples)

    def cell(self) -> str:
        """``median / p95`` for a table (three significant digits, whole numbers from
        100 on), or ``n/a``."""
        if not self.available:
            return NA
        return f"{_short(self.median)} / {_short(self.percentile(95))}"


def _short(value: float) -> str:
    return f"{value:.0f}" if abs(value) >= 100 else f"{value:.3g}"
