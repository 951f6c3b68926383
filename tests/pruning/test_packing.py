"""Masks at one bit per weight: in the callback's state and checkpoints, and states saved before packing."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import ConvNet, lean_trainer, loader
from lightning.pytorch.callbacks import ModelCheckpoint

from lth_lightning import LotteryTicketCallback
from lth_lightning.pruning.packing import is_packed, pack_mask, pack_masks, unpack_mask, unpack_masks


@pytest.mark.parametrize("shape", [(0,), (1,), (7,), (8,), (9,), (3, 5, 7), (64, 33)])
def test_packed_masks_round_trip_at_one_bit_per_weight(shape):
    mask = torch.rand(shape, generator=torch.Generator().manual_seed(len(shape))) < 0.4
    packed = pack_mask(mask)
    assert is_packed(packed) and packed["bits"].dtype == torch.uint8
    assert packed["bits"].numel() == math.ceil(math.prod(shape) / 8)
    back = unpack_mask(packed)
    assert back.dtype == torch.bool and back.shape == mask.shape and torch.equal(back, mask)
    # Bit order: the first weight is the highest bit of the first byte.
    if mask.numel() >= 8:
        first = sum(int(b) << (7 - i) for i, b in enumerate(mask.flatten()[:8]))
        assert int(packed["bits"][0]) == first


def test_unpack_masks_reads_packed_and_plain_masks_and_refuses_wrong_sizes():
    plain = {"a": torch.tensor([True, False, True]), "b": torch.ones(2, 2, dtype=torch.bool)}
    mixed = {"a": pack_mask(plain["a"]), "b": plain["b"]}
    assert all(torch.equal(unpack_masks(mixed)[k], plain[k]) for k in plain)
    assert all(torch.equal(unpack_masks(pack_masks(plain))[k], plain[k]) for k in plain)
    with pytest.raises(ValueError, match=r"A packed mask of shape \(3, 4\) needs 2 uint8 bytes, got 1 of torch.uint8"):
        unpack_mask({"bits": torch.zeros(1, dtype=torch.uint8), "shape": [3, 4]})
    with pytest.raises(ValueError, match=r"needs 1 uint8 bytes, got 1 of torch.int64"):
        unpack_mask({"bits": torch.zeros(1, dtype=torch.long), "shape": [3]})


def _two_rounds(tmp_path, data, **callback_kwargs):
    torch.manual_seed(3)
    model = ConvNet()
    cb = LotteryTicketCallback(amount=0.3, verbose=False, **callback_kwargs)
    for name, save in (("a", False), ("b", True)):  # round 0, then round 1 with a checkpoint after each epoch
        extra = [ModelCheckpoint(dirpath=tmp_path / name, every_n_epochs=1, save_top_k=-1, filename="{epoch}")]
        callbacks = [cb, *(extra if save else [])]
        trainer = lean_trainer(tmp_path / name, callbacks=callbacks, enable_checkpointing=save, max_epochs=2)
        trainer.fit(model, loader(data), loader(data))
    return model, cb


def test_checkpoints_hold_packed_masks_and_the_snapshot_once(tmp_path, data):
    _, cb = _two_rounds(tmp_path, data)
    state = cb.state_dict()
    for key in ("masks", "round_masks"):
        for name, packed in state[key].items():
            assert is_packed(packed) and packed["bits"].numel() == math.ceil(cb.masks[name].numel() / 8)
    again = cb.state_dict()
    assert all(state["snapshot"][k].data_ptr() == again["snapshot"][k].data_ptr() for k in state["snapshot"])
    saved = torch.load(tmp_path / "b" / "epoch=1.ckpt", weights_only=True)["callbacks"]
    (lottery,) = [v for k, v in saved.items() if k.startswith("LotteryTicketCallback")]
    assert lottery["version"] == 2 and all(is_packed(v) for v in lottery["masks"].values())


def test_a_checkpoint_from_before_packing_still_resumes(tmp_path, data):
    """A version-1 state (plain boolean masks) resumes to the same masks, snapshot and history."""
    _, cb = _two_rounds(tmp_path, data)
    ckpt = torch.load(tmp_path / "b" / "epoch=0.ckpt", weights_only=True)
    key = next(k for k in ckpt["callbacks"] if k.startswith("LotteryTicketCallback"))
    old = dict(ckpt["callbacks"][key])
    old.update(version=1, masks=unpack_masks(old["masks"]), round_masks=unpack_masks(old["round_masks"]))
    ckpt["callbacks"][key] = old
    torch.save(ckpt, tmp_path / "old.ckpt")
    for path in (tmp_path / "b" / "epoch=0.ckpt", tmp_path / "old.ckpt"):
        fresh = LotteryTicketCallback(amount=0.3, verbose=False)
        trainer = lean_trainer(tmp_path / path.stem, callbacks=[fresh], max_epochs=3)
        trainer.fit(ConvNet(), loader(data), loader(data), ckpt_path=path)
        assert fresh.round == 1 and fresh.phase == "pruned" and len(fresh.history) == 2
        assert all(torch.equal(fresh.round_masks[k], cb.round_masks[k]) for k in cb.round_masks)
        assert all(torch.equal(fresh.snapshot[k], cb.snapshot[k]) for k in cb.snapshot)
        assert fresh.history[0] == cb.history[0]


def test_a_bfloat16_module_keeps_a_bfloat16_snapshot_where_asked(tmp_path, data):
    class HalfConvNet(ConvNet):
        def training_step(self, batch, batch_idx):
            x, y = batch
            return super().training_step((x.to(torch.bfloat16), y), batch_idx)

        def validation_step(self, batch, batch_idx):
            x, y = batch
            return super().validation_step((x.to(torch.bfloat16), y), batch_idx)

    for device in ("cpu", "module"):
        torch.manual_seed(0)
        model = HalfConvNet().to(torch.bfloat16)
        init = {k: v.clone() for k, v in model.state_dict().items()}
        cb = LotteryTicketCallback(amount=0.5, snapshot_device=device, verbose=False)
        for _ in range(2):
            lean_trainer(tmp_path / device, callbacks=[cb]).fit(model, loader(data), loader(data))
        snapshot = cb.snapshot
        assert {k: v.dtype for k, v in snapshot.items()} == {k: v.dtype for k, v in init.items()}
        assert all(torch.equal(snapshot[k], init[k]) for k in init)
        assert cb.round == 1 and cb.density == pytest.approx(0.25, abs=0.01)
