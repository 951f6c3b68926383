"""A run's store (lth_lightning/experiment/record/store.py): what it says when it reads finished rounds back."""

from __future__ import annotations

from conftest import lightning_messages, tiny_experiment


def test_resuming_after_one_round_says_round_0_not_rounds_0_0(tiny_data, tmp_path):
    tiny_experiment(tiny_data, tmp_path, rounds=1)
    with lightning_messages() as said:
        tiny_experiment(tiny_data, tmp_path, rounds=2)
    resumed = [line for line in said if line.startswith("Resuming ")]
    assert len(resumed) == 1 and resumed[0].endswith(": round 0 is finished and will not be recomputed."), said
