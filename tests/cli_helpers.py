"""Helpers for driving `lth` as a user would: tiny data on disk, and a callback that kills the process."""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import signal
import time
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import torch
from idx_files import tiny_arrays, write_dataset

from lth_lightning import LotteryTicketCallback


def write_tiny_fashion(data_dir: Path, n_train: int = 300, n_test: int = 100) -> Path:
    """Uncompressed tiny Fashion-MNIST-shaped files (read as is, no md5 to match)."""
    arrays = tiny_arrays(n_train, n_test)
    rng = np.random.default_rng(1)
    # Make the classes learnable: a bright band whose row depends on the label.
    for images, labels in (
        ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
        ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
    ):
        x, y = arrays[images], arrays[labels]
        x[:] = rng.integers(0, 60, x.shape, dtype=np.uint8)
        for i, label in enumerate(y):
            x[i, 2 + 2 * int(label) : 4 + 2 * int(label), :] = 250
    write_dataset(data_dir / "FashionMNIST" / "raw", arrays, gz=False)
    return data_dir


class KillAt(pl.Callback):
    """SIGKILLs its own process once, in the given epoch of the given round.

    Args:
        round: Lottery round to kill in.
        epoch: Epoch of that round to kill in.
        marker: File created just before the kill; while it exists nothing happens.
        at: ``"epoch_start"``, or ``"checkpoint"``: while the epoch's checkpoint is being written.
    """

    def __init__(self, round: int, epoch: int, marker: str, at: str = "epoch_start") -> None:
        self.round, self.epoch, self.marker, self.at = round, epoch, Path(marker), at

    def _maybe_kill(self, trainer: pl.Trainer, where: str) -> None:
        lottery = next(c for c in trainer.callbacks if isinstance(c, LotteryTicketCallback))
        if (
            where == self.at
            and lottery.round == self.round
            and trainer.current_epoch == self.epoch
            and not self.marker.exists()
        ):
            self.marker.write_text("killed")
            os.kill(os.getpid(), signal.SIGKILL)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._maybe_kill(trainer, "epoch_start")

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        self._maybe_kill(trainer, "checkpoint")


class RankProbe(pl.Callback):
    """Under DDP: make rank 1's initial weights differ before DDP broadcasts rank 0's, and record,
    per rank and round, hashes of the lottery masks and snapshot and of rank 0's initial weights.

    Made before any fit, it also records, per rank, whether the process group is still alive when
    the interpreter exits, after every exit handler registered later (they run first) has run.
    """

    def __init__(self, out_dir: str) -> None:
        self.out_dir = Path(out_dir)
        self.init_hash = ""
        atexit.register(_record_process_group_at_exit, self.out_dir)

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        lottery = next(c for c in trainer.callbacks if isinstance(c, LotteryTicketCallback))
        if lottery.phase == "init":
            if trainer.global_rank == 0:
                self.init_hash = tensor_hash(pl_module.state_dict())
            else:
                with torch.no_grad():
                    for p in pl_module.parameters():
                        p.add_(1.0)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        lottery = next(c for c in trainer.callbacks if isinstance(c, LotteryTicketCallback))
        record = {
            "rank": trainer.global_rank,
            "round": lottery.round,
            "masks": tensor_hash(lottery.masks),
            "snapshot": tensor_hash(lottery.snapshot or {}),
            "init": self.init_hash,
        }
        self.out_dir.mkdir(parents=True, exist_ok=True)
        (self.out_dir / f"rank{trainer.global_rank}_round{lottery.round}.json").write_text(json.dumps(record))


def _record_process_group_at_exit(out_dir: Path) -> None:
    from lightning.pytorch.utilities.rank_zero import rank_zero_only

    out_dir.mkdir(parents=True, exist_ok=True)
    alive = torch.distributed.is_available() and torch.distributed.is_initialized()
    (out_dir / f"exit_rank{rank_zero_only.rank}.txt").write_text("alive" if alive else "destroyed")


def tensor_hash(tensors: dict) -> str:
    digest = hashlib.sha256()
    for name in sorted(tensors):
        digest.update(name.encode())
        digest.update(tensors[name].detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


class UnderscoreMLP(pl.LightningModule):
    """A user's module that logs `val_loss`, `val_acc` and `test_acc` (not `val/loss` and `test/acc`)."""

    def __init__(self, lr: float = 0.01) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Flatten(), torch.nn.Linear(784, 24), torch.nn.ReLU(), torch.nn.Linear(24, 10)
        )
        self.lr = lr

    def training_step(self, batch, batch_idx):
        x, y = batch
        return torch.nn.functional.cross_entropy(self.net(x), y)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        logits = self.net(x)
        self.log("val_loss", torch.nn.functional.cross_entropy(logits, y))
        self.log("val_acc", (logits.argmax(1) == y).float().mean())

    def test_step(self, batch, batch_idx):
        x, y = batch
        self.log("test_acc", (self.net(x).argmax(1) == y).float().mean())

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.lr)


class PauseAt(pl.Callback):
    """Sleeps at the start of a round's training (creating ``marker`` first): a run that holds its folder.

    Its arguments are not part of the experiment's identity (a Python run records callbacks by
    class), so the same run with another ``round`` is the same experiment.
    """

    def __init__(self, round: int, marker: str, seconds: float = 300.0) -> None:
        self.round, self.marker, self.seconds = round, Path(marker), seconds

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        lottery = next(c for c in trainer.callbacks if isinstance(c, LotteryTicketCallback))
        if lottery.round == self.round:
            self.marker.write_text(str(os.getpid()))
            time.sleep(self.seconds)


def unsaved_run(
    data_dir: Path, out_dir: Path, *, lr: float = 0.01, rounds: int = 2, callbacks=(), trainer=None, **kwargs
):
    """``run_lottery`` of :class:`UnderscoreMLP` (a module that never calls ``save_hyperparameters``).

    ``trainer`` overrides the lean Trainer settings (one epoch, no bars or summaries).
    """
    from lth_lightning import FashionMNISTDataModule, run_lottery

    torch.manual_seed(kwargs.pop("init_seed", 0))
    model = UnderscoreMLP(lr=lr)
    settings = {
        "accelerator": "cpu",
        "max_epochs": 1,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "callbacks": list(callbacks),
        **(trainer or {}),
    }
    return run_lottery(
        model,
        FashionMNISTDataModule(data_dir, batch_size=48, val_size=60),
        rounds=rounds,
        lottery=LotteryTicketCallback(amount=0.5, verbose=False),
        trainer=settings,
        out_dir=out_dir,
        progress=False,
        monitor="val_loss",
        test_metric="test_acc",
        stack=False,
        **kwargs,
    )
