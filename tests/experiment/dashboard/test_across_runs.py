"""Aggregation across seeds, checked on hand values."""

import math

import pytest

from lth_lightning.experiment.record.aggregate import aggregate


def test_mean_and_std_per_round_from_per_seed_rows():
    seed0 = [
        {"round": 0, "density": 1.0, "test_acc": 0.80, "random_reinit_test_acc": None},
        {"round": 1, "density": 0.5, "test_acc": 0.84, "random_reinit_test_acc": 0.70},
    ]
    seed1 = [
        {"round": 0, "density": 1.0, "test_acc": 0.90, "random_reinit_test_acc": ""},
        {"round": 1, "density": 0.5, "test_acc": 0.86, "random_reinit_test_acc": 0.74},
    ]
    seed2 = [{"round": 0, "density": 1.0, "test_acc": 0.85, "random_reinit_test_acc": None}]
    rows = aggregate([seed0, seed1, seed2])
    assert len(rows) == 1  # only rounds every seed finished
    assert rows[0]["seeds"] == 3 and rows[0]["test_acc_mean"] == pytest.approx(0.85)
    assert rows[0]["test_acc_std"] == pytest.approx(0.05)  # sample std of 0.80, 0.90, 0.85
    assert "random_reinit_test_acc_mean" not in rows[0]
    two = aggregate([seed0, seed1])
    assert two[1]["test_acc_mean"] == pytest.approx(0.85) and two[1]["test_acc_std"] == pytest.approx(math.sqrt(2e-4))
    assert two[1]["random_reinit_test_acc_mean"] == pytest.approx(0.72)
    assert two[1]["density_mean"] == 0.5 and two[1]["density_std"] == 0.0
    assert (two[1]["test_acc_min"], two[1]["test_acc_max"]) == (0.84, 0.86)
    assert (rows[0]["test_acc_min"], rows[0]["test_acc_max"]) == (0.80, 0.90)
    single = aggregate([seed0])
    assert single[1]["test_acc_std"] == 0.0 and single[1]["seeds"] == 1


def test_aggregate_errors():
    with pytest.raises(ValueError, match="`runs` must hold the rows of at least one seed"):
        aggregate([])
    with pytest.raises(ValueError, match=r"Seeds disagree on the round at position 0: \[0, 1\]"):
        aggregate([[{"round": 0, "x": 1}], [{"round": 1, "x": 2}]])
