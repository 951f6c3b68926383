"""What the executors do with a callback outside its fits (lth_lightning/callbacks/driving.py), held to what the
callback's own fits do."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from conftest import ConvNet, lean_trainer, loader, tiny_images

from lth_lightning import LotteryTicketCallback
from lth_lightning.callbacks.driving import fork, fresh_copy, record_round


def _fits(tmp_path, rounds: int) -> LotteryTicketCallback:
    torch.manual_seed(0)
    callback, model, data = (
        LotteryTicketCallback(amount=0.6, rates={"head.weight": 0.3}, verbose=False),
        ConvNet(),
        tiny_images(),
    )
    for _ in range(rounds):
        lean_trainer(tmp_path, callbacks=[callback]).fit(model, loader(data, shuffle=True))
    return callback


def test_a_fresh_copy_has_the_settings_and_starts_the_experiment_anew(tmp_path):
    trained = _fits(tmp_path, 1)
    copy = fresh_copy(trained, verbose=True)
    assert dataclasses.replace(trained.settings, verbose=True) == copy.settings
    assert copy.phase == "init" and copy.round == 0 and copy.masks == {} and trained.phase == "pruned"


def test_rounds_recorded_from_outside_end_as_the_callbacks_own_fits_end(tmp_path):
    trained = _fits(tmp_path, 2)
    recorded = fresh_copy(trained)
    for entry, masks in zip(trained.history, (trained.round_masks, trained.masks), strict=True):
        record_round(
            recorded, trained.snapshot, masks, steps=entry["steps"], epochs=entry["epochs"], metrics=entry["metrics"]
        )
    assert recorded.round == trained.round == 1 and recorded.phase == trained.phase == "pruned"
    assert recorded.history == trained.history  # the densities and layer densities from the masks trained with
    assert all(torch.equal(recorded.masks[k], trained.masks[k]) for k in trained.masks)
    assert all(torch.equal(recorded.snapshot[k], trained.snapshot[k]) for k in trained.snapshot)


def test_a_fork_is_the_same_round_under_other_masks_and_leaves_the_ticket_alone(tmp_path):
    trained = _fits(tmp_path, 2)
    before = trained.state.as_dict()
    masks = {k: torch.ones_like(m) for k, m in trained.round_masks.items()}
    forked = fork(trained, masks, trained.snapshot)
    assert forked.settings.retrain == "rewind" and not forked.settings.verbose
    assert forked.round == trained.round - 1 and forked.phase == "pruned"  # its next fit is this round again
    assert all(torch.equal(forked.masks[k], masks[k]) for k in masks)
    after = trained.state.as_dict()
    assert (
        all(torch.equal(after["masks"][k], before["masks"][k]) for k in masks) and after["history"] == before["history"]
    )
    with pytest.raises(ValueError, match=r"Control masks must name the parameters"):
        fork(trained, {"conv.weight": masks["conv.weight"]}, trained.snapshot)
