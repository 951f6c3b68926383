"""The controls: random reinitialization and random pruning, and pruning at initialization (SNIP, GraSP, SynFlow,
magnitude)."""

from __future__ import annotations

import pytest
import torch
from conftest import SHARED_DATA, ConvNet, lean_trainer, loader, round_trainer, tiny_images

from lth_lightning import MLP, FashionMNISTDataModule, LotteryClassifier, LotteryTicketCallback, run_lottery
from lth_lightning.callbacks import driving
from lth_lightning.experiment.controls.registry import CONTROLS, TicketRound, control_masks_and_init
from lth_lightning.experiment.controls.scoring_batch import ScoringBatch
from lth_lightning.pruning.saliency import snip_scores

AT_INIT = ["snip", "grasp", "synflow", "magnitude_init"]


def _one_round(tmp_path):
    torch.manual_seed(0)
    data = tiny_images()
    model = ConvNet()
    cb = LotteryTicketCallback(amount=0.6, verbose=False)
    for _ in range(2):  # dense round, then one pruned round
        trainer = lean_trainer(tmp_path, callbacks=[cb])
        trainer.fit(model, loader(data, shuffle=True))
    return model, cb, data


def _ticket(model, cb, data) -> TicketRound:
    return TicketRound(cb.round_masks, cb.snapshot, model, lambda: ScoringBatch(next(iter(loader(data))), 4, 4))


def _make(kind, model, cb, data, seed):
    return control_masks_and_init(kind, _ticket(model, cb, data), seed)


def test_random_prune_keeps_per_layer_counts_and_the_original_init(tmp_path):
    model, cb, data = _one_round(tmp_path)
    masks, init = _make("random_prune", model, cb, data, seed=3)
    ticket = cb.round_masks
    for name in ticket:
        assert int(masks[name].sum()) == int(ticket[name].sum())
        assert not torch.equal(masks[name], ticket[name])
    snapshot = cb.snapshot
    assert all(torch.equal(init[k], snapshot[k]) for k in snapshot)
    again, _ = _make("random_prune", model, cb, data, seed=3)
    assert all(torch.equal(again[k], masks[k]) for k in masks)  # reproducible from the seed


def test_random_reinit_keeps_masks_and_shares_no_weights_with_the_init(tmp_path):
    model, cb, data = _one_round(tmp_path)
    masks, init = _make("random_reinit", model, cb, data, seed=4)
    assert all(torch.equal(masks[k], cb.round_masks[k]) for k in masks)
    snapshot = cb.snapshot
    for name in ("conv.weight", "fc1.weight", "head.weight", "fc1.bias"):
        assert not bool((init[name] == snapshot[name]).any()), name
        # Drawn by the module's own initializer: same distribution (kaiming-uniform bound).
        assert init[name].abs().max() <= snapshot[name].abs().max() * 1.5
    # The original module is untouched.
    assert torch.equal(dict(model.named_parameters())["fc1.weight"].detach() != 0, cb.round_masks["fc1.weight"])
    with pytest.raises(ValueError, match="Unknown control 'shuffle'; allowed: random_reinit, random_prune, snip"):
        _make("shuffle", model, cb, data, seed=0)


@pytest.mark.parametrize("kind", list(CONTROLS))
def test_control_masks_stay_enforced_while_it_trains(tmp_path, kind):
    model, cb, data = _one_round(tmp_path)
    masks, init = _make(kind, model, cb, data, seed=5)
    ticket_round_masks, ticket_next_masks, ticket_history = cb.round_masks, cb.masks, cb.history
    fork = driving.fork(cb, masks, init)
    control = ConvNet()
    trainer = lean_trainer(tmp_path, callbacks=[fork], max_epochs=2)
    trainer.fit(control, loader(data, shuffle=True))
    params = dict(control.named_parameters())
    collapsed = any(not bool(m.any()) for m in masks.values())  # a tensor emptied: no gradient reaches the rest
    assert collapsed == (kind == "synflow:inverted")  # inverted SynFlow keeps the least flow: the head goes first
    for name, mask in masks.items():
        assert torch.all(params[name][~mask] == 0), name
        assert collapsed or bool((params[name][mask] != init[name][mask]).any())  # it trained
    assert fork.round == cb.round and all(torch.equal(fork.round_masks[k], masks[k]) for k in masks)
    # Training the control left the ticket's own state as it was.
    assert cb.phase == "pruned" and cb.history == ticket_history
    assert all(torch.equal(cb.round_masks[k], ticket_round_masks[k]) for k in masks)
    assert all(torch.equal(cb.masks[k], ticket_next_masks[k]) for k in masks)
    assert not all(torch.equal(fork.masks[k], ticket_next_masks[k]) for k in masks)  # the fork pruned its own
    with pytest.raises(ValueError, match=r"Control masks must name the parameters \['conv.weight'"):
        driving.fork(cb, {"conv.weight": masks["conv.weight"]}, init)


