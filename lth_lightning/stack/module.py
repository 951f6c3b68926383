"""``StackedClassifier``: K members of a :class:`~lth_lightning.LotteryClassifier` trained as one network."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import Metric

from lth_lightning.compat import DirectHookName, attached_trainer
from lth_lightning.models.classifier import LotteryClassifier, make_optimizer, with_schedule
from lth_lightning.stack.network import StackedForward, StackingError, stack_network

__all__ = ["MemberMetrics", "StackedClassifier"]


class MemberMetrics(Metric):
    """Per member: the example-weighted mean loss and the accuracy over a whole split, summed across processes."""

    full_state_update = False
    loss: Tensor
    correct: Tensor
    count: Tensor

    def __init__(self, members: int) -> None:
        super().__init__()
        self.add_state("loss", default=torch.zeros(members, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("correct", default=torch.zeros(members, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, losses: Tensor, logits: Tensor, target: Tensor) -> None:
        """Add a batch: each member's mean loss ``(K,)`` and logits ``(K, B, C)`` for the targets ``(B,)``."""
        n = target.shape[0]
        self.loss.add_(losses.detach(), alpha=n)
        self.correct.add_((logits.detach().argmax(-1) == target).sum(-1))
        self.count.add_(n)

    def compute(self) -> tuple[Tensor, Tensor]:
        """Each member's mean loss and accuracy (float32)."""
        return (self.loss / self.count).float(), (self.correct / self.count).float()


def member_losses(logits: Tensor, target: Tensor) -> Tensor:
    """Each member's mean cross-entropy ``(K,)`` for logits ``(K, B, C)`` and targets ``(B,)`` (shared) or
    ``(K, B)`` (each member's own).

    Computed on ``(K, C, B)``, the layout stacked linear layers produce, without a copy.
    """
    members, batch = logits.shape[:2]
    return F.cross_entropy(logits.transpose(1, 2), target.expand(members, batch), reduction="none").mean(1)


@torch.no_grad()
def _check_per_member(net: nn.Module, forward: StackedForward, probe: Tensor) -> None:
    """Refuse a stacked network whose members, each given its own copy of ``probe``, answer otherwise than on
    the shared ``probe``.

    Raises:
        StackingError: Naming the network.
    """
    shared = forward(net, probe)
    own = forward.per_member(net, probe.expand(shared.shape[0], *probe.shape))
    if own.shape != shared.shape or not torch.allclose(own, shared, rtol=1e-4, atol=1e-5):
        raise StackingError(
            f"{type(net).__name__}: stacked members reading their own batches answer otherwise than on a shared one. "
            "Train it with stack=false (--lottery.stack false), or with one data order (--lottery.data_order fixed)."
        )


