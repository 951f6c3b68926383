"""``LotteryTicketCallback``: iterative magnitude pruning with rewinding, for any LightningModule."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import lightning.pytorch as pl
import torch
from lightning.pytorch.strategies.launchers import _MultiProcessingLauncher
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor, nn

from lth_lightning.pruning import match_names, plan_groups, prune, sparsity_report

__all__ = ["LotteryTicketCallback"]

Phase = Literal["init", "training", "pruned"]
_PRUNABLE_TYPES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
# Optimizers whose update of a weight depends only on that weight's own gradient and state: a
# weight that is zero, with a zero gradient from the start, gets an update of exactly zero (weight
# decay included). With these, re-masking the weights after every step is redundant.
_ELEMENTWISE_OPTIMIZERS = (
    torch.optim.SGD,
    torch.optim.Adam,
    torch.optim.AdamW,
    torch.optim.Adamax,
    torch.optim.NAdam,
    torch.optim.RAdam,
    torch.optim.RMSprop,
    torch.optim.Adagrad,
)
_STATE_VERSION = 1


def _default_prunable(module: nn.Module) -> list[str]:
    """Names of the ``weight`` of every ``nn.Linear`` and ``nn.ConvNd`` in ``module``."""
    params = dict(module.named_parameters())
    names = []
    for mod_name, mod in module.named_modules():
        if isinstance(mod, _PRUNABLE_TYPES):
            name = f"{mod_name}.weight" if mod_name else "weight"
            if name in params:
                names.append(name)
    return names


def _torch_pruned_modules(module: nn.Module) -> list[str]:
    """Modules carrying a ``torch.nn.utils.prune`` reparametrization."""
    return [
        name or "<root>"
        for name, mod in module.named_modules()
        if any(isinstance(h, nn.utils.prune.BasePruningMethod) for h in mod._forward_pre_hooks.values())
    ]


class LotteryTicketCallback(pl.Callback):
    """Find a lottery ticket by iterative magnitude pruning (IMP) with rewinding.

    One *round* is one ``Trainer.fit``. Round 0 trains the dense network. When a fit ends,
    the callback prunes ``amount`` of the weights still alive, by the magnitude of the trained
    weights, and the next fit trains the survivors from the rewind point. Run ``fit`` once per
    round with fresh Trainers (or use :func:`lth_lightning.run_lottery`); one fit alone is one
    ordinary dense training whose end computes the first mask.

    Timeline of one round:

    * ``on_fit_start`` (after a checkpoint restore, with the model on its device): at the very
      first fit the rewind snapshot is taken (``rewind_step=0``: the initial weights). At a
      later fit, the whole module state (parameters and buffers) is rewound to the snapshot and
      the masks computed at the previous fit's end are applied. A fit resumed mid-round from a
      checkpoint is recognised and not rewound again.
    * During training, gradients of pruned weights are zeroed before every optimizer step (so
      gradient clipping and optimizer state never see them). With torch's element-wise
      optimizers (SGD, Adam, AdamW, Adamax, NAdam, RAdam, RMSprop, Adagrad) a weight that is
      zero with a zero gradient gets an update of exactly zero, weight decay included; with any
      other optimizer the weights are also re-masked after every step. Either way pruned weights
      stay exactly zero, and they are re-masked at every epoch's end too.
    * ``on_fit_end`` computes the next masks from the trained weights but leaves the weights
      untouched: a ``trainer.test()`` right after ``fit`` measures the network this round
      trained. The rewind happens at the start of the next fit.

    With ``rewind_step=k > 0`` ("late rewinding", Frankle et al. 2020) the snapshot is the
    state after ``k`` optimizer steps of the first round; optimizers are created anew by every
    fit. Masks, snapshot, round and history are keyed by parameter name and saved in
    checkpoints, so a restored callback continues the experiment exactly.

    Args:
        amount: Fraction of the alive prunable weights removed per round, in (0, 1). The
            density after ``r`` rounds is ``(1 - amount) ** r`` to the rounding of one weight.
        scope: ``"global"`` ranks all prunable weights together (smallest magnitudes go first,
            whatever the layer); ``"layerwise"`` prunes each tensor by ``amount``.
        parameters: Names or glob patterns (``"net.layers.*.weight"``) of the parameters to
            prune; by default the ``weight`` of every ``nn.Linear`` and ``nn.Conv1d/2d/3d``
            (biases and normalisation layers are never pruned by default).
        rates: Per-parameter pruning rates overriding ``amount``, keyed by name or glob
            pattern, each in (0, 1); such a tensor is pruned on its own at its rate, e.g.
            ``{"net.layers.3.weight": 0.1}`` for the paper's half-rate output layer.
        rewind_step: Optimizer step of the first round whose weights are rewound to; 0 is the
            initialisation. Must be >= 0.
        verbose: Print a line per round on rank zero.

    Raises:
        ValueError: If an argument is outside its allowed range (the message names it).
    """

    def __init__(
        self,
        amount: float = 0.2,
        scope: Literal["global", "layerwise"] = "global",
        parameters: Sequence[str] | None = None,
        rates: Mapping[str, float] | None = None,
        rewind_step: int = 0,
        verbose: bool = True,
    ) -> None:
        if isinstance(amount, bool) or not isinstance(amount, (int, float)) or not 0 < amount < 1:
            raise ValueError(f"`amount` must be a float in the open interval (0, 1), got {amount!r}.")
        if scope not in ("global", "layerwise"):
            raise ValueError(f"`scope` must be 'global' or 'layerwise', got {scope!r}.")
        if parameters is not None:
            if isinstance(parameters, str) or not all(isinstance(p, str) for p in parameters):
                raise ValueError(f"`parameters` must be a list of names or glob patterns, got {parameters!r}.")
            if len(parameters) == 0:
                raise ValueError("`parameters` must not be empty; pass None to prune every Linear/Conv weight.")
        for key, rate in (rates or {}).items():
            if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 < rate < 1:
                raise ValueError(f"`rates[{key!r}]` must be a float in the open interval (0, 1), got {rate!r}.")
        if isinstance(rewind_step, bool) or not isinstance(rewind_step, int) or rewind_step < 0:
            raise ValueError(f"`rewind_step` must be an integer >= 0, got {rewind_step!r}.")
        self.amount = float(amount)
        self.scope: Literal["global", "layerwise"] = scope
        self.parameters = list(parameters) if parameters is not None else None
        self.rates = {k: float(v) for k, v in (rates or {}).items()}
        self.rewind_step = rewind_step
        self.verbose = verbose

        self._round = 0
        self._phase: Phase = "init"
        self._names: list[str] = []
        self._masks: dict[str, Tensor] = {}
        self._round_masks: dict[str, Tensor] = {}
        self._snapshot: dict[str, Tensor] | None = None
        self._history: list[dict[str, Any]] = []
        # Live references for the fit in progress only; dropped at its end (no leaks across fits).
        # Parallel lists, built once per fit, so that each step's masking is one fused call.
        self._params: list[Tensor] = []
        self._device_masks: list[Tensor] = []
        self._remask_every_step = True

    # ------------------------------------------------------------------ public read-only view
    @property
    def round(self) -> int:
        """Index of the current (or last trained) round; 0 is the dense network."""
        return self._round

    @property
    def phase(self) -> Phase:
        """``"init"`` before the first fit, ``"training"`` during a round, ``"pruned"`` after it."""
        return self._phase

    @property
    def masks(self) -> dict[str, Tensor]:
        """Current boolean masks keyed by parameter name (copies, on the CPU).

        After a fit ends these are the masks of the *next* round.
        """
        return {k: v.clone() for k, v in self._masks.items()}

    @property
    def round_masks(self) -> dict[str, Tensor]:
        """Masks the current (or last trained) round trains with (copies, on the CPU)."""
        return {k: v.clone() for k, v in self._round_masks.items()}

    @property
    def snapshot(self) -> dict[str, Tensor] | None:
        """The module state rewound to, keyed by state-dict name (copies), or None before it is taken."""
        return None if self._snapshot is None else {k: v.clone() for k, v in self._snapshot.items()}

    @property
    def history(self) -> list[dict[str, Any]]:
        """One record per finished round: round, density, per-layer density, steps, metrics."""
        return [dict(h) for h in self._history]

    @property
    def density(self) -> float:
        """Fraction of prunable weights alive under the current masks (1.0 before the first fit)."""
        return sparsity_report(self._masks).density if self._masks else 1.0

    def fork(self, masks: Mapping[str, Tensor], snapshot: Mapping[str, Tensor]) -> LotteryTicketCallback:
        """A new callback whose next fit trains ``masks`` from ``snapshot`` (for control experiments).

        The fork has this callback's settings, is at the same round, and is otherwise independent:
        its next ``fit`` loads ``snapshot`` into the module, applies ``masks`` and keeps them
        enforced, exactly as a round of the ticket itself.

        Raises:
            ValueError: If ``masks`` does not name the same parameters as this callback's masks.
        """
        if set(masks) != set(self._names):
            raise ValueError(f"Control masks must name the parameters {self._names}, got {sorted(masks)}.")
        fork = LotteryTicketCallback(
            self.amount, self.scope, self.parameters, self.rates, self.rewind_step, verbose=False
        )
        fork._names = list(self._names)
        fork._masks = {n: masks[n].to("cpu", torch.bool).clone() for n in self._names}
        fork._snapshot = {k: v.detach().to("cpu", copy=True) for k, v in snapshot.items()}
        fork._round = self._round - 1  # the fork's next fit is this round, trained again under other conditions
        fork._phase = "pruned"
        return fork

    # ------------------------------------------------------------------ hooks
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        launcher = getattr(trainer.strategy, "launcher", None)
        if stage == "fit" and isinstance(launcher, _MultiProcessingLauncher):
            raise RuntimeError(
                f"LotteryTicketCallback does not support the '{launcher._start_method}' launcher "
                "(strategy='ddp_spawn', 'ddp_fork' or 'ddp_notebook'): the masks and the rewind snapshot computed "
                "in the worker processes would not come back to this process, so the next round could not use "
                "them. Use strategy='ddp', which runs this script once per device (as `lth fit` and torchrun do)."
            )

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._check_not_torch_pruned(pl_module)
        params = dict(pl_module.named_parameters())
        if self._phase == "init":
            self._names = self._select(pl_module)
            plan_groups(self._names, self.amount, self.scope, self.rates)  # validates `rates` early
            self._masks = {n: torch.ones(params[n].shape, dtype=torch.bool) for n in self._names}
            self._round = 0
            if self.rewind_step == 0:
                self._snapshot = self._take_snapshot(pl_module)
            self._phase = "training"
        elif self._phase == "pruned":
            self._check_compatible(pl_module)
            self._rewind(pl_module)
            self._round += 1
            self._phase = "training"
        else:  # resumed in the middle of a round: the checkpoint already holds its weights
            self._check_compatible(pl_module)
        self._round_masks = {k: v.clone() for k, v in self._masks.items()}
        # Only masks that remove something are applied: a dense round (round 0) does no masking work.
        active = [n for n in self._names if not bool(self._masks[n].all())]
        self._params = [params[n] for n in active]
        self._device_masks = [self._masks[n].to(device=params[n].device, dtype=params[n].dtype) for n in active]
        self._enforce_weights()
        self._log_round(trainer)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Strategies that restore checkpoints after setup load weights after on_fit_start.
        self._enforce_weights()
        optimizers = [getattr(o, "optimizer", o) for o in trainer.optimizers]
        self._remask_every_step = not optimizers or not all(type(o) in _ELEMENTWISE_OPTIMIZERS for o in optimizers)

    def on_before_optimizer_step(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: torch.optim.Optimizer
    ) -> None:
        if not self._params:
            return
        grads = [p.grad for p in self._params if p.grad is not None]
        if len(grads) == len(self._params):
            torch._foreach_mul_(grads, self._device_masks)
        else:  # some prunable parameter got no gradient this step
            for param, mask in zip(self._params, self._device_masks, strict=True):
                if param.grad is not None:
                    param.grad.mul_(mask)

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self._remask_every_step:
            self._enforce_weights()
        if self._snapshot is None and self._round == 0 and trainer.global_step >= self.rewind_step:
            self._snapshot = self._take_snapshot(pl_module)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._enforce_weights()  # cheap insurance once per epoch, whatever the optimizer

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._enforce_weights()
        self._params, self._device_masks = [], []
        if self._phase != "training":
            return
        if getattr(trainer, "fast_dev_run", False):
            rank_zero_info("LotteryTicketCallback: fast_dev_run, masks left unchanged.")
            return
        if self._snapshot is None:
            raise ValueError(
                f"`rewind_step`={self.rewind_step} is beyond the first round, which ran "
                f"{trainer.global_step} optimizer steps: choose rewind_step <= {trainer.global_step} "
                "or train the first round longer. No masks were computed."
            )
        params = dict(pl_module.named_parameters())
        trained = {n: params[n].detach() for n in self._names}
        diverged = [n for n, w in trained.items() if not bool(torch.isfinite(w).all())]
        if diverged:
            raise FloatingPointError(
                f"LotteryTicketCallback: round {self._round} ended with NaN or infinite weights in {diverged} "
                "(the training diverged); no masks were computed and earlier rounds are untouched. "
                "Lower the learning rate or clip gradients, then rerun the round."
            )
        report = sparsity_report(self._masks)
        self._masks = {
            n: m.cpu()
            for n, m in prune(
                trained, self._masks, self.amount, scope=self.scope, rates=self.rates, rounds=self._round + 1
            ).items()
        }
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if isinstance(v, Tensor) and v.numel() == 1}
        self._history.append(
            {
                "round": self._round,
                "density": report.density,
                "layer_density": {t.name: t.density for t in report.tensors},
                "steps": trainer.global_step,
                "epochs": trainer.current_epoch,
                "next_density": self.density,
                "metrics": metrics,
            }
        )
        self._phase = "pruned"
        if self.verbose:
            rank_zero_info(
                f"LotteryTicketCallback: round {self._round} trained at density {report.density:.4f}; "
                f"next round keeps {self.density:.4f} of the prunable weights."
            )

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self._params, self._device_masks = [], []

    # ------------------------------------------------------------------ checkpointing
    def state_dict(self) -> dict[str, Any]:
        return {
            "version": _STATE_VERSION,
            "config": self.settings(),
            "round": self._round,
            "phase": self._phase,
            "names": list(self._names),
            "masks": {k: v.clone() for k, v in self._masks.items()},
            "round_masks": {k: v.clone() for k, v in self._round_masks.items()},
            "snapshot": None if self._snapshot is None else dict(self._snapshot),
            "history": [dict(h) for h in self._history],
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        version = state_dict.get("version")
        if version != _STATE_VERSION:
            raise ValueError(f"Unsupported LotteryTicketCallback state version {version!r}; expected {_STATE_VERSION}.")
        saved, current = state_dict["config"], self.settings()
        differing = sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k))
        if differing:
            details = "; ".join(f"{k}: checkpoint {saved.get(k)!r} vs callback {current.get(k)!r}" for k in differing)
            raise ValueError(
                f"The checkpoint's LotteryTicketCallback was configured differently ({details}). "
                "Resume with the same settings, or start a new experiment."
            )
        phase = state_dict["phase"]
        if phase not in ("init", "training", "pruned"):
            raise ValueError(f"Invalid phase {phase!r} in LotteryTicketCallback state.")
        self._round = int(state_dict["round"])
        self._phase = phase
        self._names = list(state_dict["names"])
        self._masks = {k: v.to("cpu", torch.bool) for k, v in state_dict["masks"].items()}
        self._round_masks = {k: v.to("cpu", torch.bool) for k, v in state_dict["round_masks"].items()}
        snapshot = state_dict["snapshot"]
        self._snapshot = None if snapshot is None else {k: v.cpu() for k, v in snapshot.items()}
        self._history = [dict(h) for h in state_dict["history"]]

    # ------------------------------------------------------------------ internals
    def settings(self) -> dict[str, Any]:
        """The constructor settings that define the experiment (compared when a state is loaded)."""
        return {
            "amount": self.amount,
            "scope": self.scope,
            "parameters": self.parameters,
            "rates": dict(self.rates),
            "rewind_step": self.rewind_step,
        }

    def _select(self, pl_module: pl.LightningModule) -> list[str]:
        all_names = [n for n, _ in pl_module.named_parameters()]
        if self.parameters is None:
            names = _default_prunable(pl_module)
            if not names:
                raise ValueError(
                    "LotteryTicketCallback found nothing to prune: the LightningModule has no nn.Linear or "
                    "nn.Conv1d/2d/3d weight. Pass `parameters=[...]` with names or glob patterns; "
                    f"parameters: {', '.join(all_names) or '(none)'}."
                )
        else:
            names = match_names(self.parameters, all_names, "parameters")
        params = dict(pl_module.named_parameters())
        for name in names:
            if isinstance(params[name], nn.parameter.UninitializedParameter):
                raise ValueError(f"Parameter {name!r} is not materialized yet (lazy module); run a forward pass first.")
        return names

    def _check_not_torch_pruned(self, pl_module: pl.LightningModule) -> None:
        pruned = _torch_pruned_modules(pl_module)
        if pruned:
            raise RuntimeError(
                f"Module(s) {', '.join(pruned)} are already pruned with torch.nn.utils.prune; "
                "LotteryTicketCallback keeps its own masks and refuses to mask twice. "
                "Call torch.nn.utils.prune.remove(module, name) on them first, or leave them out."
            )

    def _check_compatible(self, pl_module: pl.LightningModule) -> None:
        params = dict(pl_module.named_parameters())
        missing = [n for n in self._names if n not in params]
        if missing:
            raise ValueError(
                f"The model has no parameter(s) {missing} that the lottery masks were made for; "
                f"its parameters are: {', '.join(params)}."
            )
        for name, mask in self._masks.items():
            if tuple(mask.shape) != tuple(params[name].shape):
                raise ValueError(
                    f"Mask for {name!r} has shape {tuple(mask.shape)} but the model's parameter has shape "
                    f"{tuple(params[name].shape)}: the state comes from a different model."
                )

    @staticmethod
    def _take_snapshot(pl_module: pl.LightningModule) -> dict[str, Tensor]:
        return {k: v.detach().to("cpu", copy=True) for k, v in pl_module.state_dict().items()}

    @torch.no_grad()
    def _rewind(self, pl_module: pl.LightningModule) -> None:
        if self._snapshot is None:
            raise RuntimeError("LotteryTicketCallback has no rewind snapshot; it is taken during the first round.")
        state = pl_module.state_dict()
        missing = sorted(set(self._snapshot) - set(state))
        if missing:
            raise ValueError(f"Cannot rewind: the model lacks state entries {missing} of the snapshot.")
        for name, value in self._snapshot.items():
            target = state[name]
            if target.shape != value.shape:
                raise ValueError(
                    f"Cannot rewind {name!r}: snapshot shape {tuple(value.shape)}, model shape {tuple(target.shape)}."
                )
            target.copy_(value)

    @torch.no_grad()
    def _enforce_weights(self) -> None:
        if self._params:  # one fused call over all tensors (the masks are in the parameters' dtype)
            torch._foreach_mul_(self._params, self._device_masks)

    def _log_round(self, trainer: pl.Trainer) -> None:
        report = sparsity_report(self._masks)
        if self.verbose:
            rank_zero_info(
                f"LotteryTicketCallback: round {self._round} starts with {report.alive}/{report.total} "
                f"prunable weights ({report.density:.2%})."
            )
        if not trainer.is_global_zero:
            return
        metrics = {"lottery/round": float(self._round), "lottery/density": report.density}
        for t in report.tensors:
            metrics[f"lottery/density/{t.name}"] = t.density
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=trainer.global_step)
