"""lth-lightning: find lottery tickets with PyTorch Lightning.

Public API::

    from lth_lightning import LotteryTicketCallback, LotteryClassifier, MLP
"""

from lth_lightning.callback import LotteryTicketCallback
from lth_lightning.classifier import LotteryClassifier
from lth_lightning.mlp import MLP

__all__ = ["MLP", "LotteryClassifier", "LotteryTicketCallback"]
__version__ = "0.1.0"
