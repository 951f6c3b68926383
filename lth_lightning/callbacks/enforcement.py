"""How a fit keeps pruned weights at zero: masked gradients, weights re-masked after every step, or both.

:func:`choose_enforcement` picks the cheapest rule that trains the survivors exactly as masked gradients
would; :class:`MaskEnforcer` binds a fit's masked parameters and installs it (hooks removed at the fit's end).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any, Literal

import lightning.pytorch as pl
import torch
from torch import Tensor
from torch.utils.hooks import RemovableHandle

from lth_lightning.compat import multiply_all_

__all__ = ["Enforcement", "MaskEnforcer", "choose_enforcement", "gradient_clipping", "zero_pruned_"]

Enforcement = Literal["weights", "gradients", "gradients+weights"]

# Optimizers whose update of a weight depends only on that weight's own gradient and state: a pruned
# weight's gradient and optimizer state never reach a surviving weight, so masking the weights right
# after each step leaves the survivors' updates exactly as masking the gradients before it would.
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


def _masked_grad(mask: Tensor, grad: Tensor) -> Tensor:
    return grad * mask  # in the gradient's dtype or uint8: the product keeps the gradient's dtype


_CPU_CHUNK = 1 << 18  # elements per multiply on a CPU, where a mask is converted to the tensor's dtype first
# Up to this many masked weights, masks are kept in the parameters' dtype (at most 4 MiB in float32):
# a multiply then converts nothing, which is what a small model's step time notices. Above it,
# one byte per weight, which is what a large model's memory notices; the multiply costs the same there.
_SMALL_MASKS = 1 << 20


def zero_pruned_(tensors: Sequence[Tensor | None], masks: Sequence[Tensor]) -> None:
    """Multiply, in place, each tensor by its mask (1 alive, 0 pruned; in its dtype or ``uint8``); skip None.

    Masks in the tensors' dtype (a small model's) are applied in one fused call. On a CPU, torch
    converts a ``uint8`` mask to the tensor's dtype before multiplying, so a large tensor is
    multiplied in chunks: the conversion stays a small buffer rather than a tensor-sized temporary
    per step (as fast as a float mask there, and 4x faster than ``torch.where``). A GPU kernel
    converts on the fly: one multiply per tensor. A mask on another device than its tensor (a
    module Lightning moved back to the CPU before ``on_fit_end``) is copied there first. Parameters
    need ``torch.no_grad()`` around it.
    """
    pairs = [
        (t, m if m.device == t.device else m.to(t.device)) for t, m in zip(tensors, masks, strict=True) if t is not None
    ]
    same = [(t, m) for t, m in pairs if m.dtype == t.dtype]
    if same:
        multiply_all_([t for t, _ in same], [m for _, m in same])
    for tensor, mask in (pair for pair in pairs if pair[1].dtype != pair[0].dtype):
        chunked = tensor.device.type == "cpu" and tensor.numel() > _CPU_CHUNK
        if chunked and tensor.is_contiguous() and mask.is_contiguous():
            for part, bits in zip(tensor.view(-1).split(_CPU_CHUNK), mask.view(-1).split(_CPU_CHUNK), strict=True):
                part.mul_(bits)
        else:
            tensor.mul_(mask)


def gradient_clipping(trainer: pl.Trainer, pl_module: pl.LightningModule) -> str | None:
    """What clips this fit's gradients (reading them across weights), or None when nothing may."""
    value = trainer.gradient_clip_val
    if value:  # None or 0: Lightning clips nothing
        algorithm = getattr(trainer.gradient_clip_algorithm, "value", trainer.gradient_clip_algorithm) or "norm"
        return f"gradient clipping (gradient_clip_val={value}, by {algorithm})"
    own = type(pl_module).configure_gradient_clipping is not pl.LightningModule.configure_gradient_clipping
    if own and not getattr(pl_module, "clips_gradients_only_when_asked", False):
        return f"{type(pl_module).__name__}.configure_gradient_clipping (it may clip whatever the Trainer says)"
    return None


