# Copyright 2026 The valkey-leader-k8s authors
# See LICENSE file for licensing details.

"""Median and spread of repeated timings, and the ratio between two charms."""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Sequence


@dataclasses.dataclass(frozen=True)
class Summary:
    """Repeated timings, in milliseconds."""

    samples: tuple[float, ...]

    @property
    def median(self) -> float:
        """The middle timing: what a typical run costs."""
        return statistics.median(self.samples)

    @property
    def p25(self) -> float:
        """The first quartile."""
        return _quartiles(self.samples)[0]

    @property
    def p75(self) -> float:
        """The third quartile: half the runs fall between ``p25`` and ``p75``."""
        return _quartiles(self.samples)[2]

    @property
    def minimum(self) -> float:
        """The fastest run: the least noise."""
        return min(self.samples)

    def as_json(self) -> dict[str, float | int | list[float]]:
        """Everything needed to compare runs, samples included."""
        return {
            'n': len(self.samples),
            'median_ms': round(self.median, 4),
            'p25_ms': round(self.p25, 4),
            'p75_ms': round(self.p75, 4),
            'min_ms': round(self.minimum, 4),
            'samples_ms': [round(s, 4) for s in self.samples],
        }


@dataclasses.dataclass(frozen=True)
class Ratio:
    """This charm's timings over the baseline's, from runs made in alternation."""

    of_medians: float
    paired_p25: float
    paired_p75: float

    @classmethod
    def of(cls, charm: Summary, baseline: Summary) -> Ratio:
        """Runs were interleaved: the i-th of each was made at about the same moment."""
        paired = [a / b for a, b in zip(charm.samples, baseline.samples, strict=True)]
        low, _, high = _quartiles(paired)
        return cls(of_medians=charm.median / baseline.median, paired_p25=low, paired_p75=high)

    def as_json(self) -> dict[str, float]:
        """The ratio of medians and the spread of the paired ratios."""
        return {
            'of_medians': round(self.of_medians, 4),
            'paired_p25': round(self.paired_p25, 4),
            'paired_p75': round(self.paired_p75, 4),
        }


def _quartiles(samples: Sequence[float]) -> list[float]:
    if len(samples) < 2:
        return [samples[0]] * 3
    return statistics.quantiles(samples, n=4, method='inclusive')
