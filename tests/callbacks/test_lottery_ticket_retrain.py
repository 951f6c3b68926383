"""Rewinding vs fine-tuning (Renda et al. 2020): what each retraining mode starts from, at which learning rates."""

from __future__ import annotations

import lightning.pytorch as pl
import pytest
import torch
from conftest import round_trainer, tiny_datamodule, tiny_experiment

from lth_lightning import MLP, LotteryClassifier, LotteryTicketCallback, run_lottery
from lth_lightning.experiment.record.paths import RunPaths
from lth_lightning.experiment.rounds.stackable import check_stackable
from lth_lightning.models.classifier import StepDecay, with_schedule
from lth_lightning.stack.network import StackingError

LR = 0.01
STEPS = 20  # 4 epochs of 5 steps: the step schedule drops at steps 10 and 15


class Probe(pl.Callback):
    """Records every optimizer step's learning rate and the weights each fit starts training from."""

    def __init__(self) -> None:
        self.lrs: list[list[float]] = []  # per fit
        self.starts: list[dict[str, torch.Tensor]] = []

    def __deepcopy__(self, memo):  # run_lottery copies the Trainer's callbacks per round: keep this one
        return self

    def on_train_start(self, trainer, pl_module):
        self.lrs.append([])
        self.starts.append({k: v.detach().clone() for k, v in pl_module.state_dict().items()})

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        self.lrs[-1].append(optimizer.param_groups[0]["lr"])


def _run(tiny_data, out, retrain, rounds=3, schedule="step"):
    probe = Probe()
    rows = tiny_experiment(
        tiny_data,
        out,
        rounds=rounds,
        lr=LR,
        model_options={"lr_schedule": schedule},
        lottery=LotteryTicketCallback(amount=0.5, verbose=False, retrain=retrain),
        trainer=round_trainer(max_epochs=4, callbacks=[probe]),
    )
    return rows, probe


def _weights(rows, r):
    return torch.load(RunPaths(rows.run_dir).weights(r), weights_only=True)


def _masks(rows, r):
    return torch.load(RunPaths(rows.run_dir).masks(r), weights_only=True)


@pytest.fixture(scope="module")
def modes(tmp_path_factory, tiny_data):
    out = tmp_path_factory.mktemp("retrain")
    return {mode: _run(tiny_data, out, mode) for mode in ("rewind", "lr_rewind", "finetune")}


@pytest.mark.slow
def test_the_step_schedule_drops_tenfold_at_half_and_three_quarters(modes):
    _, probe = modes["rewind"]
    expected = [LR] * 10 + [LR * 0.1] * 5 + [LR * 0.01] * 5
    for fit in probe.lrs:  # every round runs the whole schedule from its start
        assert fit == pytest.approx(expected)
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    assert StepDecay(optimizer, None).get_lr() == [1.0]  # no Trainer to ask yet: constant
    endless = pl.Trainer(max_epochs=-1, max_steps=-1, logger=False, enable_progress_bar=False)
    with pytest.raises(ValueError, match="lr_schedule='step' drops the rate at fractions of a fit's steps: set max"):
        with_schedule(optimizer, "step", endless)


def test_each_mode_starts_its_rounds_where_its_paper_says(modes):
    rewind, lr_rewind, finetune = (modes[m] for m in ("rewind", "lr_rewind", "finetune"))
    initial = rewind[1].starts[0]
    for r in (1, 2):
        masks = _masks(rewind[0], r)
        for name, start in rewind[1].starts[r].items():  # weight rewinding: the initialization, masked
            expected = initial[name] * masks[name] if name in masks else initial[name]
            assert torch.equal(start, expected), (r, name)
        for rows, probe in (lr_rewind, finetune):  # the last round's trained weights, masked
            masks, trained = _masks(rows, r), _weights(rows, r - 1)
            for name, start in probe.starts[r].items():
                expected = trained[name] * masks[name] if name in masks else trained[name]
                assert torch.equal(start, expected), (r, name)


def test_learning_rates_of_each_mode_at_equal_steps(modes):
    full = modes["rewind"][1].lrs[0]
    assert modes["lr_rewind"][1].lrs == [full] * 3  # the whole schedule again
    fine = modes["finetune"][1].lrs
    assert fine[0] == full and fine[1] == fine[2] == [pytest.approx(LR * 0.01)] * STEPS  # the final rate throughout
    steps = {mode: [row.steps for row in rows] for mode, (rows, _) in modes.items()}
    assert steps["rewind"] == steps["lr_rewind"] == steps["finetune"] == [STEPS] * 3


def test_modes_are_distinct_experiments_and_rewind_keeps_its_folder(modes, tmp_path):
    folders = {mode: rows.experiment_dir.name for mode, (rows, _) in modes.items()}
    assert len(set(folders.values())) == 3
    assert "retrain" not in (modes["rewind"][0].experiment_dir / "experiment.yaml").read_text()  # as before the option
    assert "retrain: lr_rewind" in (modes["lr_rewind"][0].experiment_dir / "experiment.yaml").read_text()


def test_a_resumed_lr_rewind_run_retrains_the_last_rounds_network(modes, tiny_data, tmp_path):
    whole = modes["lr_rewind"][0]
    _run(tiny_data, tmp_path, "lr_rewind", rounds=2)
    resumed, probe = _run(tiny_data, tmp_path, "lr_rewind", rounds=3)  # a new process would do the same
    assert len(probe.starts) == 1  # only round 2 trained
    trained = _weights(resumed, 1)
    masks = _masks(resumed, 2)
    assert all(torch.equal(probe.starts[0][k], trained[k] * masks[k] if k in masks else trained[k]) for k in trained)
    a, b = _weights(whole, 2), _weights(resumed, 2)
    assert max(float((a[k] - b[k]).abs().max()) for k in a) < 1e-6


def test_bad_retrain_settings_are_refused(tiny_data, tmp_path):
    with pytest.raises(ValueError, match="`retrain` must be 'rewind' or 'lr_rewind' or 'finetune', got 'reset'"):
        LotteryTicketCallback(retrain="reset")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"`lr_schedule` must be one of \('constant', 'step'\), got 'cosine'"):
        LotteryClassifier(lr_schedule="cosine")  # type: ignore[arg-type]
    with pytest.raises(StackingError, match="stacking rewinds to the initialization; retrain='lr_rewind' trains with"):
        check_stackable(LotteryClassifier(), LotteryTicketCallback(retrain="lr_rewind"))
    with pytest.raises(StackingError, match="retrain='finetune' trains with stack=false"):
        run_lottery(
            LotteryClassifier(net=MLP((784, 24, 10))),
            tiny_datamodule(tiny_data),
            rounds=2,
            lottery=LotteryTicketCallback(retrain="finetune", verbose=False),
            out_dir=tmp_path,
            stack=True,
        )


def test_finetuning_needs_the_dense_rounds_learning_rates(tiny_data, tmp_path):
    rewound = LotteryTicketCallback(amount=0.5, verbose=False)
    model = LotteryClassifier(net=MLP((784, 24, 10)))
    dm = tiny_datamodule(tiny_data)
    lean = round_trainer(max_steps=2, logger=False, enable_checkpointing=False)
    pl.Trainer(**lean, callbacks=[rewound]).fit(model, dm)
    finetune = LotteryTicketCallback(amount=0.5, verbose=False, retrain="finetune")
    finetune.set_state(rewound.state)  # a state whose dense round did not record its rates
    trainer = pl.Trainer(**lean, callbacks=[finetune])
    with pytest.raises(RuntimeError, match="retrain='finetune' retrains at the learning rates of the dense round's"):
        trainer.fit(model, dm)
