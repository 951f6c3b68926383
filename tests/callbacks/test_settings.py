"""The callback's options (lth_lightning/callbacks/settings.py): each checked where it is declared, and the ones that
define an experiment told apart from those that do not."""

from __future__ import annotations

import pytest

from lth_lightning import LotteryTicketCallback
from lth_lightning.callbacks.settings import LotterySettings, settings_added_later


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"amount": 0}, r"`amount` must be a float in the open interval \(0, 1\), got 0"),
        ({"amount": True}, r"`amount` must be a float in the open interval \(0, 1\), got True"),
        ({"scope": "local"}, r"`scope` must be 'global' or 'layerwise', got 'local'"),
        ({"rewind_step": -2}, r"`rewind_step` must be an integer >= 0, got -2"),
        ({"snapshot_device": "gpu"}, r"`snapshot_device` must be 'cpu' or 'module', got 'gpu'"),
        ({"rates": {"a": 0.5, "b": 0}}, r"`rates` must be None or a mapping .*, got \{'a': 0.5, 'b': 0\}"),
    ],
)
def test_a_value_outside_its_declaration_is_refused_naming_it(changes, message):
    with pytest.raises(ValueError, match=message):
        LotterySettings(**changes)
    with pytest.raises(ValueError, match=message):
        LotteryTicketCallback(**changes)


def test_what_defines_the_experiment_leaves_out_where_the_snapshot_lives_and_the_printing():
    base = LotterySettings(amount=0.5, parameters=("net.*",), rates={"head.weight": 0.25})
    assert base.defining() == {
        "amount": 0.5,
        "scope": "global",
        "parameters": ["net.*"],
        "rates": {"head.weight": 0.25},
        "rewind_step": 0,
        "retrain": "rewind",
    }
    quiet = LotterySettings(amount=0.5, parameters=("net.*",), rates={"head.weight": 0.25}, snapshot_device="module")
    assert quiet.defining() == base.defining()


def test_a_state_saved_before_retrain_existed_loads_as_rewinding():
    assert settings_added_later() == {"retrain": "rewind"}
    callback = LotteryTicketCallback(verbose=False)
    state = callback.state_dict()
    del state["config"]["retrain"]  # as saved before the option existed
    callback.load_state_dict(state)
    with pytest.raises(ValueError, match="retrain: checkpoint 'rewind' vs callback 'finetune'"):
        LotteryTicketCallback(retrain="finetune", verbose=False).load_state_dict(state)
