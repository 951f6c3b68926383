"""Linear-time exact selection: the same masks as the sort-based ranking it replaced, bit for bit, in bounded memory."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
import torch.nn.utils.prune
from torch import nn

from lth_lightning.pruning import magnitude as pruning
from lth_lightning.pruning.magnitude import keep_count, magnitude_masks, prune, random_masks
from lth_lightning.pruning.selection import keep_largest

cuda = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def sorted_reference(weights, masks, keep, *, member_dims=0, chunk=None):
    """The ranking before linear-time selection: a full stable descending sort of every magnitude."""
    names = list(weights)
    scores = []
    for name in names:
        w = weights[name].detach()
        rows = math.prod(w.shape[:member_dims])
        alive = masks[name].to(torch.bool).reshape(rows, -1)
        scores.append(torch.where(alive, w.reshape(rows, -1).abs().to(torch.float32), -1.0))
    pool = torch.cat(scores, dim=1)
    rows, total = pool.shape
    keep_t = torch.minimum(torch.as_tensor(keep, dtype=torch.long).expand(rows), (pool >= 0).sum(dim=1))
    order = torch.sort(pool, dim=1, descending=True, stable=True).indices
    new_pool = torch.zeros_like(pool, dtype=torch.bool)
    new_pool.scatter_(1, order, torch.arange(total).expand(rows, total) < keep_t[:, None])
    out, start = {}, 0
    for name, score in zip(names, scores, strict=True):
        out[name] = new_pool[:, start : start + score.shape[1]].reshape(weights[name].shape)
        start += score.shape[1]
    return out


def random_reference(masks, keep, *, generator, member_dims=0):
    """Random pruning before linear-time selection: a stable sort of uniform scores, tensor by tensor."""
    out = {}
    for name, mask in masks.items():
        rows = math.prod(mask.shape[:member_dims])
        alive = mask.to(torch.bool).reshape(rows, -1)
        noise = torch.rand(alive.shape, generator=generator)
        scores = torch.where(alive, noise, -1.0)
        count = torch.minimum(torch.as_tensor(keep[name], dtype=torch.long).expand(rows), alive.sum(dim=1))
        order = torch.sort(scores, dim=1, descending=True, stable=True).indices
        new = torch.zeros_like(alive)
        new.scatter_(1, order, torch.arange(alive.shape[1]).expand_as(alive) < count[:, None])
        out[name] = new.reshape(mask.shape)
    return out


def tied_weights(seed: int, dtype: torch.dtype, members: tuple[int, ...] = ()) -> dict[str, torch.Tensor]:
    """Three tensors, a third of whose values repeat a handful of magnitudes (both signs, zeros included)."""
    g = torch.Generator().manual_seed(seed)
    shapes = {"a.weight": (23, 9), "b.weight": (4, 3, 3, 3), "c.weight": (57,)}
    out = {}
    for name, shape in shapes.items():
        w = torch.randn(*members, *shape, generator=g)
        tied = torch.rand(w.shape, generator=g) < 0.35
        w = torch.where(tied, torch.randint(-4, 5, w.shape, generator=g) / 8.0, w)
        out[name] = w.to(dtype)
    return out


def partly_pruned(weights: dict[str, torch.Tensor], seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {k: torch.rand(w.shape, generator=g) < 0.7 for k, w in weights.items()}


def assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert list(a) == list(b)
    for name in a:
        assert a[name].dtype == torch.bool and a[name].shape == b[name].shape
        assert torch.equal(a[name], b[name]), name


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16, torch.float64])
@pytest.mark.parametrize("chunk", [5, 64, 1 << 20])
def test_magnitude_masks_equal_the_sort_based_ranking(dtype, chunk):
    for seed in range(3):
        weights = tied_weights(seed, dtype)
        masks = partly_pruned(weights, seed)
        alive = sum(int(m.sum()) for m in masks.values())
        for keep in (0, 1, 2, alive // 3, alive // 2, alive - 1, alive, alive + 7):
            expected = sorted_reference(weights, masks, keep)
            assert_same(magnitude_masks(weights, masks, keep, chunk=chunk), expected)


def test_a_tie_larger_than_the_buffers_is_split_by_position():
    """Thousands of equal magnitudes around the threshold: more than one chunk of the bucket, ranked by position."""
    g = torch.Generator().manual_seed(9)
    weights = {
        "a": torch.where(torch.rand(3000, generator=g) < 0.6, 0.75, torch.randn(3000, generator=g)),
        "b": torch.where(torch.rand(50, 40, generator=g) < 0.6, -0.75, torch.rand(50, 40, generator=g)),
    }
    masks = {k: torch.rand(w.shape, generator=g) < 0.9 for k, w in weights.items()}
    for keep in (100, 1500, 3000, 3700):
        for chunk in (16, 333):
            assert_same(magnitude_masks(weights, masks, keep, chunk=chunk), sorted_reference(weights, masks, keep))


@pytest.mark.parametrize("chunk", [7, 1 << 20])
def test_members_are_ranked_each_on_their_own_as_by_the_sort(chunk):
    weights = tied_weights(4, torch.float32, members=(3,))
    masks = partly_pruned(weights, 4)
    for keep in (torch.tensor([0, 150, 400]), 77, torch.tensor([10_000, 1, 299])):
        expected = sorted_reference(weights, masks, keep, member_dims=1)
        assert_same(magnitude_masks(weights, masks, keep, member_dims=1, chunk=chunk), expected)


@pytest.mark.parametrize("scope", ["global", "layerwise"])
def test_prune_equals_the_sort_based_ranking_over_rounds(scope, monkeypatch):
    weights = tied_weights(7, torch.float32)
    kwargs = {"scope": scope, "rates": {"c.weight": 0.1}}
    new = {k: torch.ones_like(w, dtype=torch.bool) for k, w in weights.items()}
    old = dict(new)
    for r in range(1, 6):
        weights = {k: w + 0.05 * torch.randn_like(w) * (torch.rand_like(w) < 0.5) for k, w in weights.items()}
        new = prune(weights, new, 0.3, rounds=r, **kwargs)
        with monkeypatch.context() as patched:
            patched.setattr(pruning, "magnitude_masks", sorted_reference)
            old = prune(weights, old, 0.3, rounds=r, **kwargs)
        assert_same(new, old)
    stacked = tied_weights(8, torch.bfloat16, members=(4,))
    ones = {k: torch.ones_like(w, dtype=torch.bool) for k, w in stacked.items()}
    got = prune(stacked, ones, 0.4, rounds=2, member_dims=1, **kwargs)
    monkeypatch.setattr(pruning, "magnitude_masks", sorted_reference)
    assert_same(got, prune(stacked, ones, 0.4, rounds=2, member_dims=1, **kwargs))


@pytest.mark.parametrize("member_dims", [0, 1])
def test_random_masks_equal_the_sort_based_draw(member_dims):
    weights = tied_weights(2, torch.float32, members=(3,) * member_dims)
    masks = partly_pruned(weights, 2)
    keep = {k: (m.reshape(3, -1).sum(1) // 2 if member_dims else int(m.sum()) // 2) for k, m in masks.items()}
    got = random_masks(masks, keep, generator=torch.Generator().manual_seed(5), member_dims=member_dims)
    expected = random_reference(masks, keep, generator=torch.Generator().manual_seed(5), member_dims=member_dims)
    assert_same(got, expected)


def _linears(seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(30, 20), nn.Linear(20, 16), nn.Linear(16, 5))  # no count ends in .5


def _weights_of(model: nn.Sequential) -> dict[str, torch.Tensor]:
    return {f"{i}.weight": layer.weight.detach().clone() for i, layer in enumerate(model)}


@pytest.mark.parametrize("scope", ["global", "layerwise"])
def test_two_rounds_equal_torch_nn_utils_prune(scope):
    """torch prunes ``round(amount * alive)`` by L1 magnitude; with distinct magnitudes the masks must agree."""
    model = _linears(0)
    weights = _weights_of(model)
    params = [(layer, "weight") for layer in model]
    ours = {k: torch.ones_like(w, dtype=torch.bool) for k, w in weights.items()}
    for _ in range(2):
        if scope == "global":
            nn.utils.prune.global_unstructured(params, nn.utils.prune.L1Unstructured, amount=0.3)
        else:
            for layer, name in params:
                nn.utils.prune.l1_unstructured(layer, name, amount=0.3)
        ours = prune(weights, ours, 0.3, scope=scope)
        theirs = {f"{i}.weight": layer.weight_mask.to(torch.bool) for i, layer in enumerate(model)}
        assert_same(ours, theirs)
    alive = sum(int(m.sum()) for m in ours.values())
    assert alive < 0.5 * sum(w.numel() for w in weights.values())  # two rounds really pruned


def openlth_global_masks(weights: dict[str, np.ndarray], masks: dict[str, np.ndarray], fraction: float):
    """OpenLTH's sparse_global rule, restated: prune ceil(fraction * alive) weights by the threshold at that rank,
    keeping the alive weights whose magnitude is strictly above it."""
    alive = int(sum(m.sum() for m in masks.values()))
    count = int(np.ceil(fraction * alive))
    pooled = np.sort(np.concatenate([np.abs(w[masks[k]]) for k, w in weights.items()]))
    threshold = pooled[count]
    return {k: masks[k] & (np.abs(w) > threshold) for k, w in weights.items()}


def test_global_ranking_equals_openlth():
    weights = _weights_of(_linears(1))
    masks = {k: torch.ones_like(w, dtype=torch.bool) for k, w in weights.items()}
    np_weights = {k: w.numpy() for k, w in weights.items()}
    for _ in range(3):
        theirs = openlth_global_masks(np_weights, {k: m.numpy() for k, m in masks.items()}, 0.2)
        kept = sum(int(m.sum()) for m in theirs.values())  # OpenLTH's count (one below its threshold rank)
        masks = magnitude_masks(weights, masks, kept)
        assert_same(masks, {k: torch.from_numpy(v) for k, v in theirs.items()})


def test_keep_largest_on_hand_made_ties_and_bad_input():
    values = [torch.tensor([1.0, -3.0, 3.0, 0.0]), torch.tensor([3.0, -3.0, 2.0])]
    alive = [torch.tensor([True, True, True, True]), torch.tensor([True, False, True])]
    # Four 3s (one pruned): the earlier segment's two, then the later one.
    kept = keep_largest(values, alive, 3)
    assert [k.tolist() for k in kept] == [[False, True, True, False], [True, False, False]]
    kept = keep_largest(values, alive, 2, chunk=1)
    assert [k.tolist() for k in kept] == [[False, True, True, False], [False, False, False]]
    assert [k.tolist() for k in keep_largest(values, alive, 99)] == [a.tolist() for a in alive]
    empty = keep_largest([torch.empty(0), values[1]], [torch.empty(0, dtype=torch.bool), alive[1]], 1)
    assert empty[0].numel() == 0 and empty[1].tolist() == [True, False, False]
    assert keep_largest([torch.empty(0)], [torch.empty(0, dtype=torch.bool)], 0)[0].numel() == 0
    nan = [torch.tensor([1.0, float("nan")])]
    with pytest.raises(ValueError, match="Cannot prune 'x': it holds NaN or infinite values"):
        keep_largest(nan, [torch.ones(2, dtype=torch.bool)], 1, names=["x"])
    with pytest.raises(ValueError, match="Cannot prune '0': it holds NaN or infinite values"):
        keep_largest([torch.tensor([float("-inf"), 1.0])], [torch.ones(2, dtype=torch.bool)], 1)
    with pytest.raises(ValueError, match="`keep` must be >= 0, got -2"):
        keep_largest(values, alive, -2)
    with pytest.raises(ValueError, match="`chunk` must be >= 1, got 0"):
        keep_largest(values, alive, 1, chunk=0)
    with pytest.raises(ValueError, match="`values` and `alive` must pair up as 1-D tensors"):
        keep_largest(values, alive[:1], 1)
    with pytest.raises(ValueError, match="`out` must hold one boolean tensor per segment"):
        keep_largest(values, alive, 1, out=[torch.zeros(4), torch.zeros(3)])


_MEMORY_PROBE = textwrap.dedent(
    """
    import json, sys, torch
    from lth_lightning.pruning.magnitude import keep_count, magnitude_masks

    def rss_kib(field):
        for line in open("/proc/self/status"):
            if line.startswith(field):
                return int(line.split()[1])

    n = int(sys.argv[1])
    weights = {"big.weight": torch.randn(n // 1000, 1000), "small.weight": torch.randn(1000, 10)}
    masks = {k: torch.rand(w.shape) < 0.8 for k, w in weights.items()}
    magnitude_masks({"t": torch.randn(64)}, {"t": torch.ones(64, dtype=torch.bool)}, 10)  # warm up
    before = rss_kib("VmRSS:")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak (VmHWM) to the current RSS
    out = magnitude_masks(weights, masks, keep_count(n, 0.2, 2))
    print(json.dumps({"extra": (rss_kib("VmHWM:") - before) * 1024, "alive": int(out["big.weight"].sum())}))
    """
)


def test_pruning_a_large_tensor_needs_no_temporary_of_its_size():
    """20M weights: the new masks (20 MB) and a few chunk buffers, where the sort needed over 400 MB."""
    n = 20_000_000
    probe = subprocess.run(
        [sys.executable, "-c", _MEMORY_PROBE, str(n)], capture_output=True, text=True, check=True, timeout=300
    )
    result = json.loads(probe.stdout.strip().splitlines()[-1])
    masks_bytes = n + 10_000
    assert result["extra"] <= masks_bytes + 40 * 2**20, result
    assert 0 < result["alive"] < n * 0.8


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("marks", [pytest.param(None, marks=cuda)])
def test_selection_on_a_gpu_equals_the_cpu_and_stays_within_its_chunks(dtype, marks):
    weights = tied_weights(3, dtype)
    masks = partly_pruned(weights, 3)
    on_gpu = {k: w.cuda() for k, w in weights.items()}
    for keep in (1, 300, 600):
        got = magnitude_masks(on_gpu, masks, keep, chunk=16)
        assert all(m.device.type == "cpu" for m in got.values())
        assert_same(got, sorted_reference(weights, masks, keep))
    big = torch.randn(50_000_000, device="cuda", dtype=dtype)
    alive = torch.ones(big.shape, dtype=torch.bool)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    start = torch.cuda.memory_allocated()
    magnitude_masks({"w": big}, {"w": alive}, keep_count(big.numel(), 0.2, 1))
    assert torch.cuda.max_memory_allocated() - start <= 64 * 2**20  # chunk buffers and histograms only
