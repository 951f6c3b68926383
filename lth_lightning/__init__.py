"""lth-lightning: find lottery tickets with PyTorch Lightning.

Public API::

    from lth_lightning import LotteryTicketCallback, LotteryClassifier, MLP
    from lth_lightning import FashionMNISTDataModule, MNISTDataModule, run_lottery
"""

from lth_lightning.callback import LotteryTicketCallback
from lth_lightning.classifier import LotteryClassifier
from lth_lightning.datamodule import FashionMNISTDataModule, IDXDataModule, MNISTDataModule
from lth_lightning.download import DatasetFileError
from lth_lightning.driver import run_lottery
from lth_lightning.export import export_ticket, load_ticket
from lth_lightning.idx import IDXFormatError, read_idx
from lth_lightning.loader import EpochShards, TensorBatches
from lth_lightning.mlp import MLP
from lth_lightning.results import MetricNames, RoundResult
from lth_lightning.sparse import SparseLinear, to_sparse
from lth_lightning.state import LotteryState
from lth_lightning.targets import select_targets
from lth_lightning.tracker import EarlyStoppingTracker

__all__ = [
    "MLP",
    "DatasetFileError",
    "EarlyStoppingTracker",
    "EpochShards",
    "FashionMNISTDataModule",
    "IDXDataModule",
    "IDXFormatError",
    "LotteryClassifier",
    "LotteryState",
    "LotteryTicketCallback",
    "MNISTDataModule",
    "MetricNames",
    "RoundResult",
    "SparseLinear",
    "TensorBatches",
    "export_ticket",
    "load_ticket",
    "read_idx",
    "run_lottery",
    "select_targets",
    "to_sparse",
]
__version__ = "0.1.0"
