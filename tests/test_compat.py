"""Every private API of Lightning and torch that ``lth_lightning.compat`` wraps, checked against the installed versions.

If a Lightning or torch upgrade renames or changes one of these, this file fails first, naming it.
"""

from __future__ import annotations

import warnings

import lightning.pytorch as pl
import pytest
import torch
from conftest import ConvNet, lean_trainer
from torch import nn

from lth_lightning import compat


@pytest.mark.parametrize(("strategy", "method"), [("ddp_spawn", "spawn"), ("ddp_notebook", "fork"), ("ddp", None)])
def test_multiprocessing_start_method(tmp_path, strategy, method):
    trainer = lean_trainer(tmp_path, strategy=strategy, devices=2)
    assert compat.multiprocessing_start_method(trainer) == method


def test_multiply_all_multiplies_each_tensor_by_its_factor_in_place():
    tensors = [torch.tensor([1.0, 2.0, 3.0]), torch.tensor([[4.0, 5.0]])]
    originals = [t for t in tensors]
    compat.multiply_all_(tensors, [torch.tensor([1.0, 0.0, 1.0]), torch.tensor([[0.0, 2.0]])])
    assert all(t is o for t, o in zip(tensors, originals, strict=True))
    assert tensors[0].tolist() == [1.0, 0.0, 3.0] and tensors[1].tolist() == [[0.0, 10.0]]


def test_global_rank_reads_lightnings_rank_zero_state():
    assert compat.global_rank() == 0


def test_lightning_sets_the_current_hook_name_attribute():
    module = pl.LightningModule()
    assert compat.CURRENT_FX_NAME in module.__dict__  # the attribute LotteryClassifier stores directly


def test_detached_copy_leaves_the_trainer_with_the_original(tmp_path):
    model = ConvNet()
    trainer = lean_trainer(tmp_path)
    model.trainer = trainer
    copied = compat.detached_copy(model)
    assert model.trainer is trainer and copied._trainer is None
    original, copy = model.state_dict(), copied.state_dict()
    assert original.keys() == copy.keys() and all(torch.equal(original[k], copy[k]) for k in original)


def test_forward_pre_hooks_lists_registered_hooks():
    layer = nn.Linear(2, 2)

    def hook(module, args):
        return None

    layer.register_forward_pre_hook(hook)
    assert list(compat.forward_pre_hooks(layer)) == [hook]


def test_torch_parametrization_and_hook_classes():
    weight_norm = nn.utils.parametrizations.weight_norm(nn.Linear(3, 2))
    spectral = nn.utils.parametrizations.spectral_norm(nn.Linear(3, 2))
    assert type(weight_norm.parametrizations.weight[0]) is compat.WEIGHT_NORM
    assert type(spectral.parametrizations.weight[0]) is compat.SPECTRAL_NORM
    assert weight_norm.parametrizations.weight.original1.shape == (2, 3)  # the direction
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        old_weight_norm = nn.utils.weight_norm(nn.Linear(3, 2))
    old_spectral = nn.utils.spectral_norm(nn.Linear(3, 2))
    assert any(isinstance(h, compat.WeightNormHook) for h in compat.forward_pre_hooks(old_weight_norm))
    assert any(isinstance(h, compat.SpectralNormHook) for h in compat.forward_pre_hooks(old_spectral))
    assert {"weight_g", "weight_v"} <= {n for n, _ in old_weight_norm.named_parameters()}
    assert "weight_orig" in {n for n, _ in old_spectral.named_parameters()}
