"""Scores that rank the weights of an *initial* network, for pruning at initialization.

Pure torch, Lightning-free: a module, the names of the parameters to score and, for the scores
that read data, a loss closure ``loss(module) -> scalar``. Every function returns one score per
weight keyed by parameter name, and :func:`select_by_score` keeps the highest (or lowest) scores
of each pruning pool with given counts, so a pruning-at-initialization mask has exactly the
ticket's density.

* magnitude at initialization: ``|w|``;
* SNIP (Lee, Ajanthan & Torr, ICLR 2019): ``|g * w|``, with ``g`` the gradient of the loss on a
  training batch; the highest scores are kept;
* GraSP (Wang, Zhang & Grosse, ICLR 2020): the published score ``S = -w * Hg``, with ``H`` the
  Hessian and ``g`` the gradient of the loss (``Hg`` by double back-propagation); the weights with
  the *highest* ``S`` are removed, so the lowest are kept. Both reference implementations score the
  cross-entropy of the logits divided by a temperature ``T = 200`` (:data:`GRASP_TEMPERATURE`,
  :func:`cross_entropy_loss`) on a class-balanced sample (:func:`class_balanced_indices`);
* SynFlow (Tanaka, Kunin, Yamins & Ganguli, NeurIPS 2020): ``|w * dR/dw|`` with
  ``R = sum(f(1))``, the output of the network on an all-ones input once every entry of its
  state is replaced by its absolute value (in float64, in evaluation mode); data-free and
  iterative: ``iterations`` rounds, the density of round ``k`` being ``density ** (k / iterations)``
  (the paper's exponential schedule, 100 rounds by default), each round scoring the survivors of
  the one before (nothing revives).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lth_lightning.pruning.magnitude import magnitude_masks

__all__ = [
    "GRASP_TEMPERATURE",
    "Loss",
    "class_balanced_indices",
    "cross_entropy_loss",
    "grasp_scores",
    "hessian_gradient_product",
    "keep_counts",
    "magnitude_scores",
    "select_by_score",
    "snip_scores",
    "synflow_masks",
    "synflow_scores",
]

Loss = Callable[[nn.Module], Tensor]
"""A closure computing the training loss of the module it is given (a scalar with a graph)."""

GRASP_TEMPERATURE = 200.0  # alecwangcq/GraSP's `T=200`; ganguli-lab/Synaptic-Flow's `self.temp = 200`


def cross_entropy_loss(inputs: Tensor, targets: Tensor, temperature: float = 1.0) -> Loss:
    """The closure ``module -> cross_entropy(module(inputs) / temperature, targets)`` (mean over the batch).

    Raises:
        ValueError: If ``temperature`` is not a positive number.
    """
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not temperature > 0:
        raise ValueError(f"The temperature must be a number > 0, got {temperature!r}.")

    def loss(module: nn.Module) -> Tensor:
        device = next((p.device for p in module.parameters()), inputs.device)
        return F.cross_entropy(module(inputs.to(device)) / temperature, targets.to(device))

    return loss


def class_balanced_indices(
    label: Callable[[int], int], length: int, classes: int, per_class: int, generator: torch.Generator
) -> list[int]:
    """``per_class`` examples of each of ``classes`` classes, drawn at random: the references' scoring sample.

    The examples are visited in the order of one random permutation of ``range(length)`` (drawn
    from ``generator``) and each is taken while its class has fewer than ``per_class``, as the
    references take them from a shuffled loader; only the labels visited are read. The indices
    come grouped by class (class 0 first), each class in the order drawn.

    Raises:
        ValueError: If ``per_class`` is not a positive integer, a label is outside ``[0, classes)``, or
            the data has too few examples of a class (the message names the classes).
    """
    if isinstance(per_class, bool) or not isinstance(per_class, int) or per_class < 1:
        raise ValueError(f"The number of examples per class must be an integer >= 1, got {per_class!r}.")
    taken: list[list[int]] = [[] for _ in range(classes)]
    missing = classes
    for index in torch.randperm(length, generator=generator).tolist():
        y = label(index)
        if not 0 <= y < classes:
            raise ValueError(f"Example {index} has label {y}, outside the {classes} classes the network outputs.")
        if len(taken[y]) < per_class:
            taken[y].append(index)
            missing -= len(taken[y]) == per_class
            if missing == 0:
                return [i for group in taken for i in group]
    short = {c: len(t) for c, t in enumerate(taken) if len(t) < per_class}
    raise ValueError(
        f"The training data has fewer than {per_class} examples of class(es) {sorted(short)} "
        f"({', '.join(f'{c}: {n}' for c, n in short.items())}); choose a smaller number per class."
    )


def _weights(module: nn.Module, names: Sequence[str]) -> list[Tensor]:
    params = dict(module.named_parameters())
    missing = [n for n in names if n not in params]
    if missing:
        raise ValueError(f"The module has no parameter(s) {missing}; its parameters are: {', '.join(params)}.")
    return [params[n] for n in names]


def _gradients(value: Tensor, weights: Sequence[Tensor], *, create_graph: bool = False) -> list[Tensor]:
    """d value / d each weight; zeros for a weight the value does not depend on."""
    grads = torch.autograd.grad(value, list(weights), allow_unused=True, create_graph=create_graph)
    return [torch.zeros_like(w) if g is None else g for g, w in zip(grads, weights, strict=True)]


def _scalar_loss(loss: Loss, module: nn.Module) -> Tensor:
    value = loss(module)
    if not isinstance(value, Tensor) or value.numel() != 1 or not value.requires_grad:
        raise ValueError(
            f"The loss closure must return a scalar tensor that depends on the weights, got {type(value).__name__}"
            f"{'' if not isinstance(value, Tensor) else f' of shape {tuple(value.shape)}'}."
        )
    return value.reshape(())


def magnitude_scores(module: nn.Module, names: Sequence[str]) -> dict[str, Tensor]:
    """``|w|`` of each named parameter."""
    return {n: w.detach().abs() for n, w in zip(names, _weights(module, names), strict=True)}


def snip_scores(module: nn.Module, names: Sequence[str], loss: Loss) -> dict[str, Tensor]:
    """SNIP's connection sensitivity ``|g * w|``, with ``g`` the gradient of ``loss(module)``."""
    weights = _weights(module, names)
    grads = _gradients(_scalar_loss(loss, module), weights)
    return {n: (g * w).detach().abs() for n, g, w in zip(names, grads, weights, strict=True)}


