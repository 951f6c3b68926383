"""A LightningModule that trains any classifier network and measures full-set accuracy."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any, Literal

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import Metric
from torchmetrics.classification import MulticlassAccuracy

from lth_lightning.compat import DirectHookName, attached_trainer
from lth_lightning.models.mlp import MLP

__all__ = ["LotteryClassifier", "MeanLoss", "StepDecay", "make_optimizer", "with_schedule"]

OptimizerName = Literal["adam", "adamw", "sgd"]
_OPTIMIZERS = ("adam", "adamw", "sgd")
LRSchedule = Literal["constant", "step"]
_SCHEDULES = ("constant", "step")
_FUSED_DEVICES = ("cpu", "cuda")  # where torch's fused Adam, AdamW and SGD kernels run


class MeanLoss(Metric):
    """Example-weighted mean of per-batch mean losses, summed across processes.

    No NaN filtering (a NaN loss must show) and no host synchronisation in ``update``.
    """

    full_state_update = False
    total: Tensor
    count: Tensor

    def __init__(self) -> None:
        super().__init__()
        self.add_state("total", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, loss: Tensor, n: int) -> None:
        """Add a batch whose mean loss is ``loss`` over ``n`` examples."""
        self.total.add_(loss.detach(), alpha=n)  # in place: no Module.__setattr__ per step
        self.count.add_(n)

    def compute(self) -> Tensor:
        """The mean loss per example (NaN before any update)."""
        return (self.total / self.count).float()


def _infer_num_classes(net: nn.Module) -> int | None:
    last = None
    for module in net.modules():
        if isinstance(module, nn.Linear):
            last = module
    return None if last is None else last.out_features


class LotteryClassifier(DirectHookName, pl.LightningModule):
    """Cross-entropy classifier around any ``nn.Module`` that maps inputs to logits.

    Accuracy is torchmetrics' ``MulticlassAccuracy`` with ``average="micro"`` (the fraction of
    correctly classified examples) accumulated over the *whole* validation and test sets and
    synchronised across processes. Losses are averaged over examples. All
    metrics are logged once per epoch (``train/loss``, ``val/loss``, ``val/acc``,
    ``test/loss``, ``test/acc``): nothing is logged per step, which would cost about a third of
    an MLP step. The training loss is summed in one tensor on the device, with one in-place add
    per step, and handed to its metric once per epoch.

    The optimizer uses torch's fused kernel (``fused=True``: one kernel updates every parameter)
    when all parameters are on a CPU or CUDA device. On the seed MLP, an Adam epoch on a CPU is
    about a quarter faster that way. The update is the same to rounding: parameters differ from
    torch's default implementation by about 1e-7 after 200 Adam steps.

    Args:
        net: The network; defaults to the seed :class:`~lth_lightning.MLP`.
        lr: Learning rate, > 0.
        optimizer: ``"adam"``, ``"adamw"`` or ``"sgd"``.
        weight_decay: Weight decay, >= 0 (L2 for adam/sgd, decoupled for adamw).
        momentum: Momentum for ``"sgd"``, in [0, 1).
        num_classes: Number of classes; inferred from the last ``nn.Linear`` if omitted.
        fused: Use torch's fused optimizer kernel: ``None`` (default) where the parameters'
            devices support it (CPU, CUDA), ``True`` always (torch raises on other devices),
            ``False`` never (torch's default implementation).
        lr_schedule: ``"constant"`` (default), or ``"step"``: the learning rate times 0.1 after half
            of each fit's optimizer steps and again after three quarters (:class:`StepDecay`), the
            decaying schedule under which rewinding and fine-tuning differ (Renda et al. 2020).

    Raises:
        ValueError: For a non-positive ``lr``, an unknown optimizer, a negative weight decay,
            a momentum outside [0, 1) or a number of classes that is missing or below 2.
    """

    def __init__(
        self,
        net: nn.Module | None = None,
        lr: float = 1e-4,
        optimizer: OptimizerName = "adam",
        weight_decay: float = 0.0,
        momentum: float = 0.9,
        num_classes: int | None = None,
        fused: bool | None = None,
        lr_schedule: LRSchedule = "constant",
    ) -> None:
        super().__init__()
        if not lr > 0:
            raise ValueError(f"`lr` must be > 0, got {lr!r}.")
        if optimizer not in _OPTIMIZERS:
            raise ValueError(f"`optimizer` must be one of {_OPTIMIZERS}, got {optimizer!r}.")
        if not weight_decay >= 0:
            raise ValueError(f"`weight_decay` must be >= 0, got {weight_decay!r}.")
        if not 0 <= momentum < 1:
            raise ValueError(f"`momentum` must be in [0, 1), got {momentum!r}.")
        if fused is not None and not isinstance(fused, bool):
            raise ValueError(f"`fused` must be None, True or False, got {fused!r}.")
        if lr_schedule not in _SCHEDULES:
            raise ValueError(f"`lr_schedule` must be one of {_SCHEDULES}, got {lr_schedule!r}.")
        self.net = net if net is not None else MLP()
        if num_classes is None:
            num_classes = _infer_num_classes(self.net)
            if num_classes is None:
                raise ValueError("`num_classes` is required: the network has no nn.Linear to infer it from.")
        if num_classes < 2:
            raise ValueError(f"`num_classes` must be >= 2, got {num_classes!r}.")
        self.save_hyperparameters(ignore=["net"])
        self.num_classes = num_classes
        self.lr, self.optimizer_name, self.weight_decay, self.momentum = lr, optimizer, weight_decay, momentum
        self.fused = fused
        self.lr_schedule: LRSchedule = lr_schedule
        self.train_loss = MeanLoss()
        self._train_loss_sum: Tensor | None = None  # this epoch's sum of (batch mean loss x batch size)
        self._train_count = 0
        self.val_loss = MeanLoss()
        self.test_loss = MeanLoss()
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes, average="micro")

    def forward(self, x: Tensor) -> Tensor:
        """Logits of the network."""
        return self.net(x)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, y = batch
        loss = F.cross_entropy(self(x), y)
        n = y.shape[0]
        if self._train_loss_sum is None:
            self._train_loss_sum = torch.zeros((), dtype=torch.float64, device=loss.device)
        self._train_loss_sum.add_(loss.detach(), alpha=n)
        self._train_count += n
        return loss

    def on_train_epoch_start(self) -> None:
        self._train_loss_sum, self._train_count = None, 0

    def on_train_epoch_end(self) -> None:
        if self._train_loss_sum is not None:  # one metric update per epoch; compute() syncs processes
            self.train_loss.update(self._train_loss_sum / self._train_count, self._train_count)
        self.log("train/loss", self.train_loss.compute())
        self.train_loss.reset()

    def _eval_step(self, batch: tuple[Tensor, Tensor], loss_metric: MeanLoss, acc: MulticlassAccuracy) -> None:
        x, y = batch
        logits = self(x)
        loss_metric.update(F.cross_entropy(logits, y), y.shape[0])
        acc.update(logits, y)

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._eval_step(batch, self.val_loss, self.val_acc)

    def on_validation_epoch_end(self) -> None:
        self.log_dict({"val/loss": self.val_loss.compute(), "val/acc": self.val_acc.compute()})
        self.val_loss.reset()
        self.val_acc.reset()

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._eval_step(batch, self.test_loss, self.test_acc)

    def on_test_epoch_end(self) -> None:
        self.log_dict({"test/loss": self.test_loss.compute(), "test/acc": self.test_acc.compute()})
        self.test_loss.reset()
        self.test_acc.reset()

    def configure_optimizers(self) -> Any:
        optimizer = make_optimizer(
            self.parameters(), self.optimizer_name, self.lr, self.weight_decay, self.momentum, self.fused
        )
        return with_schedule(optimizer, self.lr_schedule, attached_trainer(self))


class StepDecay(torch.optim.lr_scheduler.LRScheduler):
    """The learning rate times ``gamma`` at each of ``fractions`` of a fit's ``total_steps`` (stepped every step).

    Args:
        optimizer: The optimizer.
        total_steps: The fit's optimizer steps; None keeps the rate constant (no Trainer to ask yet).
        fractions: Where the rate drops, as fractions of ``total_steps``.
        gamma: The factor of each drop.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        total_steps: int | None,
        fractions: Sequence[float] = (0.5, 0.75),
        gamma: float = 0.1,
    ) -> None:
        self.total_steps, self.fractions, self.gamma = total_steps, tuple(fractions), gamma
        super().__init__(optimizer)

    def get_lr(self) -> list[float]:  # type: ignore[override]
        total = self.total_steps
        drops = 0 if total is None else sum(self.last_epoch >= round(f * total) for f in self.fractions)
        return [float(base) * self.gamma**drops for base in self.base_lrs]


