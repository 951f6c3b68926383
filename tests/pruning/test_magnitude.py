"""Pure pruning math, tested without Lightning."""

import math

import pytest
import torch

from lth_lightning.pruning.magnitude import (
    apply_masks_,
    keep_count,
    magnitude_masks,
    match_names,
    plan_groups,
    prune,
    random_masks,
    sparsity_report,
)


def _weights(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "a.weight": torch.randn(37, 11, generator=g),
        "b.weight": torch.randn(5, 3, 3, 3, generator=g) * 0.1,
        "c.weight": torch.randn(7, 13, generator=g) * 3,
    }


def _ones(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: torch.ones_like(v, dtype=torch.bool) for k, v in weights.items()}


@pytest.mark.parametrize("scope", ["global", "layerwise"])
@pytest.mark.parametrize("amount", [0.2, 0.5, 0.37])
def test_density_after_r_rounds_is_exact(scope, amount):
    weights = _weights()
    masks = _ones(weights)
    total = sum(w.numel() for w in weights.values())
    for r in range(1, 9):
        # Retrain-like perturbation: fresh magnitudes every round.
        weights = {k: w + 0.01 * torch.randn_like(w) for k, w in weights.items()}
        new = prune(weights, masks, amount, scope=scope, rounds=r)
        alive = sparsity_report(new).alive
        if scope == "global":
            assert alive == round(total * (1 - amount) ** r)
        else:
            assert alive == sum(round(w.numel() * (1 - amount) ** r) for w in weights.values())
        # Within one weight per pool of the exact density.
        pools = 1 if scope == "global" else len(weights)
        assert abs(alive - total * (1 - amount) ** r) <= 0.5 * pools
        # Masks only shrink.
        for k in masks:
            assert not bool((new[k] & ~masks[k]).any())
        masks = new


def test_pruned_weights_never_revive_even_when_large():
    weights = _weights()
    masks = prune(weights, _ones(weights), 0.5, rounds=1)
    # Pruned weights become huge (as if they had been trained): still pruned afterwards.
    grown = {k: torch.where(masks[k], w, torch.full_like(w, 1e6)) for k, w in weights.items()}
    new = prune(grown, masks, 0.5, rounds=2)
    for k in masks:
        assert not bool((new[k] & ~masks[k]).any())


def test_global_pruning_removes_smallest_magnitudes_across_layers():
    weights = {"small": torch.tensor([0.1, -0.2, 0.3, 5.0]), "large": torch.tensor([[1.0, -2.0], [3.0, -0.05]])}
    masks = magnitude_masks(weights, _ones(weights), keep=4)
    assert masks["small"].tolist() == [False, False, False, True]
    assert masks["large"].tolist() == [[True, True], [True, False]]
    # The kept magnitudes are all >= every pruned magnitude.
    flat_w = torch.cat([w.flatten().abs() for w in weights.values()])
    flat_m = torch.cat([m.flatten() for m in masks.values()])
    assert flat_w[flat_m].min() >= flat_w[~flat_m].max()


def test_layerwise_prunes_each_tensor_by_its_own_fraction():
    weights = _weights()
    masks = prune(weights, _ones(weights), 0.25, scope="layerwise", rounds=1)
    for k, w in weights.items():
        assert int(masks[k].sum()) == round(w.numel() * 0.75)
        kept, dropped = w.abs()[masks[k]], w.abs()[~masks[k]]
        assert kept.min() >= dropped.max()


def test_ties_are_broken_deterministically_by_position():
    weights = {"x": torch.ones(10), "y": torch.ones(6)}
    masks = magnitude_masks(weights, _ones(weights), keep=12)
    assert masks["x"].all() and masks["y"].tolist() == [True, True, False, False, False, False]
    again = magnitude_masks(weights, _ones(weights), keep=12)
    assert all(torch.equal(masks[k], again[k]) for k in masks)


def test_rate_override_prunes_that_tensor_on_its_own():
    weights = _weights()
    masks = prune(weights, _ones(weights), 0.2, rates={"c.*": 0.1}, rounds=3)
    assert int(masks["c.weight"].sum()) == round(weights["c.weight"].numel() * 0.9**3)
    pooled = weights["a.weight"].numel() + weights["b.weight"].numel()
    assert int(masks["a.weight"].sum() + masks["b.weight"].sum()) == round(pooled * 0.8**3)


def test_plan_groups():
    names = ["l0.weight", "l1.weight", "out.weight"]
    groups = plan_groups(names, 0.2, "global", {"out.weight": 0.1})
    assert [(g.names, g.amount) for g in groups] == [(("l0.weight", "l1.weight"), 0.2), (("out.weight",), 0.1)]
    groups = plan_groups(names, 0.2, "layerwise")
    assert [g.names for g in groups] == [("l0.weight",), ("l1.weight",), ("out.weight",)]


def test_prune_without_rounds_removes_amount_of_alive():
    weights = _weights()
    masks = _ones(weights)
    total = sparsity_report(masks).total
    masks = prune(weights, masks, 0.3)
    assert sparsity_report(masks).alive == round(total * 0.7)
    alive = sparsity_report(masks).alive
    masks = prune(weights, masks, 0.3)
    assert sparsity_report(masks).alive == round(alive * 0.7)


def test_keep_count():
    assert keep_count(1000, 0.2, 0) == 1000
    assert keep_count(1000, 0.2, 3) == 512
    assert keep_count(1000, 0.2, 4) == 410
    assert keep_count(torch.tensor([1000, 10]), 0.5, 1).tolist() == [500, 5]


