"""Runs to trust off the happy path: an identity that sees what a module does not declare, one process per run
folder, and no checkpoint kept once its round is recorded."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from cli_helpers import PauseAt, UnderscoreMLP, unsaved_run
from conftest import REPO, lightning_messages, round_trainer, tiny_datamodule

from lth_lightning import (
    MLP,
    DatasetFileError,
    LotteryClassifier,
    LotteryTicketCallback,
    run_seeds,
)
from lth_lightning.experiment.record.lock import RunFolderInUse, RunLock
from lth_lightning.experiment.record.module_identity import optimization_identity
from lth_lightning.experiment.record.paths import ExperimentPaths, RunPaths


def _rows(rows):
    return [r.as_dict() for r in rows]


# ----------------------------------------------------------------------------- 1: what the identity sees


def test_a_module_without_saved_hyperparameters_gets_another_folder_when_its_lr_changes(tmp_path, tiny_data):
    with pytest.warns(UserWarning, match=r"UnderscoreMLP does not save its constructor arguments \(lr\)"):
        first = unsaved_run(tiny_data, tmp_path, lr=1e-3)
    second = unsaved_run(tiny_data, tmp_path, lr=0.1)
    assert second.experiment_dir != first.experiment_dir and first.run_dir.is_dir()
    assert second[0].metrics["val_loss"] != first[0].metrics["val_loss"]  # trained, not the old rows read back
    assert _rows(unsaved_run(tiny_data, tmp_path, lr=0.1)) == _rows(second)  # the same experiment: read back
    with pytest.raises(
        ValueError, match=r"holds another experiment: it differs in optimizer\.lr: folder has 0\.001, now 0\.1"
    ):
        unsaved_run(tiny_data, tmp_path, lr=0.1, name=first.experiment_dir.name)


def test_a_run_started_from_other_initial_weights_is_refused(tmp_path, tiny_data):
    first = unsaved_run(tiny_data, tmp_path)
    before = _listing(tmp_path)
    refused = r"run folder .*seed_0 holds a run that started from other initial weights: it differs in "
    refused += r"initial_weights: folder has '[0-9a-f]{16}', now '[0-9a-f]{16}'\. Build the module after seeding"
    with pytest.raises(ValueError, match=refused):
        unsaved_run(tiny_data, tmp_path, init_seed=1)
    assert _listing(tmp_path) == before
    assert _rows(unsaved_run(tiny_data, tmp_path)) == _rows(first)


class _Scheduled(UnderscoreMLP):
    def __init__(self, lr: float = 0.01, gamma: float = 0.5, interval: str = "epoch") -> None:
        super().__init__(lr)
        self.gamma, self.interval = gamma, interval

    def configure_optimizers(self):
        optimizer = torch.optim.SGD(
            [{"params": self.net[1].parameters()}, {"params": self.net[3].parameters(), "lr": self.lr / 10}],
            lr=self.lr,
            momentum=0.9,
        )
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=3, gamma=self.gamma)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": self.interval}}


def test_the_optimizer_and_schedulers_are_read_as_configure_optimizers_builds_them():
    seen = optimization_identity(_Scheduled())
    assert seen["optimizer.class_path"] == "torch.optim.sgd.SGD"
    assert seen["optimizer.lr"] == 0.01 and seen["optimizer.momentum"] == 0.9
    assert seen["optimizer.param_groups.1.lr"] == pytest.approx(0.001) and "optimizer.param_groups.0.lr" not in seen
    assert seen["lr_scheduler.class_path"] == "torch.optim.lr_scheduler.StepLR"
    assert seen["lr_scheduler.gamma"] == 0.5 and seen["lr_scheduler.step_size"] == 3
    assert seen["lr_scheduler.interval"] == "epoch"
    assert not any("last_epoch" in key or "_step_count" in key for key in seen)
    assert optimization_identity(_Scheduled(gamma=0.1))["lr_scheduler.gamma"] == 0.1
    assert optimization_identity(_Scheduled(interval="step"))["lr_scheduler.interval"] == "step"


class _NeedsTrainer(UnderscoreMLP):
    def configure_optimizers(self):
        total = self.trainer.estimated_stepping_batches
        optimizer = torch.optim.SGD(self.parameters(), lr=self.lr)
        return [optimizer], [torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=self.lr, total_steps=total)]


def test_an_optimizer_that_needs_a_trainer_is_said_unreadable_not_a_crash():
    with pytest.warns(UserWarning, match=r"_NeedsTrainer.configure_optimizers\(\) could not run before training"):
        seen = optimization_identity(_NeedsTrainer())
    assert seen == {"optimizer": "unreadable before training"}


# ----------------------------------------------------------------------------- 2: one process per run folder


def _listing(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()}


@pytest.mark.slow
def test_a_second_process_is_refused_and_a_killed_holders_lock_is_taken_over(tmp_path, tiny_data):
    runs, marker = tmp_path / "runs", tmp_path / "paused"
    script = REPO / "tests" / "scripts" / "hold_run.py"
    env = {**os.environ, "PYTHONPATH": str(REPO / "tests")}
    holder = subprocess.Popen(
        [sys.executable, str(script), str(tiny_data), str(runs), str(marker)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 300
        while not marker.exists() and holder.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert marker.exists(), holder.stderr.read() if holder.poll() is not None else "the holder never paused"
        before = _listing(runs)
        busy = rf"is in use by process {holder.pid} on {re.escape(socket.gethostname())}"
        with pytest.raises(RunFolderInUse, match=busy):
            unsaved_run(tiny_data, runs, rounds=3, callbacks=[PauseAt(99, str(marker))])
        assert _listing(runs) == before  # the second process wrote nothing
    finally:
        holder.kill()
        holder.wait()
    rows = unsaved_run(tiny_data, runs, rounds=3, callbacks=[PauseAt(99, str(marker))])  # the dead holder's lock
    assert [r.round for r in rows] == [0, 1, 2]


def test_seeds_of_one_experiment_lock_their_own_folders(tmp_path):
    experiment = ExperimentPaths(tmp_path / "exp")
    busy = pytest.raises(RunFolderInUse, match=rf"seed_1 is in use by process {os.getpid()}")
    with RunLock(experiment.run(0).root), RunLock(experiment.run(1).root), busy:
        RunLock(experiment.run(1).root).acquire()
    with RunLock(experiment.run(1).root):  # released on exit
        pass


# ----------------------------------------------------------------------------- 5: disk


@pytest.mark.slow
def test_a_recorded_round_keeps_no_checkpoint_unless_asked(tmp_path, tiny_data):
    rows = unsaved_run(tiny_data, tmp_path / "default")
    assert [r.round for r in rows] == [0, 1] and not list(rows.experiment_dir.rglob("*.ckpt"))
    assert all(RunPaths(rows.run_dir).weights(r).is_file() for r in (0, 1))
    kept = unsaved_run(tiny_data, tmp_path / "kept", keep_checkpoints=True)
    assert all(RunPaths(kept.run_dir).last_checkpoint(r).is_file() for r in (0, 1))


def _stacked_seeds(tiny_data, out, seeds):
    """Two stacked rounds of a small MLP for ``seeds``, without reports."""
    return run_seeds(
        lambda: LotteryClassifier(net=MLP((784, 16, 10)), lr=0.01),
        tiny_datamodule(tiny_data),
        seeds=seeds,
        rounds=2,
        lottery=LotteryTicketCallback(amount=0.5, verbose=False),
        trainer=round_trainer(),
        out_dir=out,
        progress=False,
        report=False,
        stack=True,
    )


def test_a_recorded_stacked_round_keeps_no_checkpoint(tmp_path, tiny_data):
    runs = _stacked_seeds(tiny_data, tmp_path, [0, 1])
    assert sorted(runs.runs) == [0, 1] and not list(runs.experiment_dir.rglob("*.ckpt"))


# ----------------------------------------------------------------------------- 6: interruptions and what is said


class _InterruptAt(pl.Callback):
    """Ctrl-C when epoch 1 of round 1 starts, after an epoch 0 that took a second longer (its checkpoint saved)."""

    def __init__(self, marker: str) -> None:
        self.marker = Path(marker)

    def _now(self, trainer: pl.Trainer, epoch: int) -> bool:
        lottery = next(c for c in trainer.callbacks if isinstance(c, LotteryTicketCallback))
        return lottery.round == 1 and trainer.current_epoch == epoch and not self.marker.exists()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._now(trainer, 0):
            time.sleep(1.0)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._now(trainer, 1):
            self.marker.write_text("interrupted")
            raise KeyboardInterrupt


@pytest.mark.slow
def test_ctrl_c_says_what_rerunning_resumes_and_the_round_counts_every_second(tmp_path, tiny_data, recwarn, capsys):
    marker = tmp_path / "interrupted"
    run = {"callbacks": [_InterruptAt(str(marker))], "trainer": {"max_epochs": 2, "enable_model_summary": True}}
    handler = signal.getsignal(signal.SIGINT)
    try:
        with lightning_messages() as said, pytest.raises(SystemExit):  # Lightning's graceful shutdown
            unsaved_run(tiny_data, tmp_path, controls=["random_prune"], **run)
    finally:
        signal.signal(signal.SIGINT, handler)  # Lightning ignores Ctrl-C after its shutdown
    hint = r"Interrupted in round 1 of seed 0: round 0 is kept; rerunning the same command resumes round 1 from its "
    hint += r"checkpoint after epoch 1 \(.*round_01/checkpoints/last\.ckpt\)\."  # epochs counted from 1, as logged
    assert any(re.fullmatch(hint, line) for line in said), said
    capsys.readouterr()
    with lightning_messages() as said:
        rows = unsaved_run(tiny_data, tmp_path, controls=["random_prune"], **run)
    assert rows[1].seconds > 1.0 > rows[0].seconds  # the second before the interruption counts
    # One summary, not one per training: logged, or printed by rich's table where `rich` is installed.
    printed = capsys.readouterr().out.count("Trainable params")
    assert sum("Trainable params" in line for line in said) + printed == 1, said
    assert sum(line.startswith("Run folder:") for line in said) == 1
    assert not [w for w in recwarn if "exists and is not empty" in str(w.message)]


def test_a_run_that_fails_before_training_says_no_run_folder(tmp_path):
    with lightning_messages() as said, pytest.raises(DatasetFileError, match="not found"):
        unsaved_run(tmp_path / "nowhere", tmp_path / "runs")
    assert not any("Run folder" in line for line in said) and not (tmp_path / "runs").exists()  # nothing it made


def test_a_stacked_run_whose_seed_is_busy_leaves_the_other_seeds_folder_as_it_was(tmp_path, tiny_data):
    experiment = ExperimentPaths(_stacked_seeds(tiny_data, tmp_path, [1]).experiment_dir)  # seed 1's folder exists
    with RunLock(experiment.run(1).root), pytest.raises(RunFolderInUse, match="seed_1 is in use"):
        _stacked_seeds(tiny_data, tmp_path, [0, 1])
    assert not experiment.run(0).root.exists() and experiment.run(1).finished_rounds() == [0, 1]
