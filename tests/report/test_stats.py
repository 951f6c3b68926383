"""The statistics behind a verdict, against textbook values and restatements of the procedures."""

import math

import pytest

from lth_lightning.report.stats import LEVEL, TESTS, estimate, holm, seeds_needed


def test_holm_adjusts_as_the_step_down_procedure_does_by_hand():
    # sorted: 0.005 x 4 = 0.02, 0.01 x 3 = 0.03, 0.03 x 2 = 0.06, 0.04 x 1 = 0.04 -> raised to 0.06 (monotone)
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # capped at 1
    assert holm([]) == []
    assert holm([0.02]) == pytest.approx([0.02])  # a family of one is not corrected


def test_the_paired_t_test_gives_the_textbook_p_value():
    # values 1, 2, 3 against 0: mean 2, sd 1, t = 2 / (1 / sqrt 3) = 3.4641 with 2 degrees of freedom: p = 0.0742
    assert TESTS["t"].p([1.0, 2.0, 3.0], 0.0, "difference") == pytest.approx(0.07418, abs=1e-4)
    # a ratio is tested on its logarithm: ratios e, e^2, e^3 against 1 are the values above against 0
    assert TESTS["t"].p([math.e, math.e**2, math.e**3], 1.0, "ratio") == pytest.approx(0.07418, abs=1e-4)
    assert TESTS["t"].p([1.0, 1.0], 0.0, "difference") == 0.0  # no spread, off the null: certain
    assert TESTS["t"].p([1.0, 1.0], 1.0, "difference") == 1.0


def test_the_signed_rank_test_is_exact_and_says_how_many_seeds_it_needs():
    # all 5 differences positive: the exact two-sided p is 2 / 2^5 = 0.0625, above 0.05 whatever the effect
    assert TESTS["wilcoxon"].p([0.1, 0.2, 0.3, 0.4, 0.5], 0.0, "difference") == pytest.approx(0.0625)
    assert seeds_needed(TESTS["wilcoxon"], LEVEL) == 6  # 2 / 64 = 0.031
    assert seeds_needed(TESTS["wilcoxon"], LEVEL / 15) == 10  # Holm's first step over 15 densities: 0.0033
    assert seeds_needed(TESTS["t"], LEVEL / 15) == 2


def test_the_estimate_is_the_mean_with_students_interval_geometric_for_a_ratio():
    est = estimate([1.0, 2.0, 3.0], "difference")
    half = 4.302653 / math.sqrt(3)  # t(0.975, 2) * sd / sqrt(n), sd = 1
    assert (est.mean, est.low, est.high, est.n) == pytest.approx((2.0, 2.0 - half, 2.0 + half, 3))
    ratio = estimate([2.0, 8.0], "ratio")
    assert ratio.mean == pytest.approx(4.0)  # geometric mean
    assert ratio.low * ratio.high == pytest.approx(16.0)  # symmetric on the logarithm
    single = estimate([0.5], "difference")
    assert single.n == 1 and math.isnan(single.low)
    assert estimate([], "difference") is None
