"""Every private API of Lightning and torch this package uses, and our workaround for a gap in them, in one place.

Each name here is a private detail of a dependency that may change in any release. Code elsewhere
imports these helpers, never the private names themselves, and ``tests/test_compat.py`` checks
each one against the installed versions, so an upgrade that changes one fails loudly there.
Lightning is imported inside the helpers that need it, so that importing this module does not.
"""

from __future__ import annotations

import atexit
import copy
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, TypeVar

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrizations
from torch.nn.utils.spectral_norm import SpectralNorm as SpectralNormHook
from torch.nn.utils.weight_norm import WeightNorm as WeightNormHook

if TYPE_CHECKING:
    import lightning.pytorch as pl

__all__ = [
    "CHECKPOINT_DIR_NOT_EMPTY",
    "CLOUD_LOGGER_TIP",
    "CURRENT_FX_NAME",
    "DEPRECATION_NOISE",
    "PER_TRAINER_LINES",
    "RANK_ZERO_LOGGER",
    "DirectHookName",
    "cli_parser",
    "cli_value",
    "SpectralNormHook",
    "WeightNormHook",
    "WEIGHT_NORM",
    "SPECTRAL_NORM",
    "destroy_process_group_at_exit",
    "detached_copy",
    "forward_pre_hooks",
    "global_rank",
    "multiply_all_",
    "multiprocessing_start_method",
    "rich_available",
    "skip_epoch_batches",
    "start_training_at_step",
    "summary_table",
]

# The attribute Lightning sets on a LightningModule around every hook call (~50 times per step).
CURRENT_FX_NAME = "_current_fx_name"
# The classes torch's public `weight_norm` / `spectral_norm` register as parametrizations.
WEIGHT_NORM: type[nn.Module] = parametrizations._WeightNorm
SPECTRAL_NORM: type[nn.Module] = parametrizations._SpectralNorm

M = TypeVar("M", bound=nn.Module)

# The logger Lightning's rank-zero helpers (rank_zero_info, rank_zero_warn) log to.
RANK_ZERO_LOGGER = "lightning.pytorch.utilities.rank_zero"
# How Lightning's advertisement for its cloud logger begins (said for every Trainer without that logger).
CLOUD_LOGGER_TIP = "💡 Tip: For seamless cloud logging"
# How the lines Lightning says for every Trainer it builds (devices, tips) and every fit's end begin.
PER_TRAINER_LINES = ("GPU available:", "TPU available:", "HPU available:", "💡 Tip:", "`Trainer.fit` stopped:")
# What ModelCheckpoint warns when its folder holds files (as when a round resumes there).
CHECKPOINT_DIR_NOT_EMPTY = "Checkpoint directory {dirpath} exists and is not empty"
# A deprecation Lightning 2.6 triggers in torch 2.13 at every fit: not the user's concern.
DEPRECATION_NOISE = r".*isinstance\(treespec, LeafSpec\)` is deprecated.*"


