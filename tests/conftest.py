"""Shared helpers: tiny models, tiny data, lean Trainers.

The suite runs on two pytest-xdist workers (``-n 2`` in ``pyproject.toml``; ``-n 0`` runs it in one
process). Each worker, and every process it starts, uses one OpenMP thread: two torch processes of
two threads each on two cores spin against each other (OpenMP's busy-waiting) and run many times
slower.
"""

from __future__ import annotations

import os

if os.environ.get("PYTEST_XDIST_WORKER"):  # before torch is imported, here and in the subprocesses tests start
    os.environ.setdefault("OMP_NUM_THREADS", "1")

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
import torch.nn.functional as F
from cli_helpers import write_tiny_fashion
from lightning.pytorch.loggers import Logger
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def tiny_images(n: int = 96, seed: int = 0) -> TensorDataset:
    """Random 1x8x8 images whose class (0..3) is readable from the mean of one quadrant."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, 8, 8, generator=g)
    y = torch.randint(0, 4, (n,), generator=g)
    for c in range(4):
        r, col = divmod(c, 2)
        x[y == c, :, r * 4 : r * 4 + 4, col * 4 : col * 4 + 4] += 1.0
    return TensorDataset(x, y)


def loader(ds: TensorDataset, batch_size: int = 16, shuffle: bool = False) -> DataLoader:
    return DataLoader(ds, batch_size=batch_size, shuffle=shuffle)


class ConvNet(pl.LightningModule):
    """A user's own LightningModule (not LotteryClassifier): Conv2d + BatchNorm + Linear."""

    def __init__(self, lr: float = 1e-2, weight_decay: float = 0.0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 6, 3, padding=1)
        self.bn = nn.BatchNorm2d(6)
        self.fc1 = nn.Linear(6 * 4 * 4, 24)
        self.head = nn.Linear(24, 4)
        self.lr, self.weight_decay = lr, weight_decay

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.bn(self.conv(x))), 2)
        return self.head(F.relu(self.fc1(x.flatten(1))))

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        return F.cross_entropy(self(x), y)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        self.log("val_loss", F.cross_entropy(self(x), y))

    def test_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        self.log("test_loss", F.cross_entropy(self(x), y))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.lr, weight_decay=self.weight_decay)


class TinyImageData(pl.LightningDataModule):
    """``tiny_images`` as a DataModule: 96 training examples (6 batches of 16), separate val and test sets."""

    def __init__(self, n: int = 96, batch_size: int = 16) -> None:
        super().__init__()
        self.n, self.batch_size = n, batch_size

    def train_dataloader(self) -> DataLoader:
        return loader(tiny_images(self.n), self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return loader(tiny_images(self.n, seed=1), self.batch_size)

    def test_dataloader(self) -> DataLoader:
        return loader(tiny_images(self.n, seed=2), self.batch_size)


class MemoryLogger(Logger):
    """Keeps every logged metric in memory."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[tuple[int | None, dict[str, float]]] = []

    @property
    def name(self) -> str:
        return "memory"

    @property
    def version(self) -> int:
        return 0

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self.rows.append((step, dict(metrics)))

    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        pass


def lean_trainer(tmp_path: Path, **kwargs: Any) -> pl.Trainer:
    """A Trainer with nothing extra: no progress bar, summary, logger or checkpoints unless asked."""
    defaults: dict[str, Any] = {
        "accelerator": "cpu",
        "devices": 1,
        "max_epochs": 1,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "logger": False,
        "enable_checkpointing": False,
        "default_root_dir": tmp_path,
        "num_sanity_val_steps": 0,
    }
    defaults.update(kwargs)
    return pl.Trainer(**defaults)


def round_trainer(**overrides: Any) -> dict[str, Any]:
    """Lean Trainer settings for every round of ``run_lottery`` (CPU, no bars or summaries)."""
    return {
        "accelerator": "cpu",
        "max_epochs": 1,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        **overrides,
    }


def tiny_datamodule(data_dir: Path, batch_size: int = 48) -> Any:
    """The Fashion-MNIST DataModule over the tiny data (:func:`tiny_data`): 60 images held out for validation."""
    from lth_lightning import FashionMNISTDataModule

    return FashionMNISTDataModule(data_dir, batch_size=batch_size, val_size=60)


def tiny_experiment(
    data_dir: Path,
    out_dir: Path,
    *,
    rounds: int = 2,
    sizes: tuple[int, ...] = (784, 24, 10),
    lr: float = 0.01,
    batch_size: int = 48,
    model_options: dict[str, Any] | None = None,
    **options: Any,
) -> Any:
    """``run_lottery`` on the tiny data: an MLP of ``sizes`` initialized from seed 0, half of the weights pruned per
    round (``lottery``: another callback), lean Trainers (``trainer``: other settings), quiet; ``options`` are
    ``run_lottery``'s."""
    from lth_lightning import MLP, LotteryClassifier, LotteryTicketCallback, run_lottery

    torch.manual_seed(0)
    model = LotteryClassifier(net=MLP(sizes), lr=lr, **(model_options or {}))
    options.setdefault("lottery", LotteryTicketCallback(amount=0.5, verbose=False))
    options.setdefault("trainer", round_trainer())
    options.setdefault("progress", False)
    return run_lottery(model, tiny_datamodule(data_dir, batch_size), rounds=rounds, out_dir=out_dir, **options)


def two_seeds(data_dir: Path, out_dir: Path, **options: Any) -> Any:
    """Seeds 0 and 1 of a tiny MLP on ``data_dir``: two rounds with random pruning (or ``rounds``, ``controls``), as
    several tests read them back."""
    from lth_lightning import MLP, LotteryClassifier, LotteryTicketCallback, run_seeds

    return run_seeds(
        lambda: LotteryClassifier(net=MLP((784, 24, 10)), lr=0.01),
        tiny_datamodule(data_dir),
        seeds=[0, 1],
        lottery=LotteryTicketCallback(amount=0.5, verbose=False),
        trainer=round_trainer(),
        out_dir=out_dir,
        **{"progress": False, "rounds": 2, "controls": ["random_prune"], **options},
    )


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of tiny Fashion-MNIST-shaped files (300 training and 100 test images, learnable), one per module."""
    return write_tiny_fashion(tmp_path_factory.mktemp("data"))


@pytest.fixture
def data() -> TensorDataset:
    return tiny_images()


@contextmanager
def lightning_messages(logger_name: str = "lightning.pytorch") -> Iterator[list[str]]:
    """The messages logged through Lightning's loggers (rank-zero info included) while the block runs."""
    messages: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            messages.append(record.getMessage())

    handler = Collect(level=logging.INFO)
    logger = logging.getLogger(logger_name)
    logger.addHandler(handler)
    try:
        yield messages
    finally:
        logger.removeHandler(handler)


def accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """The fraction of ``x`` that ``model`` (in eval mode) classifies as ``y``: what a test step logs, recomputed."""
    model.eval()
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def saved_accuracy(model: torch.nn.Module, weights: Path, x: torch.Tensor, y: torch.Tensor) -> float:
    """:func:`accuracy` of ``model`` with a round's saved ``weights.pt`` loaded."""
    model.load_state_dict(torch.load(weights, weights_only=True))
    return accuracy(model, x, y)
