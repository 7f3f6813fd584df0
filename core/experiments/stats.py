"""Summaries of measured samples: median and 95th percentile, or n/a."""

from __future__ import annotations

import statistics
from dataclasses import dataclass

NA = "n/a"


@dataclass(frozen=True)
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

    def cell(self, digits: int = 3) -> str:
        """``median / p95`` for a table, or ``n/a``."""
        if not self.available:
            return NA
        return f"{self.median:.{digits}g} / {self.percentile(95):.{digits}g}"
