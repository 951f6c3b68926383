"""Every private API of Lightning and torch this package uses, in one place.

Each name here is a private detail of a dependency that may change in any release. Code elsewhere
imports these helpers, never the private names themselves, and ``tests/test_compat.py`` checks
each one against the installed versions, so an upgrade that changes one fails loudly there.
Lightning is imported inside the helpers that need it, so that importing this module does not.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, TypeVar

from torch import nn
from torch.nn.utils import parametrizations
from torch.nn.utils.spectral_norm import SpectralNorm as SpectralNormHook
from torch.nn.utils.weight_norm import WeightNorm as WeightNormHook

if TYPE_CHECKING:
    import lightning.pytorch as pl

__all__ = [
    "CURRENT_FX_NAME",
    "SpectralNormHook",
    "WeightNormHook",
    "WEIGHT_NORM",
    "SPECTRAL_NORM",
    "detached_copy",
    "forward_pre_hooks",
    "global_rank",
    "multiprocessing_start_method",
]

# The attribute Lightning sets on a LightningModule around every hook call (~50 times per step).
CURRENT_FX_NAME = "_current_fx_name"
# The classes torch's public `weight_norm` / `spectral_norm` register as parametrizations.
WEIGHT_NORM: type[nn.Module] = parametrizations._WeightNorm
SPECTRAL_NORM: type[nn.Module] = parametrizations._SpectralNorm

M = TypeVar("M", bound=nn.Module)


def multiprocessing_start_method(trainer: pl.Trainer) -> str | None:
    """The start method (``"spawn"``, ``"fork"``, ...) when the strategy launches worker processes, else None.

    Such launchers (``ddp_spawn``, ``ddp_fork``, ``ddp_notebook``) run ``fit`` in processes whose
    state never returns to the caller.
    """
    from lightning.pytorch.strategies.launchers import _MultiProcessingLauncher

    launcher = getattr(trainer.strategy, "launcher", None)
    if isinstance(launcher, _MultiProcessingLauncher):
        return str(launcher._start_method)
    return None


def global_rank() -> int:
    """This process's global rank as Lightning's rank-zero utilities know it, before any Trainer exists."""
    from lightning.pytorch.utilities.rank_zero import rank_zero_only

    return int(getattr(rank_zero_only, "rank", 0))


def forward_pre_hooks(module: nn.Module) -> Iterator[Any]:
    """The forward pre-hooks registered on ``module`` (where torch keeps its old-style reparametrizations)."""
    return iter(module._forward_pre_hooks.values())


def detached_copy(module: M) -> M:
    """A deep copy of a LightningModule without its reference to a Trainer (which must not be copied)."""
    trainer = getattr(module, "_trainer", None)
    if trainer is None:
        return copy.deepcopy(module)
    module._trainer = None  # type: ignore[assignment]
    try:
        return copy.deepcopy(module)
    finally:
        module._trainer = trainer