def test_run_lottery_rejects_unknown_controls(tmp_path):
    with pytest.raises(
        ValueError, match=r"`controls` must be distinct entries of \['random_reinit', 'random_prune', 'snip'"
    ):
        run_lottery(ConvNet(), None, rounds=2, controls=["random_init"], out_dir=tmp_path)  # type: ignore[arg-type]


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED_DATA / "FashionMNIST").is_dir(), reason="../shared/data not present")
def test_real_fashion_mnist_ticket_is_not_worse_than_random_reinit(tmp_path):
    """A few rounds on a slice of the real data: at ~6% of the weights the ticket holds up."""
    torch.manual_seed(0)
    dm = FashionMNISTDataModule(SHARED_DATA, batch_size=128, val_size=5000)
    model = LotteryClassifier(net=MLP((784, 300, 100, 10)), lr=1.2e-3)
    lottery = LotteryTicketCallback(amount=0.6, rates={"net.layers.2.weight": 0.3}, verbose=False)
    trainer = round_trainer(max_epochs=3, limit_train_batches=80, logger=False)
    rows = run_lottery(
        model,
        dm,
        rounds=4,
        lottery=lottery,
        trainer=trainer,
        out_dir=tmp_path,
        progress=False,
        controls=["random_reinit"],
    )
    last = rows[-1]
    assert last.density < 0.07
    ticket, reinit = last.metrics["test_acc"], last.controls["random_reinit"]["test_acc"]
    # Noise: one 10,000-image test set (std. error ~0.3%) and one training run each; 1% is a few sigma.
    assert ticket >= reinit - 0.01, (ticket, reinit)


@pytest.mark.parametrize("kind", AT_INIT)
@pytest.mark.parametrize(("scope", "rates"), [("global", {"head.weight": 0.3}), ("layerwise", {})])
def test_pruning_at_init_keeps_the_tickets_total_in_one_ranking_from_its_init(tmp_path, kind, scope, rates):
    """As published: one ranking over every pruned tensor at the ticket's total, whatever the ticket's pools;
    `<method>:layerwise` keeps the ticket's count in every tensor."""
    torch.manual_seed(0)
    data, model = tiny_images(), ConvNet()
    cb = LotteryTicketCallback(amount=0.6, scope=scope, rates=rates, verbose=False)
    for _ in range(2):
        lean_trainer(tmp_path, callbacks=[cb]).fit(model, loader(data, shuffle=True))
    ticket = cb.round_masks
    masks, init = _make(kind, model, cb, data, seed=1)
    assert sum(int(m.sum()) for m in masks.values()) == sum(int(m.sum()) for m in ticket.values())
    assert any(int(masks[n].sum()) != int(ticket[n].sum()) for n in ticket)  # its own layer counts
    layerwise, _ = _make(f"{kind}:layerwise", model, cb, data, seed=1)
    assert all(int(layerwise[n].sum()) == int(ticket[n].sum()) for n in ticket)
    assert any(not torch.equal(layerwise[n], ticket[n]) for n in ticket)  # chosen by its own score
    snapshot = cb.snapshot
    assert all(torch.equal(init[k], snapshot[k]) for k in snapshot)  # trained from the ticket's initialization


def test_snip_control_scores_the_initial_network_on_the_scoring_batch(tmp_path):
    model, cb, data = _one_round(tmp_path)
    masks, _ = _make("snip", model, cb, data, seed=0)
    initial = ConvNet()
    initial.load_state_dict(cb.snapshot)
    x, y = next(iter(loader(data)))
    names = list(cb.round_masks)
    scores = snip_scores(initial, names, lambda m: torch.nn.functional.cross_entropy(m(x), y))
    flat = torch.cat([scores[n].flatten() for n in names])
    keep = sum(int(m.sum()) for m in cb.round_masks.values())
    threshold = torch.sort(flat, descending=True).values[keep - 1]
    for name in names:  # one pool, the highest |g * w| of the initial network survive
        assert bool((scores[name][masks[name]] >= threshold).all()) and bool(
            (scores[name][~masks[name]] <= threshold).all()
        )


def test_controls_that_read_data_say_what_they_lack(tmp_path):
    model, cb, _ = _one_round(tmp_path)
    ticket = TicketRound(cb.round_masks, cb.snapshot, model)
    for control in ("snip", "grasp:inverted", "synflow:shuffled"):
        method = control.split(":")[0]
        with pytest.raises(ValueError, match=f"The {method} control scores the initial network on a training batch"):
            control_masks_and_init(control, ticket, 0)
    masks, _ = control_masks_and_init("magnitude_init:reinit", ticket, 0)  # reads no data
    assert sum(int(m.sum()) for m in masks.values()) == sum(int(m.sum()) for m in cb.round_masks.values())


def test_synflow_control_gives_the_same_masks_for_any_batch(tmp_path):
    model, cb, data = _one_round(tmp_path)
    noise = (
        torch.randn(16, 1, 8, 8, generator=torch.Generator().manual_seed(9)) * 100,
        torch.zeros(16, dtype=torch.long),
    )
    batches = [lambda: ScoringBatch(next(iter(loader(data)))), lambda: ScoringBatch(noise, 4, 4)]
    made = [control_masks_and_init("synflow", TicketRound(cb.round_masks, cb.snapshot, model, b), 0) for b in batches]
    assert all(torch.equal(made[0][0][k], made[1][0][k]) for k in cb.round_masks)
    assert sum(int(m.sum()) for m in made[0][0].values()) == sum(int(m.sum()) for m in cb.round_masks.values())
