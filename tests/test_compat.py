"""Every private API of Lightning and torch that ``lth_lightning.compat`` wraps, checked against the installed versions.

If a Lightning or torch upgrade renames or changes one of these, this file fails first, naming it.
"""

from __future__ import annotations

import re
import warnings

import lightning.pytorch as pl
import pytest
import torch
import yaml
from conftest import REPO, ConvNet, lean_trainer, lightning_messages, loader, tiny_images
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


def test_a_fit_started_at_step_8_of_6_batch_epochs_trains_its_steps_8_to_18(tmp_path):
    class StartAt8(pl.Callback):  # 96 examples in batches of 16: 6 an epoch; step 8 is epoch 1's batch 2
        def __init__(self):
            self.seen, self.validated = [], []

        def on_train_start(self, trainer, pl_module):
            compat.start_training_at_step(trainer, 8, 6)

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if not self.seen:
                compat.skip_epoch_batches(trainer, 2)
            self.seen.append((trainer.global_step, trainer.current_epoch))

        def on_validation_end(self, trainer, pl_module):
            self.validated.append(trainer.global_step)

    start = StartAt8()
    data = loader(tiny_images())
    trainer = lean_trainer(tmp_path, max_epochs=3, callbacks=[start], limit_val_batches=1)
    trainer.fit(ConvNet(), data, data)
    assert start.seen == [(s, s // 6) for s in range(8, 18)] and start.validated == [12, 18]
    assert trainer.global_step == 18 and trainer.current_epoch == 3


def test_global_rank_reads_lightnings_rank_zero_state(monkeypatch):
    from lightning.pytorch.utilities.rank_zero import rank_zero_only

    assert compat.global_rank() == 0
    monkeypatch.setattr(rank_zero_only, "rank", 3)  # no default hides a vanished attribute: it would raise
    assert compat.global_rank() == 3


def test_lightnings_rank_zero_lines_go_to_the_logger_and_begin_as_named(tmp_path):
    from lightning.pytorch.utilities import rank_zero_info

    with lightning_messages(compat.RANK_ZERO_LOGGER) as said:
        rank_zero_info("probe line")
        lean_trainer(tmp_path, max_epochs=1).fit(ConvNet(), loader(tiny_images(32)))
    assert "probe line" in said
    for prefix in ("GPU available:", "TPU available:", "`Trainer.fit` stopped:"):
        assert prefix in compat.PER_TRAINER_LINES and any(line.startswith(prefix) for line in said), said


def test_rich_available_is_whether_lightnings_default_progress_bar_is_rich(tmp_path):
    from lightning.pytorch.callbacks import RichProgressBar, TQDMProgressBar

    bar = lean_trainer(tmp_path, enable_progress_bar=True).progress_bar_callback
    assert isinstance(bar, RichProgressBar if compat.rich_available() else TQDMProgressBar)


def test_the_deprecation_noise_is_still_made_by_a_fit(tmp_path):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        lean_trainer(tmp_path).fit(ConvNet(), loader(tiny_images(32)))
    assert any(re.match(compat.DEPRECATION_NOISE, str(w.message)) for w in caught)  # else drop the filter


def test_model_checkpoint_warns_about_a_folder_with_files_as_named(tmp_path):
    from lightning.pytorch.callbacks import ModelCheckpoint

    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "last.ckpt").write_text("x")
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", filename="last")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        lean_trainer(tmp_path, callbacks=[checkpoint], enable_checkpointing=True).fit(
            ConvNet(), loader(tiny_images(32))
        )
    expected = compat.CHECKPOINT_DIR_NOT_EMPTY.format(dirpath=tmp_path / "ckpt")
    assert any(str(w.message).startswith(expected) for w in caught)


def test_direct_hook_name_stores_lightnings_attribute_without_module_checks():
    from lth_lightning import MLP, LotteryClassifier

    module = LotteryClassifier(net=MLP((4, 3)))
    assert compat.CURRENT_FX_NAME in module.__dict__
    setattr(module, compat.CURRENT_FX_NAME, "training_step")
    assert module.__dict__[compat.CURRENT_FX_NAME] == "training_step"


def test_cli_value_and_parser_read_lightningclis_config(monkeypatch, tmp_path):
    from lth_lightning.cli.lottery_cli import LotteryCLI

    monkeypatch.chdir(tmp_path)
    cli = LotteryCLI(args=["-c", str(REPO / "configs" / "quick.yaml")], run=False)
    assert compat.cli_parser(cli, None) is cli.parser
    quick = yaml.safe_load((REPO / "configs" / "quick.yaml").read_text())
    assert (
        compat.cli_value(cli, cli.config_init, "trainer")["limit_train_batches"]
        == quick["trainer"]["limit_train_batches"]
    )


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


def test_attached_trainer_is_the_modules_trainer_or_none(tmp_path):
    model = ConvNet()
    assert compat.attached_trainer(model) is None
    with pytest.raises(RuntimeError, match="not attached to a `Trainer`"):  # why the private name is needed
        _ = model.trainer
    trainer = lean_trainer(tmp_path)
    model.trainer = trainer
    assert compat.attached_trainer(model) is trainer


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


def test_the_summary_table_is_lightnings_less_its_flops_total(tmp_path):
    """Breaks on an upgrade that renames `_format_summary_table` or changes its last line."""
    from lightning.pytorch.utilities.model_summary.model_summary import ModelSummary as Summary

    summary = Summary(ConvNet(), max_depth=1)
    data = [(name, values) for name, values in summary._get_summary_data() if name != "FLOPs"]
    modes = summary.total_training_modes
    table = compat.summary_table(
        data, summary.total_parameters, summary.trainable_parameters, summary.model_size, modes
    )
    assert table.splitlines()[-1].endswith("Modules in eval mode") and "Flops" not in table and "FLOPs" not in table
    assert "Trainable params" in table and " | Name " in " " + table.splitlines()[0]
