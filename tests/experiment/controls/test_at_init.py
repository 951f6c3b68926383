"""Pruning at initialization as published (issue 27): the references' scores restated here, their scoring batch,
one global ranking, and Frankle et al. 2021's ablations."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import ConvNet, TinyImageData, round_trainer, tiny_images

from lth_lightning import MLP, LotteryClassifier, LotteryTicketCallback, run_lottery
from lth_lightning.experiment.controls.registry import TicketRound, control_masks_and_init
from lth_lightning.experiment.controls.scoring_batch import ScoringBatch, draw_scoring_batch
from lth_lightning.experiment.record.paths import ExperimentPaths
from lth_lightning.pruning.magnitude import random_masks
from lth_lightning.pruning.saliency import snip_scores


def _classifier(seed: int = 0) -> LotteryClassifier:
    torch.manual_seed(seed)
    return LotteryClassifier(net=MLP((16, 12, 8, 4)), lr=1e-2).double()


def _batch(n: int = 40, seed: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 16, generator=g, dtype=torch.float64), torch.arange(n) % 4


def _ticket(module: torch.nn.Module, batch, keep: float = 0.2) -> TicketRound:
    """A round keeping ``keep`` of each tensor (only the ticket's counts matter to the published methods)."""
    names = [n for n, p in module.named_parameters() if n.endswith("weight")]
    params = dict(module.named_parameters())
    ones = {n: torch.ones(params[n].shape, dtype=torch.bool) for n in names}
    counts: dict[str, int | torch.Tensor] = {n: round(keep * params[n].numel()) for n in names}
    masks = random_masks(ones, counts, generator=torch.Generator().manual_seed(0))
    init = {k: v.detach().clone() for k, v in module.state_dict().items()}
    return TicketRound(masks, init, module, lambda: ScoringBatch(batch, 4, 10))


def _weights(module: torch.nn.Module, names: list[str]) -> list[torch.Tensor]:
    params = dict(module.named_parameters())
    return [params[n] for n in names]


def reference_grasp_keep(module, names, x, y, keep: int, temperature: float = 200.0) -> dict[str, torch.Tensor]:
    """alecwangcq/GraSP's pruner/GraSP.py, restated: the gradient summed over the batch's two halves (no graph),
    then for each half the gradient with a graph dotted with it and back-propagated (Hg accumulates in .grad),
    scores -w * Hg normalised by |sum| + 1e-10; the num_rm highest are removed by topk and `score <= the last
    removed` is kept (which keeps that last one too: num_rm is set one higher to keep `keep`)."""
    weights = _weights(module, names)
    halves = [slice(0, len(x) // 2), slice(len(x) // 2, len(x))]
    g = None
    for half in halves:
        loss = F.cross_entropy(module(x[half]) / temperature, y[half])
        part = torch.autograd.grad(loss, weights)
        g = list(part) if g is None else [a + b for a, b in zip(g, part, strict=True)]
    for w in weights:
        w.grad = None
    for half in halves:
        loss = F.cross_entropy(module(x[half]) / temperature, y[half])
        flows = torch.autograd.grad(loss, weights, create_graph=True)
        sum((gi.detach() * fi).sum() for gi, fi in zip(g, flows, strict=True)).backward()
    scores = {n: -w.detach() * w.grad for n, w in zip(names, weights, strict=True)}
    flat = torch.cat([s.flatten() for s in scores.values()])
    norm = flat.sum().abs() + 1e-10
    num_rm = flat.numel() - keep + 1
    accept = torch.topk(flat / norm, num_rm, sorted=True).values[-1]
    return {n: (s / norm) <= accept for n, s in scores.items()}


def reference_snip_keep(module, names, x, y, keep: int) -> dict[str, torch.Tensor]:
    """ganguli-lab/Synaptic-Flow's SNIP, restated: |g * w| of the cross-entropy, normalised by its sum, and the
    global mask pruning `score <= kthvalue(k)` with k = total - keep."""
    weights = _weights(module, names)
    grads = torch.autograd.grad(F.cross_entropy(module(x), y), weights)
    scores = {n: (g * w).detach().abs() for n, g, w in zip(names, grads, weights, strict=True)}
    flat = torch.cat([s.flatten() for s in scores.values()])
    flat = flat / flat.sum()
    threshold = torch.kthvalue(flat, flat.numel() - keep).values
    return {n: (s / torch.cat([t.flatten() for t in scores.values()]).sum()) > threshold for n, s in scores.items()}


@pytest.mark.parametrize("method", ["grasp", "snip"])
def test_snip_and_grasp_equal_the_reference_code_on_the_scoring_batch(method):
    module = _classifier()
    x, y = _batch()
    ticket = _ticket(module, (x, y))
    keep = sum(ticket.counts.values())
    masks, _ = control_masks_and_init(method, ticket, 0)
    reference_net = _classifier()  # the same initial weights, scored by the restated reference
    names = list(ticket.masks)
    restated = reference_grasp_keep if method == "grasp" else reference_snip_keep
    expected = restated(reference_net, names, x, y, keep)
    assert sum(int(m.sum()) for m in expected.values()) == keep
    assert all(torch.equal(masks[n], expected[n]) for n in names)
    assert any(int(masks[n].sum()) != ticket.counts[n] for n in names)  # one ranking: its own layer counts
    if method == "grasp":  # the temperature matters: without it the masks differ
        untempered = reference_grasp_keep(_classifier(), names, x, y, keep, temperature=1.0)
        assert any(not torch.equal(masks[n], untempered[n]) for n in names)


def test_each_ablation_keeps_what_frankle_2021_keeps():
    module = _classifier()
    x, y = _batch()
    ticket = _ticket(module, (x, y))
    names, keep = list(ticket.masks), sum(ticket.counts.values())
    snip, _ = control_masks_and_init("snip", ticket, 0)
    # shuffled: the method's count in every tensor, other positions, the ticket's initialization
    shuffled, init = control_masks_and_init("snip:shuffled", ticket, 7)
    assert all(int(shuffled[n].sum()) == int(snip[n].sum()) for n in names)
    assert any(not torch.equal(shuffled[n], snip[n]) for n in names)
    assert all(torch.equal(init[k], ticket.init[k]) for k in init)
    # inverted: the lowest scores kept, the total the same
    inverted, _ = control_masks_and_init("snip:inverted", ticket, 0)
    scores = snip_scores(ticket.initial_network(), names, ticket.scoring_batch("snip").loss())
    kept = torch.cat([scores[n][inverted[n]] for n in names])
    pruned = torch.cat([scores[n][~inverted[n]] for n in names])
    assert kept.numel() == keep and float(kept.max()) <= float(pruned.min())
    # reinit: the method's masks, a fresh initialization
    reinit_masks, fresh = control_masks_and_init("snip:reinit", ticket, 7)
    assert all(torch.equal(reinit_masks[n], snip[n]) for n in names)
    assert all(not torch.equal(fresh[n], ticket.init[n]) for n in names)
    # layer-wise: the ticket's count in every tensor
    layerwise, _ = control_masks_and_init("snip:layerwise", ticket, 0)
    assert all(int(layerwise[n].sum()) == ticket.counts[n] for n in names)


def test_random_prune_global_keeps_one_density_in_every_tensor():
    module = _classifier()
    layered = _ticket(module, _batch(), keep=0.3)
    head = {"net.layers.2.weight": torch.ones(4, 8, dtype=torch.bool)}  # the ticket keeps its head whole
    ticket = TicketRound({**layered.masks, **head}, layered.init, module)
    density = sum(ticket.counts.values()) / sum(m.numel() for m in ticket.masks.values())
    masks, init = control_masks_and_init("random_prune:global", ticket, 5)
    for name, mask in masks.items():  # one density, to one weight
        assert abs(int(mask.sum()) - density * mask.numel()) <= 0.5, name
    assert int(masks["net.layers.2.weight"].sum()) < 32  # not the ticket's layer counts
    assert all(torch.equal(init[k], ticket.init[k]) for k in init)


def test_the_scoring_batch_is_class_balanced_recorded_and_what_snip_scored(tmp_path):
    torch.manual_seed(0)
    rows = run_lottery(
        ConvNet(),
        TinyImageData(),
        rounds=2,
        lottery=LotteryTicketCallback(amount=0.5, verbose=False),
        trainer=round_trainer(logger=False),
        out_dir=tmp_path,
        progress=False,
        report=False,
        monitor=None,
        test_metric="test_loss",
        controls=["snip"],
    )
    run = ExperimentPaths(rows.experiment_dir).run(0)
    x, y = torch.load(run.scoring_batch)
    assert torch.equal(torch.bincount(y), torch.full((4,), 10))  # 10 of each of the 4 classes
    train_x, train_y = tiny_images().tensors
    rows_of = [int(((train_x - xi).abs().flatten(1).sum(1) == 0).nonzero()[0]) for xi in x]
    assert len(set(rows_of)) == 40 and torch.equal(train_y[rows_of], y)  # training examples, each once
    masks = torch.load(run.control_masks(1, "snip"))
    ticket = torch.load(run.masks(1))
    initial = ConvNet()
    initial.load_state_dict(torch.load(run.lottery_state(1))["snapshot"])
    names = list(ticket)
    scores = snip_scores(initial.train(), names, lambda m: F.cross_entropy(m(x), y))
    keep = sum(int(m.sum()) for m in ticket.values())
    threshold = torch.cat([scores[n].flatten() for n in names]).sort(descending=True).values[keep - 1]
    assert all(bool((scores[n][masks[n]] >= threshold).all()) for n in names)
    assert sum(int(m.sum()) for m in masks.values()) == keep


def test_seeds_draw_their_own_scoring_batch_and_other_modules_score_their_training_step():
    data = TinyImageData()
    first, second = (draw_scoring_batch(ConvNet(), data, 5, seed) for seed in (0, 1))
    assert first.classes == 4 and not torch.equal(first.batch[0], second.batch[0])
    assert "20 training examples, 5 of each of 4 classes, drawn with seed 0" in first.describe(0)

    class Regression(ConvNet):
        def forward(self, x):
            return super().forward(x).sum(1)  # one number per example: no logits

    other = draw_scoring_batch(Regression(), data, 5, 0)
    assert other.classes is None and len(other.batch[0]) == 16  # the first training batch
    assert "scores the training step's loss on the first training batch" in other.describe(0)


def test_bad_scoring_settings_are_refused_before_anything_is_recorded(tmp_path):
    common = {"rounds": 2, "out_dir": tmp_path, "progress": False, "controls": ["grasp"]}
    with pytest.raises(ValueError, match=r"`scoring_per_class` must be an integer >= 1, got 0"):
        run_lottery(ConvNet(), TinyImageData(), scoring_per_class=0, **common)
    with pytest.raises(ValueError, match=r"`grasp_temperature` must be a number > 0, got -1"):
        run_lottery(ConvNet(), TinyImageData(), grasp_temperature=-1, **common)
    listed = r"controls` must be distinct entries of \[.*'snip:shuffled'.* got \['snip:shufled'\]"
    with pytest.raises(ValueError, match=listed):
        run_lottery(ConvNet(), TinyImageData(), **{**common, "controls": ["snip:shufled"]})
    assert not list(tmp_path.iterdir())
    with pytest.raises(ValueError, match=r"fewer than 20 examples of class\(es\) \[3\] \(3: 19\)"):
        draw_scoring_batch(ConvNet(), TinyImageData(), 20, 0)