def hessian_gradient_product(module: nn.Module, names: Sequence[str], loss: Loss) -> dict[str, Tensor]:
    """``Hg``: the Hessian of ``loss(module)`` with respect to the named parameters times its gradient ``g``.

    Computed as the gradient of ``g . stop_gradient(g)`` (double back-propagation), exactly, not by
    finite differences.
    """
    weights = _weights(module, names)
    grads = _gradients(_scalar_loss(loss, module), weights, create_graph=True)
    inner = sum((g * g.detach()).sum() for g in grads if g.requires_grad)
    if not isinstance(inner, Tensor):  # the loss is linear in every weight: its Hessian is zero
        return {n: torch.zeros_like(w) for n, w in zip(names, weights, strict=True)}
    return {n: h.detach() for n, h in zip(names, _gradients(inner, weights), strict=True)}


def grasp_scores(module: nn.Module, names: Sequence[str], loss: Loss) -> dict[str, Tensor]:
    """GraSP's published score ``S = -w * Hg``; GraSP removes the highest, so keep the lowest."""
    hg = hessian_gradient_product(module, names, loss)
    return {n: -(w.detach() * hg[n]) for n, w in zip(names, _weights(module, names), strict=True)}


def _linearized(module: nn.Module) -> nn.Module:
    """A float64 copy of ``module`` in evaluation mode with every floating entry of its state made non-negative."""
    net = copy.deepcopy(module)
    net.eval()
    net.double()
    with torch.no_grad():
        for value in net.state_dict().values():
            if value.is_floating_point():
                value.abs_()
    return net


def synflow_scores(
    module: nn.Module, names: Sequence[str], input_shape: Sequence[int], masks: Mapping[str, Tensor] | None = None
) -> dict[str, Tensor]:
    """One SynFlow scoring of ``module`` (left unchanged), under ``masks`` (pruned weights score 0).

    Args:
        module: The network at initialization; its ``forward`` takes one input tensor.
        names: The parameters to score.
        input_shape: The shape of one input batch; the scores are those of an all-ones input of one example.
        masks: Boolean masks of the named parameters (all alive when None).
    """
    return _synflow_once(_linearized(module), names, input_shape, None, masks)


def _synflow_once(
    net: nn.Module,
    names: Sequence[str],
    input_shape: Sequence[int],
    absolute: Mapping[str, Tensor] | None,
    masks: Mapping[str, Tensor] | None,
) -> dict[str, Tensor]:
    weights = _weights(net, names)
    if absolute is not None or masks is not None:
        with torch.no_grad():
            for name, w in zip(names, weights, strict=True):
                if absolute is not None:
                    w.copy_(absolute[name])
                if masks is not None:
                    w.mul_(masks[name].to(device=w.device, dtype=w.dtype))
    device = weights[0].device if weights else torch.device("cpu")
    ones = torch.ones((1, *tuple(input_shape)[1:]), dtype=torch.float64, device=device)
    flow = net(ones).sum()
    grads = _gradients(flow, weights)
    return {n: (g * w).detach().abs() for n, g, w in zip(names, grads, weights, strict=True)}


