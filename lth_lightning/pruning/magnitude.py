"""Pure pruning math: masks in, masks out.

Nothing here imports Lightning or touches a module. Every function takes tensors keyed by
parameter name and returns new boolean masks keyed the same way, so the functions can be
unit-tested on hand-made tensors and reused outside of Lightning.

All functions accept an optional number of leading *member* dimensions (``member_dims``):
with ``member_dims=1`` each tensor has shape ``(members, *param_shape)`` and every member is
pruned independently, in one vectorized call. This is how several tickets can be trained at
once in one stacked model.

Conventions:

* A mask is a ``torch.bool`` tensor of the parameter's shape; ``True`` means *alive*.
* Pruning only ever removes alive weights: masks only shrink, pruned weights never revive.
* Ties in magnitude are broken deterministically by position (earlier tensors in the mapping,
  then lower flat index, survive first), so every process computes the same masks.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from lth_lightning.pruning.selection import DEFAULT_CHUNK, keep_largest

Scope = Literal["global", "layerwise"]

__all__ = [
    "PruningGroup",
    "SparsityReport",
    "TensorSparsity",
    "apply_masks_",
    "keep_count",
    "magnitude_masks",
    "mask_overlap",
    "match_names",
    "plan_groups",
    "prune",
    "random_masks",
    "sparsity_report",
]


def _check_amount(amount: float, what: str = "amount") -> float:
    if isinstance(amount, bool) or not isinstance(amount, (int, float)):
        raise TypeError(f"`{what}` must be a float in (0, 1), got {amount!r}.")
    if not (0.0 < float(amount) < 1.0) or math.isnan(float(amount)):
        raise ValueError(f"`{what}` must be in the open interval (0, 1), got {amount!r}.")
    return float(amount)


def _check_member_dims(tensor: Tensor, member_dims: int, name: str) -> None:
    if member_dims < 0:
        raise ValueError(f"`member_dims` must be >= 0, got {member_dims}.")
    if tensor.dim() < member_dims:
        raise ValueError(f"Tensor {name!r} has {tensor.dim()} dimensions, fewer than member_dims={member_dims}.")


def _rows(tensor: Tensor, member_dims: int) -> Tensor:
    """View ``tensor`` as ``(members, n)`` with all member dimensions folded into one."""
    members = math.prod(tensor.shape[:member_dims])
    return tensor.reshape(members, -1)


def _check_same_keys(weights: Mapping[str, Tensor], masks: Mapping[str, Tensor]) -> None:
    if set(weights) != set(masks):
        missing = sorted(set(weights) - set(masks))
        extra = sorted(set(masks) - set(weights))
        raise KeyError(f"Weights and masks must have the same names; missing masks for {missing}, extra masks {extra}.")
    for name, weight in weights.items():
        if masks[name].shape != weight.shape:
            raise ValueError(
                f"Mask for {name!r} has shape {tuple(masks[name].shape)}, "
                f"but the weight has shape {tuple(weight.shape)}."
            )


def keep_count(total: int | Tensor, amount: float, rounds: int) -> int | Tensor:
    """How many of ``total`` weights survive ``rounds`` rounds of pruning ``amount`` of the alive ones.

    The count is ``round(total * (1 - amount) ** rounds)``, computed from the total rather than
    round by round, so the density after ``r`` rounds is ``(1 - amount) ** r`` to the rounding of
    one weight, without accumulating one rounding error per round.

    Args:
        total: Number of prunable weights (an int, or an integer tensor for several members).
        amount: Fraction of the alive weights removed per round, in (0, 1).
        rounds: Number of pruning rounds applied so far, >= 0.

    Returns:
        The number of weights to keep, of the same kind as ``total``.
    """
    amount = _check_amount(amount)
    if rounds < 0:
        raise ValueError(f"`rounds` must be >= 0, got {rounds}.")
    factor = (1.0 - amount) ** rounds
    if isinstance(total, Tensor):
        return torch.round(total.to(torch.float64) * factor).to(torch.long)
    return round(total * factor)


def _keep_per_row(keep: int | Tensor, rows: int, what: str) -> list[int]:
    counts = torch.as_tensor(keep, dtype=torch.long).cpu().expand(rows)
    if bool((counts < 0).any()):
        raise ValueError(f"`{what}` must be >= 0, got {keep}.")
    return [int(c) for c in counts]


def magnitude_masks(
    weights: Mapping[str, Tensor],
    masks: Mapping[str, Tensor],
    keep: int | Tensor,
    *,
    member_dims: int = 0,
    chunk: int = DEFAULT_CHUNK,
) -> dict[str, Tensor]:
    """Keep the ``keep`` largest-magnitude alive weights pooled over all tensors given.

    Pass a single tensor for layer-wise pruning, several for global pruning. The selection is
    exact and linear in time (:func:`~lth_lightning.pruning.selection.keep_largest`: no sort), and the
    only memory it needs beyond the new masks is a few buffers of ``chunk`` weights, on the
    weights' device, whatever the tensors' sizes.

    Args:
        weights: Tensors whose magnitudes rank the weights, keyed by parameter name.
        masks: Current boolean masks of the same names and shapes (on any device).
        keep: Number of weights to keep in the pool, per member (an int, or a tensor with one
            count per member). Clipped to the number of weights alive, so nothing revives.
        member_dims: Number of leading member dimensions pruned independently.
        chunk: Weights read per step (bounds the working memory).

    Returns:
        New boolean masks, a subset of ``masks``, on the masks' devices.

    Raises:
        ValueError: If an alive weight is NaN or infinite, if ``keep`` is negative, or if shapes disagree.
    """
    _check_same_keys(weights, masks)
    if not weights:
        return {}
    names = list(weights)
    for name in names:
        _check_member_dims(weights[name], member_dims, name)
    rows = math.prod(weights[names[0]].shape[:member_dims])
    counts = _keep_per_row(keep, rows, "keep")
    values = [_rows(weights[n].detach(), member_dims) for n in names]
    alive = [_rows(masks[n].to(torch.bool), member_dims) for n in names]
    out = {n: torch.empty(masks[n].shape, dtype=torch.bool, device=masks[n].device) for n in names}
    flat_out = [_rows(out[n], member_dims) for n in names]
    for r, count in enumerate(counts):
        rows_out = [o[r] for o in flat_out]
        keep_largest([v[r] for v in values], [a[r] for a in alive], count, names=names, chunk=chunk, out=rows_out)
    return out


def random_masks(
    masks: Mapping[str, Tensor],
    keep: Mapping[str, int | Tensor],
    *,
    generator: torch.Generator | None = None,
    member_dims: int = 0,
) -> dict[str, Tensor]:
    """Keep a uniformly random subset of the alive weights of each tensor, with given counts.

    This is the *random pruning* control: give it the per-tensor counts of the magnitude masks
    (:func:`sparsity_report` or ``mask.sum()``) and it returns masks with the same layer sizes.
    Each alive weight draws a uniform score and the highest scores survive, selected in linear
    time; the draw is one tensor at a time, so the working memory is 4 bytes per weight of the
    largest tensor.

    Args:
        masks: Current boolean masks keyed by parameter name.
        keep: Number of weights to keep per tensor (per member), keyed like ``masks``.
            Clipped to the number alive.
        generator: Random generator for reproducible draws (on the masks' device).
        member_dims: Number of leading member dimensions pruned independently.

    Returns:
        New boolean masks, each a subset of the corresponding input mask.
    """
    if set(keep) != set(masks):
        raise KeyError(f"`keep` must give a count for every mask; got {sorted(keep)}, masks {sorted(masks)}.")
    out: dict[str, Tensor] = {}
    for name, mask in masks.items():
        _check_member_dims(mask, member_dims, name)
        alive = _rows(mask.to(torch.bool), member_dims)
        counts = _keep_per_row(keep[name], alive.shape[0], f"keep[{name!r}]")
        noise = torch.rand(alive.shape, generator=generator, device=alive.device)
        new = torch.empty_like(alive)
        for r, count in enumerate(counts):
            keep_largest([noise[r]], [alive[r]], count, names=[name], out=[new[r]])
        out[name] = new.reshape(mask.shape)
    return out


@dataclass(frozen=True)
class PruningGroup:
    """Tensors pruned together as one pool, at one rate.

    Attributes:
        names: Parameter names in the pool.
        amount: Fraction of the alive weights removed per round.
    """

    names: tuple[str, ...]
    amount: float


def match_names(patterns: Iterable[str], names: Sequence[str], what: str = "parameters") -> list[str]:
    """Resolve exact names or glob patterns against ``names``, keeping the order of ``names``.

    Raises:
        ValueError: If a pattern matches nothing; the message lists the names that exist.
    """
    chosen: set[str] = set()
    for pattern in patterns:
        hits = [n for n in names if n == pattern or fnmatch.fnmatchcase(n, pattern)]
        if not hits:
            raise ValueError(
                f"`{what}` entry {pattern!r} matches no parameter. Available: {', '.join(names) or '(none)'}."
            )
        chosen.update(hits)
    return [n for n in names if n in chosen]


def plan_groups(
    names: Sequence[str],
    amount: float,
    scope: Scope = "global",
    rates: Mapping[str, float] | None = None,
) -> list[PruningGroup]:
    """Split prunable tensors into pools, each pruned at one rate.

    With ``scope="global"`` all tensors without a rate override share one pool (the smallest
    magnitudes across layers go first); with ``"layerwise"`` each tensor is its own pool. A
    tensor with an override in ``rates`` (exact name or glob pattern) is always its own pool,
    pruned at its own rate, as Frankle & Carbin prune the output layer at half the rate.

    Raises:
        ValueError: For an unknown scope, a rate outside (0, 1), or a pattern matching nothing.
    """
    if scope not in ("global", "layerwise"):
        raise ValueError(f"`scope` must be 'global' or 'layerwise', got {scope!r}.")
    amount = _check_amount(amount)
    overrides: dict[str, float] = {}
    for pattern, rate in (rates or {}).items():
        rate = _check_amount(rate, f"rates[{pattern!r}]")
        for name in match_names([pattern], names, "rates"):
            overrides[name] = rate
    groups: list[PruningGroup] = []
    pooled = [n for n in names if n not in overrides]
    if scope == "global" and pooled:
        groups.append(PruningGroup(tuple(pooled), amount))
    for name in names:
        if name in overrides:
            groups.append(PruningGroup((name,), overrides[name]))
        elif scope == "layerwise":
            groups.append(PruningGroup((name,), amount))
    return groups


def prune(
    weights: Mapping[str, Tensor],
    masks: Mapping[str, Tensor],
    amount: float,
    *,
    scope: Scope = "global",
    rates: Mapping[str, float] | None = None,
    rounds: int | None = None,
    member_dims: int = 0,
) -> dict[str, Tensor]:
    """One round of L1 magnitude pruning.

    Args:
        weights: Trained weights keyed by parameter name.
        masks: Current masks (all ``True`` before the first round).
        amount: Fraction of the *alive* weights to remove, in (0, 1).
        scope: ``"global"`` (one pool across tensors) or ``"layerwise"``.
        rates: Per-parameter overrides of ``amount`` (names or glob patterns).
        rounds: If given, the number of rounds this call completes: each pool then keeps exactly
            ``round(total * (1 - amount) ** rounds)`` weights (no drift from rounding per round).
            If ``None``, ``round((1 - amount) * alive)`` weights of each pool are kept.
        member_dims: Number of leading member dimensions pruned independently.

    Returns:
        New masks keyed by parameter name, each a subset of the old one.
    """
    _check_same_keys(weights, masks)
    if rounds is not None and rounds < 1:
        raise ValueError(f"`rounds` must be >= 1 when given, got {rounds}.")
    out: dict[str, Tensor] = {}
    for group in plan_groups(list(weights), amount, scope, rates):
        group_masks = {n: masks[n] for n in group.names}
        if rounds is None:
            alive = sum(torch.count_nonzero(_rows(m, member_dims), dim=1) for m in group_masks.values())
            keep: int | Tensor = torch.round(torch.as_tensor(alive).to(torch.float64) * (1 - group.amount)).long()
        else:
            total = sum(_rows(m, member_dims).shape[1] for m in group_masks.values())
            keep = keep_count(total, group.amount, rounds)
        out.update(magnitude_masks({n: weights[n] for n in group.names}, group_masks, keep, member_dims=member_dims))
    return {name: out[name] for name in weights}


@torch.no_grad()
def apply_masks_(tensors: Mapping[str, Tensor], masks: Mapping[str, Tensor]) -> None:
    """Zero, in place, the entries of each tensor whose mask is ``False``."""
    for name, mask in masks.items():
        tensor = tensors[name]
        tensor.mul_(mask.to(device=tensor.device, dtype=tensor.dtype))


@dataclass(frozen=True)
class TensorSparsity:
    """Alive and total weights of one tensor."""

    name: str
    alive: int
    total: int

    @property
    def density(self) -> float:
        """Fraction of weights alive."""
        return self.alive / self.total if self.total else 0.0


@dataclass(frozen=True)
class SparsityReport:
    """Per-tensor and global counts of alive weights.

    Attributes:
        tensors: One entry per mask, in the masks' order.
    """

    tensors: tuple[TensorSparsity, ...]

    @property
    def alive(self) -> int:
        """Alive weights over all tensors."""
        return sum(t.alive for t in self.tensors)

    @property
    def total(self) -> int:
        """Prunable weights over all tensors."""
        return sum(t.total for t in self.tensors)

    @property
    def density(self) -> float:
        """Global fraction of weights alive."""
        return self.alive / self.total if self.total else 0.0

    def as_dict(self) -> dict[str, float]:
        """Densities keyed by tensor name, plus ``"global"``."""
        out = {t.name: t.density for t in self.tensors}
        out["global"] = self.density
        return out


def sparsity_report(masks: Mapping[str, Tensor]) -> SparsityReport:
    """Count alive and total weights per tensor and globally."""
    return SparsityReport(
        tuple(TensorSparsity(name, int(torch.count_nonzero(mask)), mask.numel()) for name, mask in masks.items())
    )


def mask_overlap(a: Mapping[str, Tensor], b: Mapping[str, Tensor]) -> dict[str, float]:
    """Jaccard index of the surviving weights, per tensor: ``|a & b| / |a | b|`` (1.0 when both are empty).

    Between consecutive rounds of one ticket the masks are nested, so this is the fraction of a
    layer's survivors that survive the next round; between two seeds' tickets at one density
    ``d``, independent random masks would give about ``d / (2 - d)``.

    Raises:
        KeyError: If ``a`` and ``b`` do not name the same tensors.
    """
    if set(a) != set(b):
        raise KeyError(f"Masks to compare must name the same tensors; got {sorted(a)} and {sorted(b)}.")
    out = {}
    for name, mask in a.items():
        x, y = mask.to(torch.bool), b[name].to(torch.bool)
        union = int((x | y).sum())
        out[name] = int((x & y).sum()) / union if union else 1.0
    return out
