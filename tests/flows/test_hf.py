"""Hugging Face models as users wrap them: tiny configs built offline, every linear map pruned by default."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import pytest
import torch
from conftest import lean_trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from torch import nn
from torch.utils.data import DataLoader

from lth_lightning import LotteryTicketCallback
from lth_lightning.pruning.magnitude import keep_count, prune
from lth_lightning.pruning.targets import magnitudes, select_targets

transformers = pytest.importorskip("transformers")


def _bert() -> tuple[nn.Module, dict[str, Any]]:
    config = transformers.BertConfig(
        vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
        max_position_embeddings=16, num_labels=3, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    )  # fmt: skip
    return transformers.BertForSequenceClassification(config), {"labels": torch.tensor([0, 1, 2, 1])}


def _gpt2() -> tuple[nn.Module, dict[str, Any]]:
    config = transformers.GPT2Config(
        vocab_size=64, n_embd=16, n_layer=1, n_head=2, n_positions=16, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
    )  # fmt: skip
    return transformers.GPT2LMHeadModel(config), {"labels": None}


def _llama() -> tuple[nn.Module, dict[str, Any]]:
    config = transformers.LlamaConfig(
        vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=1, max_position_embeddings=16,
    )  # fmt: skip
    return transformers.LlamaForCausalLM(config), {"labels": None}


def _t5() -> tuple[nn.Module, dict[str, Any]]:
    config = transformers.T5Config(
        vocab_size=64, d_model=16, d_kv=8, d_ff=32, num_layers=1, num_decoder_layers=1, num_heads=2, dropout_rate=0.0,
        decoder_start_token_id=0, pad_token_id=0,
    )  # fmt: skip
    return transformers.T5ForConditionalGeneration(config), {"labels": None}


def _vit() -> tuple[nn.Module, dict[str, Any]]:
    config = transformers.ViTConfig(
        image_size=8, patch_size=4, num_channels=1, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=32, num_labels=3, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    )  # fmt: skip
    return transformers.ViTForImageClassification(config), {"labels": torch.tensor([0, 1, 2, 1])}


# Dropout off: it draws from torch's random state, which a Lightning checkpoint does not keep, so a resumed round
# would draw other dropout masks than the uninterrupted one.
MODELS = {"bert": _bert, "gpt2": _gpt2, "llama": _llama, "t5": _t5, "vit": _vit}


def _batches(kind: str, labels: torch.Tensor | None, n: int = 2) -> DataLoader:
    g = torch.Generator().manual_seed(0)
    out = []
    for _ in range(n):
        if kind == "vit":
            batch = {"pixel_values": torch.randn(4, 1, 8, 8, generator=g)}
        else:
            batch = {"input_ids": torch.randint(0, 64, (4, 8), generator=g)}
        batch["labels"] = labels if labels is not None else torch.randint(0, 64, (4, 8), generator=g)
        out.append(batch)
    return DataLoader(out, batch_size=None)  # each item is a batch already


class HFModule(pl.LightningModule):
    """How a Lightning project wraps a transformers model: the model's own loss."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self.model(**batch).loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=1e-2)


def _linear_maps(module: nn.Module) -> set[int]:
    """An independent list of every linear map's weight: torch's layers and any class named Conv1D."""
    layers = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
    return {id(m.weight) for m in module.modules() if isinstance(m, layers) or type(m).__name__ == "Conv1D"}


class MaskProbe(pl.Callback):
    """Checks the pruned weights are zero before every training forward pass and after every step."""

    def __init__(self, lottery: LotteryTicketCallback) -> None:
        self.lottery, self.checked = lottery, 0
        self.start: dict[str, torch.Tensor] = {}

    def on_train_start(self, trainer, pl_module):
        self.start = {k: v.detach().clone() for k, v in pl_module.state_dict().items()}

    def _check(self, pl_module):
        params = dict(pl_module.named_parameters())
        for name, mask in self.lottery.round_masks.items():
            assert bool((params[name].detach()[~mask] == 0).all()), name
        self.checked += 1

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self._check(pl_module)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self._check(pl_module)


