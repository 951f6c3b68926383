"""The round loop (lth_lightning/experiment/rounds/loop.py): what a failure or an interruption leaves and says."""

from __future__ import annotations

import pytest
from conftest import tiny_experiment

from lth_lightning.experiment.record.store import RunStore
from lth_lightning.experiment.rounds import loop


def test_a_run_refused_after_it_started_leaves_no_folder_it_made(tiny_data, tmp_path):
    out = tmp_path / "new" / "deeper"
    with pytest.raises(ValueError, match="`monitor` 'val/nope' was never logged"):
        tiny_experiment(tiny_data, out, monitor="val/nope")
    assert list(tmp_path.iterdir()) == []  # not even the out_dir this invocation created


def test_the_rounds_bar_is_closed_before_the_interruption_is_said(tiny_data, tmp_path, monkeypatch):
    """In a terminal, a line said over an open bar is overwritten by its redraw ("tacked round 1 was interrupted")."""
    said = []
    monkeypatch.setattr(loop, "in_terminal", lambda: True)
    monkeypatch.setattr(loop.RoundProgress, "close", lambda self: said.append("bar closed"))
    monkeypatch.setattr(RunStore, "say_interrupted", lambda self, error: said.append("interrupted"))
    monkeypatch.setattr(RunStore, "save_results", lambda self, rows: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        tiny_experiment(tiny_data, tmp_path, progress=True)
    assert said[:2] == ["bar closed", "interrupted"]
