"""``load_round`` (lth_lightning/experiment/record/round_networks.py): a round's networks read back, held to what
the run recorded and to a retraining."""

from __future__ import annotations

import lightning.pytorch as pl
import pytest
import torch
import yaml
from conftest import round_trainer, tiny_datamodule, tiny_experiment

from lth_lightning import MLP, LotteryClassifier, LotteryTicketCallback, load_round
from lth_lightning.callbacks.state import LotteryState
from lth_lightning.data.datamodule import shuffle_seed_set_to
from lth_lightning.experiment.record.module_identity import state_digest
from lth_lightning.experiment.record.paths import RunPaths


@pytest.fixture(scope="module")
def runs(tiny_data, tmp_path_factory):
    """Seed 0 of one experiment, sequential and stacked, every control's networks kept."""
    out = tmp_path_factory.mktemp("runs")
    options = {"controls": ["random_reinit", "random_prune"], "keep_weights": "all", "report": False}
    return {stack: tiny_experiment(tiny_data, out / str(stack), stack=stack, **options) for stack in (False, True)}


def test_a_stacked_and_a_sequential_run_give_the_same_masks_and_initial_weights(runs):
    for member in ("ticket", "random_reinit", "random_prune"):
        alone, stacked = (load_round(runs[stack].run_dir, 1, member) for stack in (False, True))
        assert alone.masks.keys() == stacked.masks.keys() and all(m.dtype == torch.bool for m in alone.masks.values())
        assert all(torch.equal(alone.masks[k], stacked.masks[k]) for k in alone.masks), member
        assert all(torch.allclose(alone.initial[k], stacked.initial[k]) for k in alone.initial), member
        assert alone.trained is not None and stacked.trained is not None


def test_the_tickets_initial_weights_are_those_run_yaml_digested(runs):
    for stack in (False, True):
        run = RunPaths(runs[stack].run_dir)
        recorded = yaml.safe_load(run.identity.read_text())["initial_weights"]
        assert state_digest(load_round(run.root, 0).initial) == recorded
        assert state_digest(load_round(run.root, 1).initial) == recorded  # rewound to it


def test_the_ticket_trained_weights_are_the_rounds_and_pruned_ones_are_zero(runs):
    ticket = load_round(runs[False].run_dir, 1)
    assert ticket.metrics["round"] == 1 and ticket.metrics == runs[False][1].as_dict()
    for name, mask in ticket.masks.items():
        assert torch.all(ticket.trained[name][~mask] == 0) and bool((ticket.trained[name][mask] != 0).any())
    assert ticket.at_early_stop is not None and ticket.config["lottery"]["amount"] == 0.5


def test_a_controls_initialization_retrains_to_its_recorded_accuracy(runs, tiny_data, tmp_path):
    control = load_round(runs[False].run_dir, 1, "random_reinit")
    model = LotteryClassifier(net=MLP((784, 24, 10)), lr=0.01)
    callback = LotteryTicketCallback(amount=0.5, verbose=False)
    names = list(control.masks)
    callback.set_state(LotteryState(0, "pruned", names, dict(control.masks), {}, dict(control.initial)))
    datamodule = tiny_datamodule(tiny_data)
    trainer_settings = {**round_trainer(), "default_root_dir": tmp_path, "logger": False, "enable_checkpointing": False}
    trainer = pl.Trainer(callbacks=[callback], **trainer_settings)
    with shuffle_seed_set_to(datamodule, 0):  # the run's data order: its seed's
        trainer.fit(model, datamodule=datamodule)
        tested = trainer.test(model, datamodule=datamodule, verbose=False)[0]
    assert tested["test/acc"] == pytest.approx(control.metrics["test_acc"], abs=1e-6)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in control.trained.items())


def test_a_member_not_trained_or_a_round_not_finished_is_refused(runs, tmp_path):
    with pytest.raises(
        ValueError, match=r"`member` 'snip' was not trained in round 1 .*; allowed: ticket, random_prune"
    ):
        load_round(runs[False].run_dir, 1, "snip")
    with pytest.raises(FileNotFoundError, match=r"Round 5 of .* is not finished; finished rounds: \[0, 1\]"):
        load_round(runs[False].run_dir, 5)
    with pytest.raises(FileNotFoundError, match="holds no run"):
        load_round(tmp_path, 0)
    assert load_round(runs[False].experiment_dir, 1).masks.keys() == load_round(runs[False].run_dir, 1).masks.keys()