def synflow_masks(
    module: nn.Module,
    groups: Sequence[Sequence[str]],
    keep: Sequence[int],
    input_shape: Sequence[int],
    iterations: int = 100,
    *,
    lowest: bool = False,
) -> dict[str, Tensor]:
    """SynFlow's masks: ``iterations`` rounds of scoring and pruning to exactly ``keep[i]`` weights of pool ``i``.

    Round ``k`` of ``n`` keeps ``round(total * (keep / total) ** (k / n))`` weights of each pool, chosen by
    the highest scores among the survivors of round ``k - 1`` (the lowest with ``lowest``: the inverted
    ablation of Frankle et al. 2021, inverted at every round).

    Raises:
        ValueError: If ``iterations`` is not a positive integer or a count is outside ``[0, pool size]``.
    """
    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 1:
        raise ValueError(f"`iterations` must be an integer >= 1, got {iterations!r}.")
    names = [n for group in groups for n in group]
    net = _linearized(module)
    absolute = {n: w.detach().clone() for n, w in zip(names, _weights(net, names), strict=True)}
    masks = {n: torch.ones(w.shape, dtype=torch.bool, device=w.device) for n, w in absolute.items()}
    totals = [sum(absolute[n].numel() for n in group) for group in groups]
    _check_counts(groups, keep, totals)
    for k in range(1, iterations + 1):
        scores = _synflow_once(net, names, input_shape, absolute, masks)
        counts = [_scheduled(total, count, k / iterations) for total, count in zip(totals, keep, strict=True)]
        masks = select_by_score(scores, groups, counts, alive=masks, lowest=lowest)
    return masks


def _scheduled(total: int, keep: int, progress: float) -> int:
    """SynFlow's exponential schedule: weights of a pool of ``total`` kept ``progress`` of the way to ``keep``."""
    return round(total * (keep / total) ** progress) if total else 0


def _check_counts(groups: Sequence[Sequence[str]], keep: Sequence[int], totals: Sequence[int]) -> None:
    if len(keep) != len(groups):
        raise ValueError(f"One count per pool is needed: {len(groups)} pools, {len(keep)} counts ({list(keep)}).")
    for group, count, total in zip(groups, keep, totals, strict=True):
        if not 0 <= count <= total:
            raise ValueError(f"Pool {list(group)} has {total} weights; cannot keep {count}.")


def keep_counts(masks: Mapping[str, Tensor], groups: Sequence[Sequence[str]]) -> list[int]:
    """How many weights ``masks`` keep in each pool of ``groups``."""
    return [sum(int(masks[n].sum()) for n in group) for group in groups]


def select_by_score(
    scores: Mapping[str, Tensor],
    groups: Sequence[Sequence[str]],
    keep: Sequence[int],
    *,
    alive: Mapping[str, Tensor] | None = None,
    lowest: bool = False,
) -> dict[str, Tensor]:
    """Masks keeping exactly ``keep[i]`` weights of pool ``groups[i]``: the highest scores (or the lowest).

    Scores are ranked within their pool across its tensors, ties by position (earlier tensors, then
    lower indices, survive first), through the same linear-time exact selection as magnitude
    pruning. Signed scores are shifted by the pool's extreme before ranking, which keeps their order
    (two scores closer than float32's resolution at the shift can tie).

    Args:
        scores: A score per weight, keyed by parameter name.
        groups: The pruning pools (names), as the ticket's scope and per-layer rates make them.
        keep: The number of weights each pool keeps.
        alive: Masks of the weights that may be kept (all when None): nothing outside them revives.
        lowest: Keep the lowest scores instead of the highest.

    Raises:
        ValueError: If a count is outside ``[0, alive weights of its pool]`` or a score is NaN or infinite.
    """
    alive = alive if alive is not None else {n: torch.ones_like(s, dtype=torch.bool) for n, s in scores.items()}
    _check_counts(groups, keep, [sum(int(alive[n].sum()) for n in group) for group in groups])
    out: dict[str, Tensor] = {}
    for group, count in zip(groups, keep, strict=True):
        values = {n: scores[n].detach().to(torch.float32) for n in group}
        live = [v[alive[n].to(v.device)] for n, v in values.items()]
        if lowest:
            top = max((float(v.max()) for v in live if v.numel()), default=0.0)
            values = {n: top - v for n, v in values.items()}
        else:
            bottom = min((float(v.min()) for v in live if v.numel()), default=0.0)
            if bottom < 0:
                values = {n: v - bottom for n, v in values.items()}
        out.update(magnitude_masks(values, {n: alive[n] for n in group}, count))
    return {n: out[n] for group in groups for n in group}
