"""Late rewinding as OpenLTH trains it (Frankle, Dziugaite, Roy & Carbin 2020).

OpenLTH's lottery runner trains every pruned level with ``train(..., start_step=k)``: a fresh
optimizer, the learning-rate schedule stepped ``k`` times, the data of epoch ``k // n`` from its
iteration ``k % n`` on (each epoch's order drawn from the data-order seed and the epoch), up to the
training's end ``T``: ``T - k`` steps. Restated here: a round rewound to step ``k`` must see, at each
of its steps, the learning rate and the batch the dense round saw at the same step from ``k`` on,
and validate at the same steps, under an optimizer that starts empty.
"""

from __future__ import annotations

from types import SimpleNamespace

import lightning.pytorch as pl
import pytest
import torch
from conftest import lean_trainer, round_trainer, tiny_datamodule

from lth_lightning import LotteryClassifier, LotteryTicketCallback, run_lottery
from lth_lightning.callbacks import driving
from lth_lightning.callbacks.late_start import LateStart, planned_steps
from lth_lightning.experiment.record.identity import REWIND_PROTOCOL_KEY, experiment_identity
from lth_lightning.models.mlp import MLP

EPOCHS, BATCHES = 3, 5  # 240 training examples in batches of 48: T = 15 steps
T = EPOCHS * BATCHES


class Scheduled(LotteryClassifier):
    """SGD with momentum under two chained schedules: a step-interval one and an epoch-interval one."""

    def configure_optimizers(self):
        optimizer = torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9)
        steps = torch.optim.lr_scheduler.StepLR(optimizer, step_size=4, gamma=0.5)
        epochs = torch.optim.lr_scheduler.MultiplicativeLR(optimizer, lambda epoch: 0.8)
        return [optimizer], [{"scheduler": steps, "interval": "step"}, {"scheduler": epochs, "interval": "epoch"}]


