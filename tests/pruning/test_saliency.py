"""Pruning at initialization: each score against an independent reference small enough to check."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lth_lightning.pruning.saliency import (
    grasp_scores,
    hessian_gradient_product,
    keep_counts,
    magnitude_scores,
    select_by_score,
    snip_scores,
    synflow_masks,
    synflow_scores,
)

NAMES = ["0.weight", "2.weight"]


def _net(seed: int = 0, dtype: torch.dtype = torch.float32) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3)).to(dtype)


def _batch(seed: int = 1, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(8, 6, generator=g, dtype=dtype), torch.randint(0, 3, (8,), generator=g)


def _loss(batch):
    x, y = batch
    return lambda module: F.cross_entropy(module(x), y)


def _direct_loss(weights, biases, batch):
    """The network's loss written out by hand, as a function of its weight tensors."""
    x, y = batch
    hidden = torch.tanh(x @ weights[0].T + biases[0])
    return F.cross_entropy(hidden @ weights[1].T + biases[1], y)


def _top_masks(scores: dict[str, torch.Tensor], keep: int, lowest: bool = False) -> dict[str, torch.Tensor]:
    """A reference selection: a stable sort of the pooled scores."""
    flat = torch.cat([scores[n].flatten() for n in scores])
    order = torch.sort(flat if lowest else -flat, stable=True).indices[:keep]
    chosen = torch.zeros(flat.numel(), dtype=torch.bool)
    chosen[order] = True
    out, start = {}, 0
    for name, s in scores.items():
        out[name] = chosen[start : start + s.numel()].reshape(s.shape)
        start += s.numel()
    return out


def test_snip_ranks_exactly_as_the_score_computed_directly_with_autograd():
    net, batch = _net(), _batch()
    weights = [net[0].weight.detach().clone().requires_grad_(), net[2].weight.detach().clone().requires_grad_()]
    grads = torch.autograd.grad(_direct_loss(weights, [net[0].bias, net[2].bias], batch), weights)
    direct = {n: (g * w).abs().detach() for n, g, w in zip(NAMES, grads, weights, strict=True)}
    scores = snip_scores(net, NAMES, _loss(batch))
    assert all(torch.allclose(scores[n], direct[n], rtol=1e-6, atol=0) for n in NAMES)
    masks = select_by_score(scores, [NAMES], [17])
    expected = _top_masks(direct, 17)
    assert all(torch.equal(masks[n], expected[n]) for n in NAMES)
    assert sum(int(m.sum()) for m in masks.values()) == 17


def test_magnitude_at_init_keeps_the_largest_initial_weights_of_each_pool():
    net = _net(3)
    scores = magnitude_scores(net, NAMES)
    masks = select_by_score(scores, [[NAMES[0]], [NAMES[1]]], [7, 4])  # layer-wise: each tensor its own count
    for name, keep in zip(NAMES, (7, 4), strict=True):
        weight = dict(net.named_parameters())[name].detach()
        assert torch.equal(masks[name], _top_masks({name: weight.abs()}, keep)[name])
        assert int(masks[name].sum()) == keep


def test_grasp_hessian_gradient_product_equals_finite_differences():
    net, batch = _net(dtype=torch.float64), _batch(dtype=torch.float64)
    hg = hessian_gradient_product(net, NAMES, _loss(batch))
    weights = [net[0].weight.detach(), net[2].weight.detach()]
    biases = [net[0].bias.detach(), net[2].bias.detach()]

    def gradient(ws):
        ws = [w.clone().requires_grad_() for w in ws]
        return torch.autograd.grad(_direct_loss(ws, biases, batch), ws)

    g = gradient(weights)
    eps = 1e-5
    plus = gradient([w + eps * d for w, d in zip(weights, g, strict=True)])
    minus = gradient([w - eps * d for w, d in zip(weights, g, strict=True)])
    for name, p, m in zip(NAMES, plus, minus, strict=True):
        finite = (p - m) / (2 * eps)
        assert finite.abs().max() > 1e-4  # the product is not trivially zero
        torch.testing.assert_close(hg[name], finite, rtol=1e-6, atol=1e-9)
    scores = grasp_scores(net, NAMES, _loss(batch))
    for name, w in zip(NAMES, weights, strict=True):
        torch.testing.assert_close(scores[name], -w * hg[name])  # the published score, -w * Hg


def test_grasp_keeps_the_lowest_scores_and_signed_scores_rank_exactly():
    net, batch = _net(dtype=torch.float64), _batch(dtype=torch.float64)
    scores = grasp_scores(net, NAMES, _loss(batch))
    assert any(bool((s < 0).any()) for s in scores.values()) and any(bool((s > 0).any()) for s in scores.values())
    masks = select_by_score(scores, [NAMES], [20], lowest=True)
    expected = _top_masks({n: s.float() for n, s in scores.items()}, 20, lowest=True)
    assert all(torch.equal(masks[n], expected[n]) for n in NAMES)


