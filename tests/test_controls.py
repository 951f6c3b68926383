"""The controls that make a ticket a ticket: random reinitialization and random pruning."""

from __future__ import annotations

from typing import get_args

import pytest
import torch
from conftest import SHARED_DATA, ConvNet, lean_trainer, loader, round_trainer, tiny_images

from lth_lightning import MLP, FashionMNISTDataModule, LotteryClassifier, LotteryTicketCallback, run_lottery
from lth_lightning.experiment.controls import CONTROLS, ControlName, control_masks_and_init


def _one_round(tmp_path):
    torch.manual_seed(0)
    data = tiny_images()
    model = ConvNet()
    cb = LotteryTicketCallback(amount=0.6, verbose=False)
    for _ in range(2):  # dense round, then one pruned round
        trainer = lean_trainer(tmp_path, callbacks=[cb])
        trainer.fit(model, loader(data, shuffle=True))
    return model, cb, data


def test_random_prune_keeps_per_layer_counts_and_the_original_init(tmp_path):
    model, cb, _ = _one_round(tmp_path)
    masks, init = control_masks_and_init("random_prune", cb.round_masks, cb.snapshot, model, seed=3)
    ticket = cb.round_masks
    for name in ticket:
        assert int(masks[name].sum()) == int(ticket[name].sum())
        assert not torch.equal(masks[name], ticket[name])
    snapshot = cb.snapshot
    assert all(torch.equal(init[k], snapshot[k]) for k in snapshot)
    again, _ = control_masks_and_init("random_prune", cb.round_masks, cb.snapshot, model, seed=3)
    assert all(torch.equal(again[k], masks[k]) for k in masks)  # reproducible from the seed


def test_random_reinit_keeps_masks_and_shares_no_weights_with_the_init(tmp_path):
    model, cb, _ = _one_round(tmp_path)
    masks, init = control_masks_and_init("random_reinit", cb.round_masks, cb.snapshot, model, seed=4)
    assert all(torch.equal(masks[k], cb.round_masks[k]) for k in masks)
    snapshot = cb.snapshot
    for name in ("conv.weight", "fc1.weight", "head.weight", "fc1.bias"):
        assert not bool((init[name] == snapshot[name]).any()), name
        # Drawn by the module's own initializer: same distribution (kaiming-uniform bound).
        assert init[name].abs().max() <= snapshot[name].abs().max() * 1.5
    # The original module is untouched.
    assert torch.equal(dict(model.named_parameters())["fc1.weight"].detach() != 0, cb.round_masks["fc1.weight"])
    with pytest.raises(ValueError, match="Unknown control 'shuffle'; allowed: random_reinit, random_prune"):
        control_masks_and_init("shuffle", cb.round_masks, cb.snapshot, model, seed=0)


@pytest.mark.parametrize("kind", ["random_reinit", "random_prune"])
def test_control_masks_stay_enforced_while_it_trains(tmp_path, kind):
    model, cb, data = _one_round(tmp_path)
    masks, init = control_masks_and_init(kind, cb.round_masks, cb.snapshot, model, seed=5)
    ticket_round_masks, ticket_next_masks, ticket_history = cb.round_masks, cb.masks, cb.history
    fork = cb.fork(masks, init)
    control = ConvNet()
    trainer = lean_trainer(tmp_path, callbacks=[fork], max_epochs=2)
    trainer.fit(control, loader(data, shuffle=True))
    params = dict(control.named_parameters())
    for name, mask in masks.items():
        assert torch.all(params[name][~mask] == 0), name
        assert bool((params[name][mask] != init[name][mask]).any())  # it trained
    assert fork.round == cb.round and all(torch.equal(fork.round_masks[k], masks[k]) for k in masks)
    # Training the control left the ticket's own state as it was.
    assert cb.phase == "pruned" and cb.history == ticket_history
    assert all(torch.equal(cb.round_masks[k], ticket_round_masks[k]) for k in masks)
    assert all(torch.equal(cb.masks[k], ticket_next_masks[k]) for k in masks)
    assert not all(torch.equal(fork.masks[k], ticket_next_masks[k]) for k in masks)  # the fork pruned its own
    with pytest.raises(ValueError, match=r"Control masks must name the parameters \['conv.weight'"):
        cb.fork({"conv.weight": masks["conv.weight"]}, init)


def test_run_lottery_rejects_unknown_controls(tmp_path):
    with pytest.raises(ValueError, match=r"`controls` must be distinct entries of \['random_reinit', 'random_prune'\]"):
        run_lottery(ConvNet(), None, rounds=2, controls=["random_init"], out_dir=tmp_path)  # type: ignore[arg-type]


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


def test_the_cli_choices_are_the_registered_controls():
    assert get_args(ControlName) == tuple(CONTROLS)  # one registry; the Literal only feeds --help