def with_schedule(optimizer: torch.optim.Optimizer, schedule: LRSchedule, trainer: pl.Trainer | None) -> Any:
    """What ``configure_optimizers`` returns for ``schedule``: the optimizer, or it with its :class:`StepDecay`.

    Raises:
        ValueError: For the step schedule in a fit without an end (``max_steps`` and ``max_epochs`` both -1).
    """
    if schedule == "constant":
        return optimizer
    steps = None if trainer is None else trainer.estimated_stepping_batches
    if steps is not None and not math.isfinite(steps):
        raise ValueError("lr_schedule='step' drops the rate at fractions of a fit's steps: set max_steps or max_epochs")
    total = None if steps is None else int(steps)
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": StepDecay(optimizer, total), "interval": "step"}}


def make_optimizer(
    parameters: Iterable[Tensor],
    name: OptimizerName,
    lr: float,
    weight_decay: float,
    momentum: float,
    fused: bool | None,
) -> torch.optim.Optimizer:
    """The optimizer of :class:`LotteryClassifier` (and of its stacked members) over ``parameters``.

    ``fused=None`` uses torch's fused kernel where every parameter is on a CPU or CUDA device.
    """
    params = list(parameters)
    if fused is None:  # Lightning calls configure_optimizers after moving the model to its device
        fused = bool(params) and all(p.device.type in _FUSED_DEVICES and p.is_floating_point() for p in params)
    fused = fused or None  # else torch's own default (foreach on CUDA): passing False would force per-tensor
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, fused=fused)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=fused)
    return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay, fused=fused)