@pytest.mark.parametrize("kind", list(MODELS))
def test_tiny_transformers_prune_every_linear_map_rewind_and_resume(tmp_path, kind):
    torch.manual_seed(0)
    model, extra = MODELS[kind]()
    module = HFModule(model)
    data = _batches(kind, extra["labels"])
    selection = select_targets(module)
    params = dict(module.named_parameters())
    assert {id(params[t.name]) for t in selection.targets} == _linear_maps(module)  # every linear map, nothing else
    names = {alias: t.name for t in selection.targets for alias in (t.name, *t.aliases)}  # a tied head's names
    lottery = LotteryTicketCallback(amount=0.5, verbose=False)
    lean_trainer(tmp_path, callbacks=[lottery], max_epochs=2).fit(module, data)
    snapshot = lottery.snapshot
    probe = MaskProbe(lottery)
    checkpoints = ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_epochs=1, save_top_k=-1)
    trainer = lean_trainer(tmp_path, callbacks=[lottery, probe, checkpoints], max_epochs=2, enable_checkpointing=True)
    trainer.fit(module, data)
    assert probe.checked == 8  # before and after each of the 4 steps
    masks = lottery.round_masks
    for name, value in probe.start.items():  # rewound exactly: the initial state, pruned weights zeroed
        expected = snapshot[name] * masks[names[name]] if name in names else snapshot[name]
        assert torch.equal(value, expected), name
    final_masks, final = lottery.masks, {k: v.detach().clone() for k, v in module.state_dict().items()}
    # A fresh process resumes the round from its checkpoint after the first epoch and ends as the round did.
    resumed_lottery = LotteryTicketCallback(amount=0.5, verbose=False)
    resumed = HFModule(MODELS[kind]()[0])
    mid = next(p for p in (tmp_path / "ckpt").iterdir() if "epoch=0" in p.name)
    lean_trainer(tmp_path, callbacks=[resumed_lottery], max_epochs=2).fit(resumed, data, ckpt_path=mid)
    assert all(torch.equal(resumed_lottery.masks[k], final_masks[k]) for k in final_masks)
    assert all(torch.equal(resumed.state_dict()[k], final[k]) for k in final)


def test_a_conv1d_weight_is_pruned_as_its_linear_twin():
    torch.manual_seed(0)
    conv = transformers.pytorch_utils.Conv1D(24, 16)  # nf=24 outputs, nx=16 inputs: weight (16, 24)
    nn.init.normal_(conv.weight)
    linear = nn.Linear(16, 24)
    with torch.no_grad():
        linear.weight.copy_(conv.weight.t())
    x = torch.randn(3, 16)
    torch.testing.assert_close(conv(x), linear(x) - linear.bias + conv.bias)  # the same linear map
    pruned = []
    for layer in (nn.Sequential(conv, nn.Linear(24, 4)), nn.Sequential(linear, nn.Linear(24, 4))):
        targets = list(select_targets(layer).targets)
        weights = magnitudes(layer, targets)
        pruned.append(prune(weights, {n: torch.ones_like(w, dtype=torch.bool) for n, w in weights.items()}, 0.7))
    assert torch.equal(pruned[0]["0.weight"], pruned[1]["0.weight"].t())
    assert torch.equal(pruned[0]["1.weight"], pruned[1]["1.weight"])


def test_library_linear_maps_are_recognised_by_name_and_reported():
    class Conv1D(nn.Module):  # as transformers defines it, without importing transformers
        def __init__(self) -> None:
            super().__init__()
            self.weight = nn.Parameter(torch.randn(4, 6))

    Conv1D.__module__, Conv1D.__qualname__ = "transformers.pytorch_utils", "Conv1D"

    class Projection(Conv1D):  # a subclass counts too
        pass

    net = nn.Sequential(Conv1D(), Projection(), nn.Embedding(5, 4))
    selection = select_targets(net)
    assert [t.name for t in selection.targets] == ["0.weight", "1.weight"]
    assert "Linear maps of library classes recognised: transformers.pytorch_utils.Conv1D (2 layers)." in (
        selection.describe()
    )
    assert "2.weight  (5, 4)  Embedding" in selection.describe()  # an untied embedding stays out


def test_layerwise_scope_and_rates_work_on_conv1d_layers(tmp_path):
    torch.manual_seed(0)
    module = HFModule(_gpt2()[0])
    lottery = LotteryTicketCallback(amount=0.5, scope="layerwise", rates={"*.c_attn.weight": 0.25}, verbose=False)
    lean_trainer(tmp_path, callbacks=[lottery], max_epochs=1).fit(module, _batches("gpt2", None))
    params = dict(module.named_parameters())
    for name, mask in lottery.masks.items():
        rate = 0.25 if name.endswith("c_attn.weight") else 0.5
        assert int(mask.sum()) == keep_count(params[name].numel(), rate, 1), name  # each tensor at its own rate
    assert "model.transformer.h.0.attn.c_attn.weight" in lottery.masks
