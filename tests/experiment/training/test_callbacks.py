"""What an experiment's Trainers print: a bar without `v_num` in a terminal, a line per epoch in a log file."""

from __future__ import annotations

import re

import pytest
from conftest import ConvNet, lightning_messages, loader, tiny_images
from lightning.pytorch.callbacks import ProgressBar, TQDMProgressBar

from lth_lightning.experiment.training import callbacks as console
from lth_lightning.experiment.training.callbacks import EpochLine
from lth_lightning.experiment.training.trainer import make_trainer

SETTINGS = {"accelerator": "cpu", "devices": 1, "max_epochs": 2, "enable_model_summary": False}


def _trainer(tmp_path, **settings):
    return make_trainer("round_00/quality", [], {**SETTINGS, **settings}, tmp_path, None)


def _fit(trainer):
    data = loader(tiny_images(32))
    trainer.fit(ConvNet(), data, data)


@pytest.mark.parametrize("wanted", [None, True])
def test_a_terminal_gets_lightnings_bar_without_the_cut_version_field(tmp_path, monkeypatch, wanted):
    monkeypatch.setattr(console, "in_terminal", lambda: True)
    trainer = _trainer(tmp_path, enable_progress_bar=wanted)
    _fit(trainer)
    bar = trainer.progress_bar_callback
    assert isinstance(bar, ProgressBar) and trainer.logger is not None
    assert trainer.logger.version == "training"  # Lightning would show its last four characters, "ning"
    assert trainer.logger.label == "round_00/quality"  # the training's tags begin with its label
    shown = bar.get_metrics(trainer, trainer.lightning_module)
    assert "v_num" not in shown and "val_loss" not in shown  # nothing cut; val_loss is not a bar metric here


def test_a_log_file_gets_one_line_per_epoch_with_the_logged_values(tmp_path, monkeypatch):
    monkeypatch.setattr(console, "in_terminal", lambda: False)
    trainer = _trainer(tmp_path)
    assert trainer.progress_bar_callback is None
    assert sum(isinstance(c, EpochLine) for c in trainer.callbacks) == 1
    with lightning_messages() as said:
        _fit(trainer)
    lines = [line for line in said if line.startswith("round_00/quality: epoch")]
    assert [re.match(r"round_00/quality: epoch (\d)/2, step (\d+), val_loss [\d.]+$", x).groups() for x in lines] == [
        ("1", "2"),
        ("2", "4"),
    ]


def test_a_log_file_shows_a_bar_only_where_the_settings_ask_for_one(tmp_path, monkeypatch):
    monkeypatch.setattr(console, "in_terminal", lambda: False)
    assert isinstance(_trainer(tmp_path, enable_progress_bar=True).progress_bar_callback, ProgressBar)
    quiet = _trainer(tmp_path, enable_progress_bar=False)
    assert quiet.progress_bar_callback is None and not any(isinstance(c, EpochLine) for c in quiet.callbacks)
    own = TQDMProgressBar(refresh_rate=7)  # the user's bar is kept as it is, and no line is added
    trainer = _trainer(tmp_path, callbacks=[own])
    assert trainer.progress_bar_callback.refresh_rate == 7
    assert not any(isinstance(c, EpochLine) for c in trainer.callbacks)
