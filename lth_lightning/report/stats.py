"""The statistics behind a verdict: a named test on the per-seed values, its level, and Holm's correction.

Pure and Lightning-free; the distributions are ``scipy.stats``'s. A claim's per-seed values are
paired (a ticket and its controls share the seed's initialization), so a comparison of two series
is a one-sample test of their per-seed differences, and a ratio is tested on its logarithm (a ratio
of 2 and one of 1/2 are equally far from 1). Each question is a two-sided test of one null value at
:data:`LEVEL`, and its side (holds or contradicted) is the side of the estimate: under no effect, a
firm verdict either way comes up at most :data:`LEVEL` of the time. The densities a claim is
checked at are one family, corrected with Holm's step-down procedure, so that the chance of any
firm verdict in the family under no effect anywhere stays at most :data:`LEVEL` too.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import stats

__all__ = [
    "CONFIDENCE",
    "LEVEL",
    "Scale",
    "TESTS",
    "Estimate",
    "SeedTest",
    "estimate",
    "holm",
    "seeds_needed",
]

LEVEL = 0.05  # every verdict's level: the family-wise error rate of firm verdicts under no effect
CONFIDENCE = 0.95  # the interval printed beside each estimate (not corrected for the family)

Scale = Literal["difference", "ratio", "value"]


def _transform(values: Sequence[float], scale: Scale) -> np.ndarray:
    """The values on the scale the test works on: ratios as logarithms, the rest as they are."""
    array = np.asarray(values, dtype=float)
    return np.log(array) if scale == "ratio" else array


def _null(null: float, scale: Scale) -> float:
    return math.log(null) if scale == "ratio" else null


@dataclass(frozen=True)
class Estimate:
    """The per-seed statistic: its mean, a :data:`CONFIDENCE` interval over the seeds, and n.

    For a ratio the mean and interval are geometric (computed on the logarithms, then exponentiated).
    """

    mean: float
    low: float
    high: float
    n: int


def estimate(values: Sequence[float], scale: Scale) -> Estimate | None:
    """The mean of the per-seed values with Student's t interval; None without values, no interval for one."""
    if not values:
        return None
    x = _transform(values, scale)
    back: Callable[[float], float] = math.exp if scale == "ratio" else float
    mean = float(x.mean())
    if len(x) < 2:
        return Estimate(back(mean), math.nan, math.nan, 1)
    half = float(stats.t.ppf(0.5 + CONFIDENCE / 2, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x)))
    return Estimate(back(mean), back(mean - half), back(mean + half), len(x))


@dataclass(frozen=True)
class SeedTest:
    """A two-sided test of per-seed values against a null value.

    Attributes:
        name: How the page names it.
        p_value: ``(values on the test's scale, null) -> two-sided p``.
        min_p: The smallest p-value the test can give with n seeds.
    """

    name: str
    p_value: Callable[[np.ndarray, float], float]
    min_p: Callable[[int], float]

    def p(self, values: Sequence[float], null: float, scale: Scale) -> float:
        """The two-sided p-value of ``values`` (a ratio on its logarithm) against ``null``."""
        return self.p_value(_transform(values, scale), _null(null, scale))


def _student(x: np.ndarray, null: float) -> float:
    shifted = x - null
    if len(x) < 2:
        return 1.0
    if float(np.ptp(shifted)) == 0.0:  # no spread: the t statistic is 0 or infinite
        return 1.0 if float(shifted[0]) == 0.0 else 0.0
    return float(stats.ttest_1samp(shifted, 0.0, alternative="two-sided").pvalue)


def _wilcoxon(x: np.ndarray, null: float) -> float:
    shifted = x - null
    if len(x) < 1 or not np.any(shifted):
        return 1.0
    return float(stats.wilcoxon(shifted, alternative="two-sided", method="exact").pvalue)


TESTS: Mapping[str, SeedTest] = {
    "t": SeedTest(
        "paired t-test (Student's t on the per-seed differences, ratios on their logarithms)",
        _student,
        lambda n: 0.0 if n >= 2 else 1.0,
    ),
    "wilcoxon": SeedTest(
        "Wilcoxon signed-rank test, exact (on the per-seed differences, ratios on their logarithms)",
        _wilcoxon,
        lambda n: min(1.0, 2.0 / 2**n) if n >= 1 else 1.0,
    ),
}


def seeds_needed(test: SeedTest, threshold: float, most: int = 64) -> int | None:
    """The fewest seeds with which ``test`` can give a p-value at or below ``threshold`` (None past ``most``)."""
    return next((n for n in range(1, most + 1) if test.min_p(n) <= threshold), None)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (in the input's order): compare each with :data:`LEVEL`.

    The i-th smallest of m p-values is multiplied by ``m - i`` (i from 0), each adjusted value is at
    least the one before it in that order, and none exceeds 1.
    """
    m = len(p_values)
    adjusted = [0.0] * m
    running = 0.0
    for rank, index in enumerate(sorted(range(m), key=lambda i: p_values[i])):
        running = max(running, min(1.0, (m - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted
