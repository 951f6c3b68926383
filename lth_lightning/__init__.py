"""lth-lightning: find lottery tickets with PyTorch Lightning.

Public API::

    from lth_lightning import LotteryTicketCallback, LotteryClassifier, MLP
    from lth_lightning import FashionMNISTDataModule, MNISTDataModule, run_lottery, run_seeds

Names are imported on first use (PEP 562), so ``import lth_lightning`` and the commands that do
not train (``lth export``, ``lth aggregate``, ``lth compare``) do not import Lightning.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lth_lightning.api import run_lottery, run_seeds
    from lth_lightning.callbacks.early_stopping import EarlyStoppingTracker
    from lth_lightning.callbacks.lottery_ticket import LotteryTicketCallback
    from lth_lightning.callbacks.state import LotteryState
    from lth_lightning.data.datamodule import FashionMNISTDataModule, IDXDataModule, MNISTDataModule
    from lth_lightning.data.download import DatasetFileError
    from lth_lightning.data.idx import IDXFormatError, read_idx
    from lth_lightning.data.loader import EpochShards, TensorBatches
    from lth_lightning.experiment.dashboard.across_runs import aggregate_runs, compare_runs
    from lth_lightning.experiment.record.round_networks import RoundNetworks, load_round
    from lth_lightning.experiment.record.round_result import RoundResult
    from lth_lightning.export.sparse import SparseLinear, to_sparse
    from lth_lightning.export.ticket import export_ticket, load_ticket
    from lth_lightning.metric_names import MetricNames
    from lth_lightning.models.classifier import LotteryClassifier
    from lth_lightning.models.mlp import MLP
    from lth_lightning.pruning.targets import select_targets

_WHERE = {
    "MLP": "models.mlp",
    "DatasetFileError": "data.download",
    "EarlyStoppingTracker": "callbacks.early_stopping",
    "EpochShards": "data.loader",
    "FashionMNISTDataModule": "data.datamodule",
    "IDXDataModule": "data.datamodule",
    "IDXFormatError": "data.idx",
    "LotteryClassifier": "models.classifier",
    "LotteryState": "callbacks.state",
    "LotteryTicketCallback": "callbacks.lottery_ticket",
    "MNISTDataModule": "data.datamodule",
    "MetricNames": "metric_names",
    "RoundNetworks": "experiment.record.round_networks",
    "RoundResult": "experiment.record.round_result",
    "SparseLinear": "export.sparse",
    "TensorBatches": "data.loader",
    "aggregate_runs": "experiment.dashboard.across_runs",
    "compare_runs": "experiment.dashboard.across_runs",
    "export_ticket": "export.ticket",
    "load_round": "experiment.record.round_networks",
    "load_ticket": "export.ticket",
    "read_idx": "data.idx",
    "run_lottery": "api",
    "run_seeds": "api",
    "select_targets": "pruning.targets",
    "to_sparse": "export.sparse",
}
__all__ = [
    "DatasetFileError",
    "EarlyStoppingTracker",
    "EpochShards",
    "FashionMNISTDataModule",
    "IDXDataModule",
    "IDXFormatError",
    "LotteryClassifier",
    "LotteryState",
    "LotteryTicketCallback",
    "MLP",
    "MNISTDataModule",
    "MetricNames",
    "RoundNetworks",
    "RoundResult",
    "SparseLinear",
    "TensorBatches",
    "aggregate_runs",
    "compare_runs",
    "export_ticket",
    "load_round",
    "load_ticket",
    "read_idx",
    "run_lottery",
    "run_seeds",
    "select_targets",
    "to_sparse",
]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_WHERE])
