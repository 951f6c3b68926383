"""Whether an experiment's rounds can train as stacked members, and the batch that checks a stacked network.

Deciding reads no data for a module that cannot stack by its kind or its settings: its DataModule
is then left to the Trainer (whose ``setup`` many DataModules need, and whose shuffling may draw
from torch's global random state).
"""

from __future__ import annotations

import lightning.pytorch as pl
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor

from lth_lightning.callbacks.lottery_ticket import LotteryTicketCallback
from lth_lightning.experiment.controls.scoring_batch import first_training_batch
from lth_lightning.models.classifier import LotteryClassifier
from lth_lightning.stack.network import StackingError, stack_network

__all__ = ["check_stackable", "decide_stacking", "probe_batch", "stacking_probe"]


def probe_batch(datamodule: pl.LightningDataModule, size: int = 8) -> Tensor:
    """A few training inputs, to check a stacked network member by member before it trains."""
    inputs = first_training_batch(datamodule)[0]
    return inputs[:size].detach().cpu()


def check_stackable(model: pl.LightningModule, lottery: LotteryTicketCallback) -> LotteryClassifier:
    """``model``, if its kind and the callback's settings let its rounds train as stacked members.

    Raises:
        StackingError: Why they cannot.
    """
    if not isinstance(model, LotteryClassifier):
        raise StackingError(
            f"stacking trains the network of a LotteryClassifier as stacked members; {type(model).__name__} is not "
            "one (wrap your network in LotteryClassifier(net=...), or train with stack=false)"
        )
    if lottery.rewind_step != 0:
        raise StackingError(
            f"stacking rewinds to the initialization; rewind_step={lottery.rewind_step} trains with stack=false"
        )
    if lottery.retrain != "rewind":
        raise StackingError(
            f"stacking rewinds to the initialization; retrain={lottery.retrain!r} trains with stack=false"
        )
    return model


def stacking_probe(
    model: pl.LightningModule, lottery: LotteryTicketCallback, datamodule: pl.LightningDataModule
) -> Tensor:
    """A few training inputs on which ``model``'s network was checked to run as stacked members.

    The data is read only after :func:`check_stackable` passes: a module that cannot stack leaves
    its datamodule to the Trainer (whose ``setup`` many datamodules need, and whose shuffling draws
    from torch's global random state).

    Raises:
        StackingError: Why ``model`` cannot train its rounds as stacked members.
    """
    classifier = check_stackable(model, lottery)
    probe = probe_batch(datamodule)
    state = {k.removeprefix("net."): v for k, v in classifier.state_dict().items() if k.startswith("net.")}
    stack_network(classifier.net, [state], probe)
    return probe


def decide_stacking(
    stack: bool | None, model: pl.LightningModule, lottery: LotteryTicketCallback, datamodule: pl.LightningDataModule
) -> Tensor | None:
    """Whether to stack (as asked, or, for None, where the module can, saying why not where it cannot).

    Returns:
        The probe batch the stacked rounds check their networks with, or None to train one network at a time.

    Raises:
        StackingError: If ``stack`` is True and the module cannot be stacked.
    """
    if stack is False:
        return None
    try:
        return stacking_probe(model, lottery, datamodule)
    except StackingError as reason:
        if stack:
            raise StackingError(f"stack=True cannot stack this experiment: {reason}.") from reason
        rank_zero_info(f"Training the rounds one network at a time: {reason}.")
        return None
