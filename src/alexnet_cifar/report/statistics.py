"""Numbers over seeds, with their uncertainty: a group's mean and 95% interval, and the paired
difference of two groups (Student t; scipy.stats for the distribution, not a hand-written one)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

LEVEL = 0.95  # confidence level of every interval


@dataclass(frozen=True)
class Spread:
    """One group of numbers (one per seed): mean, standard deviation, 95% interval, range."""

    n: int
    mean: float
    sd: float  # sample standard deviation (n - 1); 0 for one number
    low: float  # the 95% interval of the mean (Student t); the mean itself for one number
    high: float
    min: float
    max: float

    def text(self, scale: float = 100.0, unit: str = "%") -> str:
        ci = f"± {(self.high - self.mean) * scale:.2f} (95% CI, n={self.n})" if self.n > 1 else "(one seed: no CI)"
        return (
            f"{self.mean * scale:.2f}{unit} {ci}, "
            f"sd {self.sd * scale:.2f}, min {self.min * scale:.2f}, max {self.max * scale:.2f}"
        )


def spread(values: Sequence[float]) -> Spread:
    x = np.asarray(values, dtype=float)
    n = len(x)
    if n == 0:
        raise ValueError("no values")
    sd = float(x.std(ddof=1)) if n > 1 else 0.0
    half = float(stats.t.ppf((1 + LEVEL) / 2, n - 1) * sd / math.sqrt(n)) if n > 1 else 0.0
    mean = float(x.mean())
    return Spread(n, mean, sd, mean - half, mean + half, float(x.min()), float(x.max()))


@dataclass(frozen=True)
class PairedDifference:
    """A minus B over paired seeds: the mean difference, its 95% interval, a paired t-test's
    p-value, and how many seeds would resolve a difference of `target` at the measured spread."""

    difference: Spread
    p_value: float  # two-sided; nan for fewer than 2 pairs or no spread at all
    target: float
    seeds_needed: int | None  # None: fewer than 2 pairs, so no spread was measured

    def text(self, scale: float = 100.0, unit: str = " points") -> str:
        d = self.difference
        p = "n/a" if math.isnan(self.p_value) else f"{self.p_value:.3g}"
        need = "unknown (one pair)" if self.seeds_needed is None else str(self.seeds_needed)
        return (
            f"A - B = {d.mean * scale:+.2f}{unit}, 95% CI [{d.low * scale:+.2f}, {d.high * scale:+.2f}] over "
            f"{d.n} paired seeds; paired t-test p = {p}; seeds for a 95% CI of ± {self.target * scale:.2f}"
            f"{unit}: {need}"
        )


def paired_difference(a: Sequence[float], b: Sequence[float], target: float) -> PairedDifference:
    """`a[i]` and `b[i]` come from the same seed."""
    if len(a) != len(b):
        raise ValueError("unpaired")
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    diff = spread(d)
    measured = len(d) > 1 and diff.sd > 0  # a t-test needs a spread
    p = float(stats.ttest_rel(a, b).pvalue) if measured else float("nan")
    return PairedDifference(diff, p, target, seeds_for(diff.sd, target) if len(d) > 1 else None)


def seeds_for(sd: float, target: float) -> int:
    """The fewest seeds whose 95% interval of a mean difference is at most ± `target`, at spread `sd`.
    The normal quantile's answer is a lower bound (t's is larger), so the search starts there."""
    if target <= 0:
        raise ValueError("target must be > 0")
    if sd == 0:
        return 2
    n = max(2, math.floor((stats.norm.ppf((1 + LEVEL) / 2) * sd / target) ** 2))
    while stats.t.ppf((1 + LEVEL) / 2, n - 1) * sd / math.sqrt(n) > target:
        n += 1
    return n