class StackedClassifier(DirectHookName, pl.LightningModule):
    """K members of a :class:`~lth_lightning.LotteryClassifier`, trained in one fit as one network.

    The network is the template's, every parameter stacked along a leading member dimension
    (:func:`~lth_lightning.stack.network.stack_network`), so its names are the template's
    (``net.layers.0.weight``, now ``(K, ...)``). The loss is the sum of the members' mean losses,
    so each member's gradient is the one it would have alone; with the element-wise optimizers
    (Adam, AdamW, SGD) each member is updated as if alone; gradient clipping by norm is per member.
    Every metric is logged per member, under ``<member>/<name>`` (``seed_0/ticket/val/loss``).

    Args:
        template: The classifier every member is (its network, optimizer and settings).
        states: Each member's state (the template's ``state_dict`` names), in member order.
        members: Each member's name, in the same order.
        probe: A batch of inputs, to check that the stacked network gives every member its own output.
        member_batches: Each training batch holds every member's own batch, ``(K, B, ...)`` inputs and ``(K, B)``
            targets (members of different data orders: :class:`~lth_lightning.stack.batches.MemberBatches`);
            evaluation batches are shared.
    """

    clips_gradients_only_when_asked = True  # its configure_gradient_clipping clips only at gradient_clip_val

    def __init__(
        self,
        template: LotteryClassifier,
        states: Sequence[Mapping[str, Tensor]],
        members: Sequence[str],
        probe: Tensor,
        member_batches: bool = False,
    ) -> None:
        super().__init__()
        if len(states) != len(members) or not members:
            raise ValueError(f"Give one state per member: {len(states)} states for {len(members)} members.")
        self.members = list(members)
        net_states = [{k.removeprefix("net."): v for k, v in state.items() if k.startswith("net.")} for state in states]
        self.net, self.stacked_forward = stack_network(template.net, net_states, probe)
        self.member_batches = member_batches
        if member_batches:
            _check_per_member(self.net, self.stacked_forward, probe)
        self.settings = (template.optimizer_name, template.lr, template.weight_decay, template.momentum, template.fused)
        self.lr_schedule = template.lr_schedule
        self.train_loss: Tensor | None = None
        self.train_count = 0
        self.val_metrics = MemberMetrics(len(members))
        self.test_metrics = MemberMetrics(len(members))

    def forward(self, x: Tensor) -> Tensor:
        """Every member's logits, ``(K, B, C)``."""
        return self.stacked_forward(self.net, x)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, y = batch
        logits = self.stacked_forward.per_member(self.net, x) if self.member_batches else self(x)
        losses = member_losses(logits, y)
        if self.train_loss is None:
            self.train_loss = torch.zeros(len(self.members), dtype=torch.float64, device=losses.device)
        self.train_loss.add_(losses.detach(), alpha=y.shape[-1])
        self.train_count += y.shape[-1]
        return losses.sum()

    def on_train_epoch_start(self) -> None:
        self.train_loss, self.train_count = None, 0

    def on_train_epoch_end(self) -> None:
        if self.train_loss is None:
            return
        losses = self.train_loss / self.train_count
        self.log_dict({f"{m}/train/loss": losses[k].float() for k, m in enumerate(self.members)}, sync_dist=True)

    def _eval_step(self, batch: tuple[Tensor, Tensor], metrics: MemberMetrics) -> None:
        x, y = batch
        logits = self(x)
        metrics.update(member_losses(logits, y), logits, y)

    def _log_eval(self, stage: str, metrics: MemberMetrics) -> None:
        losses, accuracies = (value.reshape(-1) for value in metrics.compute())  # torchmetrics squeezes one member
        logged = {}
        for k, member in enumerate(self.members):
            logged[f"{member}/{stage}/loss"] = losses[k]
            logged[f"{member}/{stage}/acc"] = accuracies[k]
        self.log_dict(logged)
        metrics.reset()

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._eval_step(batch, self.val_metrics)

    def on_validation_epoch_end(self) -> None:
        self._log_eval("val", self.val_metrics)

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._eval_step(batch, self.test_metrics)

    def on_test_epoch_end(self) -> None:
        self._log_eval("test", self.test_metrics)

    def configure_optimizers(self) -> Any:
        name, lr, weight_decay, momentum, fused = self.settings
        optimizer = make_optimizer(self.parameters(), name, lr, weight_decay, momentum, fused)
        return with_schedule(optimizer, self.lr_schedule, attached_trainer(self))

    def configure_gradient_clipping(
        self,
        optimizer: torch.optim.Optimizer,
        gradient_clip_val: float | None = None,
        gradient_clip_algorithm: str | None = None,
    ) -> None:
        """Clip by norm per member (as ``clip_grad_norm_`` would for each alone); by value as usual."""
        if gradient_clip_val is None or gradient_clip_algorithm == "value":
            self.clip_gradients(optimizer, gradient_clip_val, gradient_clip_algorithm)
            return
        grads = [p.grad for p in self.parameters() if p.grad is not None]
        if not grads:
            return
        squares = torch.stack([g.detach().pow(2).flatten(1).sum(1) for g in grads]).sum(0)
        scale = (float(gradient_clip_val) / (squares.sqrt() + 1e-6)).clamp(max=1.0)
        for grad in grads:
            grad.mul_(scale.view(-1, *([1] * (grad.dim() - 1))).to(grad.dtype))