class DirectHookName:
    """A LightningModule mixin: Lightning's write of :data:`CURRENT_FX_NAME` around every hook call (~50 times a
    step) becomes a direct store, without ``nn.Module.__setattr__``'s ~10 us of parameter, buffer and module
    checks; for a plain attribute that already exists the result is the same."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name == CURRENT_FX_NAME and name in self.__dict__:
            self.__dict__[name] = value
        else:
            super().__setattr__(name, value)


def cli_value(cli: Any, config: Any, key: str, default: Any = None) -> Any:
    """``key`` of a LightningCLI config (``config_init``), under the running subcommand if there is one."""
    return cli._get(config, key, default=default)


def cli_parser(cli: Any, subcommand: str | None) -> Any:
    """The LightningCLI parser of ``subcommand`` (its main parser for None)."""
    return cli._parser(subcommand)


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


def start_training_at_step(trainer: pl.Trainer, step: int, epoch_batches: int) -> None:
    """Set a fit's progress, before its first epoch, as if ``step`` optimizer steps of one batch each had run:
    ``step // epoch_batches`` epochs finished (the next epoch's sampler epoch and ``current_epoch``), ``step``
    optimizer steps (``global_step``, so ``max_steps`` and ``max_epochs`` stop where the full training would) and
    ``step`` batches (the step the loggers write at; step-based validation).

    Lightning has no public way to start a fit mid-training other than a checkpoint; these are the counters its
    loops restore from one. Automatic optimization only."""
    fit_loop, epochs = trainer.fit_loop, step // epoch_batches
    _count(fit_loop.epoch_progress.current, _PROCESSED, epochs)
    _count(fit_loop.epoch_progress.total, _PROCESSED, epochs)
    epoch_loop = fit_loop.epoch_loop
    _count(epoch_loop.automatic_optimization.optim_progress.optimizer.step.total, ("ready", "completed"), step)
    _count(epoch_loop.batch_progress.total, _PROCESSED, step)
    epoch_loop._batches_that_stepped = step


def skip_epoch_batches(trainer: pl.Trainer, batches: int) -> None:
    """Count ``batches`` more batches of the running epoch as done; called as the epoch's first batch starts, the
    epoch then ends (and validates, and steps its epoch-interval schedulers) where the full epoch would."""
    current = trainer.fit_loop.epoch_loop.batch_progress.current
    _count(current, _PROCESSED, batches, add=True)


_PROCESSED = ("ready", "started", "processed", "completed")  # the counts of Lightning's `_ProcessedTracker`


def _count(tracker: Any, names: tuple[str, ...], value: int, add: bool = False) -> None:
    """Set (or raise by) ``value`` each of a Lightning progress tracker's counts ``names``."""
    for name in names:
        setattr(tracker, name, getattr(tracker, name) + value if add else value)


def rich_available() -> bool:
    """Whether Lightning finds ``rich`` (its default progress bar is then ``RichProgressBar``, else tqdm's)."""
    from lightning.pytorch.utilities.imports import _RICH_AVAILABLE

    return bool(_RICH_AVAILABLE)


def global_rank() -> int:
    """This process's global rank as Lightning's rank-zero utilities know it, before any Trainer exists."""
    from lightning.pytorch.utilities.rank_zero import rank_zero_only

    return int(rank_zero_only.rank)  # type: ignore[attr-defined]


def forward_pre_hooks(module: nn.Module) -> Iterator[Any]:
    """The forward pre-hooks registered on ``module`` (where torch keeps its old-style reparametrizations)."""
    return iter(module._forward_pre_hooks.values())


def multiply_all_(tensors: list[Tensor], factors: list[Tensor]) -> None:
    """``tensors[i] *= factors[i]`` for every ``i`` in one fused call (torch's ``_foreach_mul_``)."""
    torch._foreach_mul_(tensors, factors)


def attached_trainer(module: pl.LightningModule) -> pl.Trainer | None:
    """The Trainer ``module`` is attached to, or None (``module.trainer`` raises when there is none)."""
    return getattr(module, "_trainer", None)


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


def destroy_process_group_at_exit() -> None:
    """Destroy torch.distributed's process group when the interpreter exits, while it is still whole.

    Lightning registers this for NCCL only. A gloo group (DDP on CPUs) left to the interpreter's
    finalization can abort its process ("terminate called without an active exception"), and
    Lightning's launcher answers a rank that dies by killing all the others: a run that finished
    exits with -9. Calling this again moves the one handler, so it runs once, before any handler
    registered earlier.
    """
    atexit.unregister(_destroy_process_group)
    atexit.register(_destroy_process_group)


def _destroy_process_group() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def summary_table(
    data: list[tuple[str, list[str]]], total: int, trainable: int, size: float, modes: dict[str, int]
) -> str:
    """Lightning's model-summary table of ``data`` (its columns) and totals, without its last line, the total FLOPs
    (0 unless the module sets ``example_input_array``)."""
    from lightning.pytorch.utilities.model_summary.model_summary import _format_summary_table

    return _format_summary_table(total, trainable, size, modes, 0, *data).rsplit("\n", 1)[0]
