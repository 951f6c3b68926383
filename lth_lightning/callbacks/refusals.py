"""What :class:`~.lottery_ticket.LotteryTicketCallback` refuses, each with what to do instead: a launcher or
strategy whose masks could not follow, a module already pruned by ``torch.nn.utils.prune``, a round that diverged,
and a fine-tuning round without the dense round's last learning rates."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import lightning.pytorch as pl
import torch
from torch import Tensor, nn

from lth_lightning.compat import forward_pre_hooks, multiprocessing_start_method

__all__ = ["check_finite", "check_not_torch_pruned", "check_strategy", "checked_final_lrs"]


def check_strategy(trainer: pl.Trainer) -> None:
    """Refuse the launchers and strategies the callback's state cannot follow.

    Raises:
        RuntimeError: For a spawning launcher (the masks would stay in the workers) or a strategy that restores
            checkpoints after setting up the model (sharded parameters, renamed: masks keyed by name cannot follow).
    """
    method = multiprocessing_start_method(trainer)
    if method is not None:
        raise RuntimeError(
            f"LotteryTicketCallback does not support the '{method}' launcher "
            "(strategy='ddp_spawn', 'ddp_fork' or 'ddp_notebook'): the masks and the rewind snapshot computed "
            "in the worker processes would not come back to this process, so the next round could not use "
            "them. Use strategy='ddp', which runs this script once per device (as `lth fit` and torchrun do)."
        )
    if trainer.strategy.restore_checkpoint_after_setup:
        raise RuntimeError(
            f"LotteryTicketCallback does not support the {type(trainer.strategy).__name__} strategy: it restores "
            "checkpoints after setting up the model, as the sharded strategies (FSDP, DeepSpeed, model parallel) "
            "do, whose parameters are sharded or renamed so that masks keyed by parameter name cannot follow "
            "them. Use a single device or strategy='ddp'."
        )


def check_not_torch_pruned(module: nn.Module) -> None:
    """Refuse a module carrying a ``torch.nn.utils.prune`` reparametrization: it would be masked twice.

    Raises:
        RuntimeError: Naming the pruned modules.
    """
    pruned = [
        name or "<root>"
        for name, mod in module.named_modules()
        if any(isinstance(h, nn.utils.prune.BasePruningMethod) for h in forward_pre_hooks(mod))
    ]
    if pruned:
        raise RuntimeError(
            f"Module(s) {', '.join(pruned)} are already pruned with torch.nn.utils.prune; "
            "LotteryTicketCallback keeps its own masks and refuses to mask twice. "
            "Call torch.nn.utils.prune.remove(module, name) on them first, or leave them out."
        )


def _all_finite(tensor: Tensor) -> bool:
    """Whether no entry is NaN or infinite: the extremes are finite (NaN propagates to both), one pass, no temporary."""
    if tensor.numel() == 0:
        return True
    low, high = torch.aminmax(tensor.detach())
    return bool(torch.isfinite(low)) and bool(torch.isfinite(high))


def check_finite(trained: Mapping[str, Tensor], round: int) -> None:
    """Refuse to prune a round whose trained weights hold NaN or infinite values.

    Raises:
        FloatingPointError: Naming the tensors; no masks are computed.
    """
    diverged = [n for n, w in trained.items() if not _all_finite(w)]
    if diverged:
        raise FloatingPointError(
            f"LotteryTicketCallback: round {round} ended with NaN or infinite weights in {diverged} "
            "(the training diverged); no masks were computed and earlier rounds are untouched. "
            "Lower the learning rate or clip gradients, then rerun the round."
        )


def checked_final_lrs(
    final: Sequence[Sequence[float]], optimizers: Sequence[torch.optim.Optimizer]
) -> list[list[float]]:
    """The dense round's last learning rates (``final``), if they fit this fit's ``optimizers``.

    Raises:
        RuntimeError: If they were not recorded, or the optimizers' parameter groups differ.
    """
    shape = [len(o.param_groups) for o in optimizers]
    if not final:
        raise RuntimeError(
            "retrain='finetune' retrains at the learning rates of the dense round's last step, which this "
            "experiment did not record (its dense round ran with another `retrain`): start a new experiment."
        )
    if [len(lrs) for lrs in final] != shape:
        raise RuntimeError(
            f"retrain='finetune': the dense round's optimizers had {[len(lrs) for lrs in final]} parameter "
            f"groups, this fit's have {shape}; configure_optimizers must build the same ones every round."
        )
    return [list(lrs) for lrs in final]