class Steps(pl.Callback):
    """What each step of a fit saw: its global step, epoch, learning rate and batch; where it validated."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, int, float, float]] = []
        self.validated: list[int] = []
        self.first_state: dict | None = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if self.first_state is None:
            self.first_state = dict(trainer.optimizers[0].state)
        lr = trainer.optimizers[0].param_groups[0]["lr"]
        self.seen.append((trainer.global_step, trainer.current_epoch, lr, float(batch[0].sum())))

    def on_validation_end(self, trainer, pl_module):
        if not trainer.sanity_checking:
            self.validated.append(trainer.global_step)


def _datamodule(tiny_data):
    return tiny_datamodule(tiny_data)


def _fit(model, lottery, tiny_data, tmp_path, datamodule=None):
    steps = Steps()
    trainer = lean_trainer(tmp_path, max_epochs=EPOCHS, callbacks=[lottery, steps])
    trainer.fit(model, datamodule=datamodule or _datamodule(tiny_data))
    return steps, trainer


def _model(seed: int = 0) -> Scheduled:
    torch.manual_seed(seed)
    return Scheduled(net=MLP((784, 16, 10)))


@pytest.mark.parametrize("k", [7, 10, 3])  # mid-epoch, at an epoch's start, in the first epoch
def test_a_late_rewound_round_trains_steps_k_to_t_as_the_dense_round_did(tiny_data, tmp_path, k):
    model, lottery = _model(), LotteryTicketCallback(amount=0.5, rewind_step=k, verbose=False)
    dense, _ = _fit(model, lottery, tiny_data, tmp_path)
    assert [s[0] for s in dense.seen] == list(range(T)) and dense.validated == [5, 10, 15]
    pruned, trainer = _fit(model, lottery, tiny_data, tmp_path)
    assert pruned.seen == dense.seen[k:]  # step, epoch, learning rate and batch: those of steps k..T-1
    assert pruned.validated == [v for v in dense.validated if v > k]
    assert pruned.first_state == {}  # a fresh optimizer: no momentum carried from the dense training
    assert trainer.global_step == T and lottery.history[-1]["steps"] == T - k
    assert lottery.history[0]["steps"] == T


def test_a_loader_without_start_at_keeps_the_steps_schedule_and_validations(tiny_data, tmp_path):
    class PlainLoaders(pl.LightningDataModule):  # a DataLoader of the same examples, in a fixed order
        def __init__(self):
            super().__init__()
            self.inner = _datamodule(tiny_data)

        def setup(self, stage):
            self.inner.setup(stage)

        def train_dataloader(self):
            return torch.utils.data.DataLoader(self.inner.train_dataloader().examples, batch_size=48)

        def val_dataloader(self):
            return self.inner.val_dataloader()

    model, lottery = _model(), LotteryTicketCallback(amount=0.5, rewind_step=7, verbose=False)
    dense, _ = _fit(model, lottery, tiny_data, tmp_path, PlainLoaders())
    with pytest.warns(UserWarning, match=r"has no `start_at\(batch\)`, so this round's first epoch trains the first 3"):
        pruned, _ = _fit(model, lottery, tiny_data, tmp_path, PlainLoaders())
    assert [s[:3] for s in pruned.seen] == [s[:3] for s in dense.seen[7:]]  # steps, epochs, rates
    assert [s[3] for s in pruned.seen[:3]] == [s[3] for s in dense.seen[5:8]]  # epoch 1 from its first batch
    assert pruned.validated == [10, 15]


def test_a_rewind_step_at_or_past_the_end_is_refused_before_training(tiny_data, tmp_path):
    lottery = LotteryTicketCallback(rewind_step=T, verbose=False)
    with pytest.raises(ValueError, match=rf"`rewind_step`={T} is at or past the end of the training, which runs {T}"):
        _fit(_model(), lottery, tiny_data, tmp_path)
    assert lottery.history == []


def test_late_rewinding_refuses_steps_that_are_not_one_per_batch(tiny_data, tmp_path):
    lottery = LotteryTicketCallback(rewind_step=3, verbose=False)
    trainer = lean_trainer(tmp_path, max_epochs=EPOCHS, callbacks=[lottery], accumulate_grad_batches=2)
    with pytest.raises(ValueError, match=r"needs one optimizer step per batch.*accumulate_grad_batches=2"):
        trainer.fit(_model(), datamodule=_datamodule(tiny_data))


def test_planned_steps_and_the_point_k_restated():
    assert planned_steps(-1, 3, 5) == 15 and planned_steps(12, 3, 5) == 12 and planned_steps(-1, -1, 5) is None
    start = LateStart(step=7, epoch_batches=5)
    assert (start.epoch, start.batch) == (1, 2)
    # Lightning steps a step-interval scheduler after batches 1, 3 of each epoch of 5 (frequency 2): 2 a full epoch
    assert start.scheduler_steps("step", 1) == 7 and start.scheduler_steps("step", 2) == 2 + 1
    assert start.scheduler_steps("epoch", 1) == 1 and start.scheduler_steps("epoch", 2) == 0


def test_advancing_steps_each_scheduler_and_leaves_a_plateau_one_afresh():
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    steps = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer)
    configs = [
        SimpleNamespace(scheduler=steps, interval="step", frequency=1, reduce_on_plateau=False),
        SimpleNamespace(scheduler=plateau, interval="epoch", frequency=1, reduce_on_plateau=True),
    ]
    assert LateStart(step=3, epoch_batches=5).advance(configs) == ["ReduceLROnPlateau"]
    assert optimizer.param_groups[0]["lr"] == 0.5**3 and plateau.last_epoch == 0


def test_a_fork_trains_steps_k_to_t_as_controls_and_instability_copies_do(tiny_data, tmp_path):
    model, lottery = _model(), LotteryTicketCallback(amount=0.5, rewind_step=7, verbose=False)
    dense, _ = _fit(model, lottery, tiny_data, tmp_path)
    fork = driving.fork(lottery, lottery.masks, lottery.snapshot)
    forked, _ = _fit(_model(1), fork, tiny_data, tmp_path)
    assert forked.seen == dense.seen[7:] and forked.validated == [10, 15]


def test_run_lottery_records_t_minus_k_steps(tiny_data, tmp_path):
    rows = run_lottery(
        _model(),
        _datamodule(tiny_data),
        rounds=2,
        lottery=LotteryTicketCallback(amount=0.5, rewind_step=7, verbose=False),
        trainer=round_trainer(max_epochs=EPOCHS),
        out_dir=tmp_path,
        controls=["random_prune"],
        progress=False,
    )
    assert [row.steps for row in rows] == [T, T - 7]
    assert rows[1].controls["random_prune"]["best_val_step"] in (10, 15)


class _Killed(Exception):
    pass


class _KillAtEpoch(pl.Callback):
    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == self.epoch:
            raise _Killed


def test_a_late_rewound_round_resumed_from_its_checkpoint_ends_as_an_uninterrupted_one(tiny_data, tmp_path):
    def dense():
        model, lottery = _model(), LotteryTicketCallback(amount=0.5, rewind_step=7, verbose=False)
        _fit(model, lottery, tiny_data, tmp_path)
        return model, lottery

    model, lottery = dense()
    whole, _ = _fit(model, lottery, tiny_data, tmp_path / "whole")
    final = {k: v.clone() for k, v in model.state_dict().items()}

    model, lottery = dense()
    saves = pl.callbacks.ModelCheckpoint(tmp_path / "ckpt", save_last=True, every_n_epochs=1)
    killed = [lottery, saves, _KillAtEpoch(2)]
    trainer = lean_trainer(tmp_path, max_epochs=EPOCHS, callbacks=killed, enable_checkpointing=True)
    with pytest.raises(_Killed):
        trainer.fit(model, datamodule=_datamodule(tiny_data))
    resumed, again = Steps(), LotteryTicketCallback(amount=0.5, rewind_step=7, verbose=False)
    trainer = lean_trainer(tmp_path, max_epochs=EPOCHS, callbacks=[again, resumed])
    trainer.fit(model, datamodule=_datamodule(tiny_data), ckpt_path=tmp_path / "ckpt" / "last.ckpt")
    assert resumed.seen == whole.seen[10 - 7 :]  # steps 10..14, where the uninterrupted round took them
    assert all(torch.equal(model.state_dict()[k], final[k]) for k in final)
    assert again.history[-1]["steps"] == T - 7


def test_late_rewinding_names_its_protocol_in_the_identity():
    late = experiment_identity({"lottery": {"rewind_step": 7, "amount": 0.2}})
    assert late[REWIND_PROTOCOL_KEY] == 2  # a folder recorded with T fresh steps is another experiment
    assert REWIND_PROTOCOL_KEY not in experiment_identity({"lottery": {"rewind_step": 0, "amount": 0.2}})