def test_random_masks_keep_counts_and_subset_and_are_reproducible():
    weights = _weights()
    magnitude = prune(weights, _ones(weights), 0.6, rounds=1)
    counts = {k: int(m.sum()) for k, m in magnitude.items()}
    first = random_masks(_ones(weights), counts, generator=torch.Generator().manual_seed(1))
    again = random_masks(_ones(weights), counts, generator=torch.Generator().manual_seed(1))
    for k in weights:
        assert int(first[k].sum()) == counts[k]
        assert torch.equal(first[k], again[k])
    assert any(not torch.equal(first[k], magnitude[k]) for k in weights)
    # Iterated: random pruning from random masks stays nested.
    fewer = {k: c // 2 for k, c in counts.items()}
    second = random_masks(first, fewer, generator=torch.Generator().manual_seed(2))
    for k in weights:
        assert int(second[k].sum()) == fewer[k]
        assert not bool((second[k] & ~first[k]).any())


def test_member_dimension_prunes_each_member_independently():
    members = [_weights(seed) for seed in range(3)]
    stacked = {k: torch.stack([m[k] for m in members]) for k in members[0]}
    stacked_masks = prune(stacked, _ones(stacked), 0.4, rounds=2, member_dims=1)
    for i, member in enumerate(members):
        single = prune(member, _ones(member), 0.4, rounds=2)
        for k in member:
            assert torch.equal(stacked_masks[k][i], single[k])
    # Alive-count mode with different alive counts per member.
    uneven = {k: v.clone() for k, v in stacked_masks.items()}
    uneven["a.weight"][0] = False
    again = prune(stacked, uneven, 0.5, member_dims=1)
    for i in range(3):
        alive_before = sum(int(uneven[k][i].sum()) for k in uneven)
        assert sum(int(again[k][i].sum()) for k in again) == round(alive_before * 0.5)
    counts = {k: m.flatten(1).sum(1) for k, m in stacked_masks.items()}
    rand = random_masks(_ones(stacked), counts, member_dims=1, generator=torch.Generator().manual_seed(0))
    for k in stacked:
        assert torch.equal(rand[k].flatten(1).sum(1), counts[k])


def test_sparsity_report_and_apply_masks():
    masks = {"a": torch.tensor([True, False, True, True]), "b": torch.zeros(2, 3, dtype=torch.bool)}
    report = sparsity_report(masks)
    assert (report.alive, report.total) == (3, 10)
    assert math.isclose(report.density, 0.3)
    assert report.as_dict() == {"a": 0.75, "b": 0.0, "global": 0.3}
    tensors = {"a": torch.arange(1.0, 5.0), "b": torch.ones(2, 3)}
    apply_masks_(tensors, masks)
    assert tensors["a"].tolist() == [1.0, 0.0, 3.0, 4.0] and not tensors["b"].any()


def test_match_names_keeps_model_order():
    names = ["x.weight", "x.bias", "y.weight"]
    assert match_names(["y.*", "x.weight"], names) == ["x.weight", "y.weight"]


@pytest.mark.parametrize("amount", [0, 1, 1.5, -0.1, float("nan")])
def test_amount_out_of_range_is_refused(amount):
    weights = _weights()
    with pytest.raises(ValueError, match=r"`amount` must be in the open interval \(0, 1\), got"):
        prune(weights, _ones(weights), amount)


def test_bad_inputs_have_clear_errors():
    weights = _weights()
    masks = _ones(weights)
    with pytest.raises(TypeError, match=r"`amount` must be a float in \(0, 1\), got '0.2'"):
        prune(weights, masks, "0.2")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="`scope` must be 'global' or 'layerwise', got 'per-channel'"):
        prune(weights, masks, 0.2, scope="per-channel")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"`rates\['c.weight'\]` must be in the open interval"):
        prune(weights, masks, 0.2, rates={"c.weight": 2.0})
    with pytest.raises(ValueError, match="`rates` entry 'nope' matches no parameter. Available: a.weight"):
        prune(weights, masks, 0.2, rates={"nope": 0.1})
    with pytest.raises(ValueError, match="`rounds` must be >= 1 when given, got 0"):
        prune(weights, masks, 0.2, rounds=0)
    with pytest.raises(KeyError, match="missing masks for"):
        prune(weights, {"a.weight": masks["a.weight"]}, 0.2)
    with pytest.raises(ValueError, match=r"Mask for 'a.weight' has shape \(3,\), but the weight has shape"):
        prune(weights, {**masks, "a.weight": torch.ones(3, dtype=torch.bool)}, 0.2)
    bad = {**weights, "b.weight": weights["b.weight"].clone()}
    bad["b.weight"][0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="Cannot prune 'b.weight': it holds NaN or infinite values"):
        prune(bad, masks, 0.2)
    with pytest.raises(ValueError, match="`keep` must be >= 0, got -1"):
        magnitude_masks(weights, masks, keep=-1)
    with pytest.raises(ValueError, match="`rounds` must be >= 0, got -2"):
        keep_count(10, 0.2, -2)
    with pytest.raises(KeyError, match="`keep` must give a count for every mask"):
        random_masks(masks, {"a.weight": 1})
    with pytest.raises(ValueError, match=r"`keep\['a.weight'\]` must be >= 0"):
        random_masks({"a.weight": masks["a.weight"]}, {"a.weight": -3})
    with pytest.raises(ValueError, match="has 2 dimensions, fewer than member_dims=3"):
        magnitude_masks({"a": weights["a.weight"]}, {"a": masks["a.weight"]}, keep=1, member_dims=3)
