"""Helpers for driving `lth` as a user would: tiny data on disk, and a callback that kills the process."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
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
    """SIGKILLs its own process once, at the start of the given epoch of the given round.

    Args:
        round: Lottery round to kill in.
        epoch: Epoch of that round to kill at (its start).
        marker: File created just before the kill; while it exists nothing happens.
    """

    def __init__(self, round: int, epoch: int, marker: str) -> None:
        self.round, self.epoch, self.marker = round, epoch, Path(marker)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        lottery = next(c for c in trainer.callbacks if isinstance(c, LotteryTicketCallback))
        if lottery.round == self.round and trainer.current_epoch == self.epoch and not self.marker.exists():
            self.marker.write_text("killed")
            os.kill(os.getpid(), signal.SIGKILL)
