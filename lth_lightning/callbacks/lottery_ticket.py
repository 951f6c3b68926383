"""``LotteryTicketCallback``: iterative magnitude pruning with rewinding, for any LightningModule."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities import rank_zero_info
from lightning.pytorch.utilities.rank_zero import rank_zero_debug
from torch import Tensor

from lth_lightning.callbacks.enforcement import Enforcement, MaskEnforcer
from lth_lightning.callbacks.late_rewinding import check_late_rewinding, start_late
from lth_lightning.callbacks.late_start import LateStart
from lth_lightning.callbacks.refusals import check_finite, check_not_torch_pruned, check_strategy, checked_final_lrs
from lth_lightning.callbacks.settings import LotterySettings, Retrain, Scope, Setting, settings_added_later
from lth_lightning.callbacks.snapshot import SnapshotDevice, place_snapshot, rewind, take_snapshot
from lth_lightning.callbacks.state import LotteryState, Phase
from lth_lightning.compat import (
    destroy_process_group_at_exit,
    skip_epoch_batches,
)
from lth_lightning.pruning.magnitude import prune, sparsity_report
from lth_lightning.pruning.targets import Target, magnitudes, plan_rates, resolve_targets, select_targets

__all__ = ["LotteryTicketCallback"]

_STATE_VERSION = 2  # 2: masks bit-packed (version 1 states, with plain mask tensors, still load)
_LOADABLE_VERSIONS = (1, 2)


def _scalars(trainer: pl.Trainer) -> dict[str, float]:
    """The single-number metrics the Trainer has logged so far, as floats."""
    return {k: float(v) for k, v in trainer.callback_metrics.items() if isinstance(v, Tensor) and v.numel() == 1}


class LotteryTicketCallback(pl.Callback):
    """Find a lottery ticket by iterative magnitude pruning (IMP) with rewinding.

    One *round* is one ``Trainer.fit``. Round 0 trains the dense network. When a fit ends,
    the callback prunes ``amount`` of the weights still alive, by the magnitude of the trained
    weights, and the next fit trains the survivors from the rewind point. Run ``fit`` once per
    round with fresh Trainers (or use :func:`lth_lightning.run_lottery`); one fit alone is one
    ordinary dense training whose end computes the first mask.

    The first fit chooses the tensors to prune (every linear map by default, listed on rank zero) and takes the
    rewind snapshot; every later fit rewinds to it and applies the masks the previous fit's end computed; during
    training the pruned weights stay exactly zero (:mod:`~lth_lightning.callbacks.enforcement`). ``on_fit_end``
    computes the next masks but leaves the weights as trained, so a ``trainer.test()`` right after ``fit``
    measures this round's network. The state (:class:`~lth_lightning.callbacks.state.LotteryState`) is keyed by
    parameter name and saved in checkpoints; a state restored for ``test``/``validate``/``predict`` never
    overwrites the live experiment. The whole timeline, what is pruned and what is refused: ``docs/callback.md``.

    Args:
        amount, scope, parameters, rates, rewind_step, snapshot_device, verbose, retrain: The callback's options,
            each declared once, with its help, allowed values and default, in
            :class:`~lth_lightning.callbacks.settings.LotterySettings` (``docs/options.md`` lists them; ``lth fit
            --help`` shows them as ``--lottery.*``).

    Memory: besides the snapshot, the callback keeps one boolean mask per pruned tensor (one byte
    per weight; on a CPU module the state's own masks are the ones applied, and on a GPU a copy
    sits on the device; below about a million masked weights they are kept in the parameters'
    dtype instead, a few MiB at most, for speed); pruning at the end of a fit selects in linear
    time with working buffers of a few MiB, and checkpoints hold the masks at one bit per weight.

    Raises:
        ValueError: If an argument is outside its allowed range (the message names it).
    """

    # Its options, read-only: ``settings`` (a LotterySettings, checked when made) holds them.
    amount, scope, parameters, rates = Setting(), Setting(), Setting(), Setting()
    rewind_step, snapshot_device, verbose, retrain = Setting(), Setting(), Setting(), Setting()

    def __init__(
        self,
        amount: float = 0.2,
        scope: Scope = "global",
        parameters: Sequence[str] | None = None,
        rates: Mapping[str, float] | None = None,
        rewind_step: int = 0,
        snapshot_device: SnapshotDevice = "cpu",
        verbose: bool = True,
        retrain: Retrain = "rewind",
    ) -> None:
        self.settings = LotterySettings(
            amount, scope, parameters, rates, rewind_step, snapshot_device, verbose, retrain
        )
        self._state = LotteryState()
        self._stage: str | None = None  # the Trainer stage in progress, set by `setup`
        # Live references for the fit in progress only; dropped at its end (no leaks across fits).
        self._targets: list[Target] = []
        self._rates: dict[str, float] = {}
        self._enforcer = MaskEnforcer()
        self._optimizers: list[torch.optim.Optimizer] = []  # this fit's, when learning rates are read or set
        self._finetune_lrs: list[list[float]] = []  # set before every step of a fine-tuning round
        self._start_step = 0  # the step this fit trains from: rewind_step when it continues a late rewind
        self._skip = 0  # batches of the first epoch behind a fit started at its step (counted as its first starts)

    # ------------------------------------------------------------------ public read-only view
    @property
    def round(self) -> int:
        """Index of the current (or last trained) round; 0 is the dense network."""
        return self._state.round

    @property
    def phase(self) -> Phase:
        """``"init"`` before the first fit, ``"training"`` during a round, ``"pruned"`` after it."""
        return self._state.phase

    @property
    def masks(self) -> dict[str, Tensor]:
        """Current boolean masks keyed by parameter name (copies, on the CPU).

        After a fit ends these are the masks of the *next* round.
        """
        return {k: v.clone() for k, v in self._state.masks.items()}

    @property
    def round_masks(self) -> dict[str, Tensor]:
        """Masks the current (or last trained) round trains with (copies, on the CPU)."""
        return {k: v.clone() for k, v in self._state.round_masks.items()}

    @property
    def snapshot(self) -> dict[str, Tensor] | None:
        """The module state rewound to, keyed by state-dict name (copies), or None before it is taken."""
        snapshot = self._state.snapshot
        return None if snapshot is None else {k: v.clone() for k, v in snapshot.items()}

    @property
    def history(self) -> list[dict[str, Any]]:
        """One record per finished round: round, density, per-layer density, steps, metrics."""
        return [dict(h) for h in self._state.history]

    @property
    def enforcement(self) -> Enforcement | None:
        """How the current (or last) fit keeps pruned weights at zero (see :func:`choose_enforcement`); None before."""
        enforcement = self._enforcer.enforcement
        return None if enforcement is None else enforcement[0]

    @property
    def density(self) -> float:
        """Fraction of prunable weights alive under the current masks (1.0 before the first fit)."""
        return self._state.density

    @property
    def state(self) -> LotteryState:
        """A copy of the experiment's state (round, phase, masks, snapshot, history)."""
        return LotteryState.from_dict(self._state.as_dict())

    def set_state(self, state: LotteryState) -> None:
        """Continue from ``state`` (a copy is kept): a state computed outside a fit (:mod:`.driving`).

        Raises:
            ValueError: During a fit, when the live state must not change.
        """
        if self._stage is not None:
            raise ValueError(f"LotteryTicketCallback.set_state() is not allowed during '{self._stage}'.")
        self._state = LotteryState.from_dict(state.as_dict())

    # ------------------------------------------------------------------ hooks
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._stage = stage
        if stage != "fit":
            return
        check_strategy(trainer)
        if trainer.world_size > 1:
            destroy_process_group_at_exit()

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._stage = None
        self._release()

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        check_not_torch_pruned(pl_module)
        state = self._state
        first = state.phase == "init"
        self._start_step = 0
        if first:
            selection = select_targets(pl_module, self.parameters)
            self._targets = list(selection.targets)
            self._rates = plan_rates(self._targets, self.amount, self.scope, self.rates)
            if self.verbose:
                rank_zero_info(selection.describe())
            state.start({t.name: t.shape for t in self._targets}, None)
            if self.rewind_step == 0:
                state.snapshot = take_snapshot(pl_module, pl_module.device, self.snapshot_device)
        else:
            self._targets = resolve_targets(pl_module, state.names)
            self._rates = plan_rates(self._targets, self.amount, self.scope, self.rates)
            self._check_shapes()
            if state.snapshot is not None:  # restored from a checkpoint, or made elsewhere
                state.snapshot = place_snapshot(state.snapshot, pl_module.device, self.snapshot_device)
            rewinds = state.phase == "pruned" and self.retrain == "rewind"
            if rewinds:
                rewind(pl_module, state.snapshot)  # otherwise the trained weights stay; binding zeroes the pruned ones
            if self.retrain == "rewind" and (rewinds or state.round > 0):  # a resumed round was rewound too
                self._start_step = self.rewind_step
            state.begin_fit()
        self._bind(trainer, pl_module)
        if first and self.verbose and self._enforcer.enforcement is not None:
            mode, reason = self._enforcer.enforcement
            rank_zero_info(f"LotteryTicketCallback keeps pruned weights at zero through the {mode}: {reason}.")
        self._log_round(trainer)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.enforce_masks()  # cheap insurance: nothing may have loaded weights since on_fit_start
        if self.rewind_step > 0:
            epoch_batches = check_late_rewinding(trainer, pl_module, self.rewind_step)
            if self._start_step and trainer.global_step == 0:  # not when resumed: the checkpoint holds the counters
                self._skip = start_late(trainer, LateStart(self._start_step, epoch_batches))
        if self.retrain == "finetune":
            self._optimizers = [getattr(o, "optimizer", o) for o in trainer.optimizers]
            if self._state.round > 0:
                self._finetune_lrs = checked_final_lrs(self._state.final_lrs, self._optimizers)

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if self._skip:  # the first batch of a fit started at its step: the epoch's earlier batches are behind it
            skip_epoch_batches(trainer, self._skip)
            self._skip = 0

    def on_before_optimizer_step(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: torch.optim.Optimizer
    ) -> None:
        self._enforcer.before_step()
        if self._finetune_lrs:  # every step at the schedule's final rates, whatever the scheduler set
            for opt, lrs in zip(self._optimizers, self._finetune_lrs, strict=True):
                for group, lr in zip(opt.param_groups, lrs, strict=True):
                    group["lr"] = lr
        elif self._optimizers and self._state.round == 0:  # the dense round: its last step's rates are kept
            self._state.final_lrs = [[float(g["lr"]) for g in opt.param_groups] for opt in self._optimizers]

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        state = self._state
        if state.snapshot is None and state.round == 0 and trainer.global_step >= self.rewind_step:
            state.snapshot = take_snapshot(pl_module, pl_module.device, self.snapshot_device)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.enforce_masks()  # cheap insurance once per epoch, whatever the optimizer

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.enforce_masks()
        self._release()
        if self._state.phase != "training":
            return
        if getattr(trainer, "fast_dev_run", False):
            rank_zero_info("LotteryTicketCallback: fast_dev_run, masks left unchanged.")
            return
        if self._state.snapshot is None:
            raise ValueError(
                f"`rewind_step`={self.rewind_step} is beyond the first round, which ran "
                f"{trainer.global_step} optimizer steps: choose rewind_step <= {trainer.global_step} "
                "or train the first round longer. No masks were computed."
            )
        self._prune(trainer, pl_module)
        self._log_results(trainer, self._state.history[-1]["metrics"])

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._state.phase == "pruned" and self._state.history:  # the round that just trained, tested
            self._log_results(trainer, _scalars(trainer))

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self._stage = None
        self._release()

    # ------------------------------------------------------------------ checkpointing
    def state_dict(self) -> dict[str, Any]:
        """The experiment's state for a checkpoint: masks at one bit per weight, the snapshot's tensors themselves
        (not copies: saving a checkpoint costs no second snapshot)."""
        return {"version": _STATE_VERSION, "config": self.settings.defining(), **self._state.packed()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the experiment from a checkpoint (``fit``) or a saved state (outside any Trainer).

        A state Lightning restores while the Trainer tests, validates or predicts is ignored:
        such a checkpoint is mid-round, and taking it would overwrite the live experiment. The
        state's tensors are taken over, not copied (a loaded checkpoint's are nobody else's);
        states saved before masks were bit-packed (version 1) load as before.

        Raises:
            ValueError: If the state's version or settings differ from this callback's.
        """
        if self._stage not in (None, "fit"):
            rank_zero_debug(f"LotteryTicketCallback: the checkpoint's state is not loaded for '{self._stage}'.")
            return
        version = state_dict.get("version")
        if version not in _LOADABLE_VERSIONS:
            raise ValueError(
                f"Unsupported LotteryTicketCallback state version {version!r}; expected one of {_LOADABLE_VERSIONS}."
            )
        saved, current = {**settings_added_later(), **state_dict["config"]}, self.settings.defining()
        differing = sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k))
        if differing:
            details = "; ".join(f"{k}: checkpoint {saved.get(k)!r} vs callback {current.get(k)!r}" for k in differing)
            raise ValueError(
                f"The checkpoint's LotteryTicketCallback was configured differently ({details}). "
                "Resume with the same settings, or start a new experiment."
            )
        self._state = LotteryState.from_dict(state_dict, copy=False)

    # ------------------------------------------------------------------ internals
    def _prune(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        state = self._state
        trained = magnitudes(pl_module, self._targets)
        check_finite(trained, state.round)
        masks = prune(
            trained,
            state.masks,
            self.amount,
            scope=self.scope,
            rates=self._rates,
            rounds=state.round + 1,
            member_dims=state.member_dims,
        )
        metrics = _scalars(trainer)
        steps = trainer.global_step - self._start_step  # a late-rewound round trains T - k steps
        state.finish(masks, steps=steps, epochs=trainer.current_epoch, metrics=metrics)
        if self.verbose:
            rank_zero_info(
                f"LotteryTicketCallback: round {state.round} trained at density {state.history[-1]['density']:.4f}; "
                f"next round keeps {state.density:.4f} of the prunable weights."
            )

    def _bind(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Bind this fit's masked parameters and install what keeps them masked, whatever steps them."""
        self._enforcer.bind(trainer, pl_module, self._state.masks, self._state.names)

    def _release(self) -> None:
        self._enforcer.release()
        self._optimizers, self._finetune_lrs = [], []
        self._skip = 0

    def _check_shapes(self) -> None:
        for target in self._targets:
            mask = self._state.masks[target.name]
            if tuple(mask.shape) != target.shape:
                raise ValueError(
                    f"Mask for {target.name!r} has shape {tuple(mask.shape)} but the model's parameter has shape "
                    f"{target.shape}: the state comes from a different model."
                )

    def enforce_masks(self) -> None:
        """Zero the pruned weights now (one multiply per masked tensor); outside a fit it does nothing.

        The callback calls it at the start and end of every fit and epoch and, unless gradients alone
        keep them at zero, right after every optimizer step; call it after changing weights mid-fit.
        """
        self._enforcer.enforce()

    def _log_results(self, trainer: pl.Trainer, metrics: Mapping[str, float]) -> None:
        """The finished round's results in the Trainer's loggers, on the round axis (step = round), rank zero:
        ``round/index``, ``round/weights_remaining`` (the fraction it trained with) and ``round/<metric>``."""
        if not trainer.is_global_zero:
            return
        record = self._state.history[-1]
        values = {"round/index": float(record["round"]), "round/weights_remaining": float(record["density"])}
        values.update({f"round/{name}": value for name, value in metrics.items()})
        for logger in trainer.loggers:
            logger.log_metrics(values, step=record["round"])

    def _log_round(self, trainer: pl.Trainer) -> None:
        report = sparsity_report(self._state.masks)
        if self.verbose:
            rank_zero_info(
                f"LotteryTicketCallback: round {self.round} starts with {report.alive}/{report.total} "
                f"prunable weights ({report.density:.2%})."
            )
        if not trainer.is_global_zero:
            return
        metrics = {"lottery/round": float(self.round), "lottery/density": report.density}
        for t in report.tensors:
            metrics[f"lottery/density/{t.name}"] = t.density
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=trainer.global_step)