def choose_enforcement(
    optimizers: Sequence[torch.optim.Optimizer], automatic: bool, clipping: str | None
) -> tuple[Enforcement, str]:
    """How a fit keeps pruned weights at zero, and why (a clause that completes a sentence).

    ``"weights"``: re-masked right after every optimizer step, gradients left as computed; only with
    torch's element-wise optimizers, automatic optimization and no gradient clipping, where a pruned
    weight's gradient and optimizer state never reach a surviving weight (and where zeroing gradients
    would leave Adam with exact-zero second moments, whose ``sqrt`` is slow on some CPUs).
    ``"gradients"``: gradients masked before every step (automatic optimization) or as backward
    computes them (manual optimization). ``"gradients+weights"``: both, for any other optimizer.
    """
    if not optimizers:
        return "gradients", "the module configures no optimizer"
    other = sorted({type(o).__name__ for o in optimizers if type(o) not in _ELEMENTWISE_OPTIMIZERS})
    if other:
        return "gradients+weights", (
            f"{', '.join(other)} is not one of torch's element-wise optimizers, so gradients are masked and the "
            "weights are re-masked after every step"
        )
    if not automatic:
        return "gradients", "manual optimization may step any way, so gradients are masked as backward computes them"
    if clipping is not None:
        return "gradients", f"{clipping} reads every gradient, so gradients are masked before every step"
    names = ", ".join(sorted({type(o).__name__ for o in optimizers}))
    return "weights", (
        f"{names} is element-wise and gradients are not clipped, so a pruned weight's gradient reaches no surviving "
        "weight: the weights are re-masked right after every step, gradients left as computed"
    )


class MaskEnforcer:
    """A fit's masked parameters, and what keeps them at zero whatever steps them.

    Attributes:
        enforcement: The last bound fit's rule and the reason for it (None before any fit).
    """

    def __init__(self) -> None:
        self.enforcement: tuple[Enforcement, str] | None = None
        # Parallel lists, built once per fit, so that each step's masking is one fused call; dropped at its end.
        self._params: list[Tensor] = []
        self._device_masks: list[Tensor] = []  # on each parameter's device: uint8 views, or its dtype when small
        self._handles: list[RemovableHandle] = []
        self._grad_hooks = False

    @property
    def bound(self) -> bool:
        """Whether a fit's parameters are bound."""
        return bool(self._params)

    def bind(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, masks: Mapping[str, Tensor], names: Sequence[str]
    ) -> None:
        """Bind this fit's masked parameters (of ``names``), zero their pruned weights and install the rule."""
        params = dict(pl_module.named_parameters())
        active = [n for n in names if not bool(masks[n].all())]  # a dense round does no masking work
        self._params = [params[n] for n in active]
        if sum(p.numel() for p in self._params) <= _SMALL_MASKS:
            self._device_masks = [masks[n].to(device=params[n].device, dtype=params[n].dtype) for n in active]
        else:  # one byte per weight; on a CPU module the state's own masks, not copies
            self._device_masks = [masks[n].to(params[n].device).view(torch.uint8) for n in active]
        self.enforce()
        optimizers = [getattr(o, "optimizer", o) for o in trainer.optimizers]
        automatic = pl_module.automatic_optimization
        self.enforcement = choose_enforcement(optimizers, automatic, gradient_clipping(trainer, pl_module))
        if not active:
            return
        self._grad_hooks = self.enforcement[0] != "weights" and not automatic
        if self._grad_hooks:  # every backward, whoever then steps: LightningOptimizer or the raw optimizer
            for param, mask in zip(self._params, self._device_masks, strict=True):
                self._handles.append(param.register_hook(partial(_masked_grad, mask)))
        if self.enforcement[0] != "gradients":  # right after every step, whoever calls it
            for optimizer in optimizers:
                self._handles.append(optimizer.register_step_post_hook(self._after_step))

    def before_step(self) -> None:
        """Zero the pruned weights' gradients, where the rule masks them before the optimizer steps."""
        masks_gradients = self.enforcement is not None and self.enforcement[0] != "weights"
        if self._params and masks_gradients and not self._grad_hooks:
            zero_pruned_([p.grad for p in self._params], self._device_masks)

    def enforce(self) -> None:
        """Zero the pruned weights now (one multiply per masked tensor); nothing when no fit is bound."""
        with torch.no_grad():  # the parameters are leaves that require gradients
            zero_pruned_(self._params, self._device_masks)

    def release(self) -> None:
        """Remove the hooks and drop the fit's references (no leaks across fits)."""
        for handle in self._handles:
            handle.remove()
        self._handles, self._params, self._device_masks = [], [], []
        self._grad_hooks = False

    def _after_step(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        self.enforce()