def _two_layer(seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 6, bias=False), nn.ReLU(), nn.Linear(6, 3, bias=False))


def _synflow_by_hand(w1: torch.Tensor, w2: torch.Tensor, keep: int, iterations: int) -> list[torch.Tensor]:
    """SynFlow on a two-layer network written out: R = 1' |W2| |W1| 1, so dR/dW1[i, j] = sum_k |W2[k, i]|
    and dR/dW2[k, i] = sum_j |W1[i, j]|; the score is |w| times that; the pool keeps total*(keep/total)^(k/n)."""
    a1, a2 = w1.abs().double(), w2.abs().double()
    m1, m2 = torch.ones_like(a1, dtype=torch.bool), torch.ones_like(a2, dtype=torch.bool)
    total = a1.numel() + a2.numel()
    for k in range(1, iterations + 1):
        v1, v2 = a1 * m1, a2 * m2
        s1 = v1 * v2.sum(0)[:, None]
        s2 = v2 * v1.sum(1)[None, :]
        count = round(total * (keep / total) ** (k / iterations))
        flat = torch.cat([torch.where(m1, s1, -1.0).flatten(), torch.where(m2, s2, -1.0).flatten()])
        chosen = torch.zeros_like(flat, dtype=torch.bool)
        chosen[torch.sort(-flat.float(), stable=True).indices[:count]] = True
        m1, m2 = chosen[: a1.numel()].reshape(a1.shape), chosen[a1.numel() :].reshape(a2.shape)
    return [m1, m2]


@pytest.mark.parametrize("iterations", [1, 10])
def test_synflow_equals_a_direct_implementation_on_a_two_layer_network(iterations):
    net = _two_layer(4)
    masks = synflow_masks(net, [NAMES], [9], (5, 4), iterations)
    expected = _synflow_by_hand(net[0].weight.detach(), net[2].weight.detach(), 9, iterations)
    assert all(torch.equal(masks[n], e) for n, e in zip(NAMES, expected, strict=True))
    assert sum(int(m.sum()) for m in masks.values()) == 9
    # The module itself is left as it was (signs, dtype, mode).
    assert net[0].weight.dtype == torch.float32 and bool((net[0].weight < 0).any()) and net.training


def test_synflow_is_data_independent_and_leaves_pruned_weights_pruned():
    net = _net(5)
    once = synflow_scores(net, NAMES, (8, 6))
    again = synflow_scores(net, NAMES, (64, 6))  # any batch: only the input's shape is read
    assert all(torch.equal(once[n], again[n]) for n in NAMES)
    alive = {n: torch.rand(s.shape, generator=torch.Generator().manual_seed(1)) > 0.5 for n, s in once.items()}
    masked = synflow_scores(net, NAMES, (8, 6), alive)
    assert all(bool((masked[n][~alive[n]] == 0).all()) for n in NAMES)
    groups = [[NAMES[0]], [NAMES[1]]]
    masks = synflow_masks(net, groups, [5, 4], (8, 6), iterations=20)
    assert [int(masks[n].sum()) for n in NAMES] == [5, 4]


def test_selection_never_revives_and_refuses_bad_counts():
    scores = {"a": torch.tensor([5.0, 4.0, 3.0, 2.0]), "b": torch.tensor([[9.0, 1.0]])}
    alive = {"a": torch.tensor([False, True, True, True]), "b": torch.tensor([[False, True]])}
    masks = select_by_score(scores, [["a", "b"]], [2], alive=alive)
    assert masks["a"].tolist() == [False, True, True, False] and masks["b"].tolist() == [[False, False]]
    assert keep_counts(masks, [["a"], ["b"]]) == [2, 0]
    with pytest.raises(ValueError, match=r"Pool \['a', 'b'\] has 4 weights; cannot keep 5"):
        select_by_score(scores, [["a", "b"]], [5], alive=alive)
    with pytest.raises(ValueError, match=r"One count per pool is needed: 1 pools, 2 counts \(\[1, 1\]\)"):
        select_by_score(scores, [["a", "b"]], [1, 1])
    with pytest.raises(ValueError, match="`iterations` must be an integer >= 1, got 0"):
        synflow_masks(_net(), [NAMES], [3], (2, 6), iterations=0)
    with pytest.raises(ValueError, match=r"The module has no parameter\(s\) \['fc.weight'\]"):
        snip_scores(_net(), ["fc.weight"], _loss(_batch()))
    with pytest.raises(ValueError, match="must return a scalar tensor that depends on the weights, got float"):
        snip_scores(_net(), NAMES, lambda module: 1.0)  # type: ignore[arg-type,return-value]
