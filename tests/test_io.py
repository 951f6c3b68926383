"""Atomic writes and safe loading (lth_lightning/io.py): a crafted pickle is refused, the umask is kept."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys

import pytest
import torch
from conftest import REPO

from lth_lightning.io import load_tensors, save_tensors

TOTAL = 784 * 32 + 32 * 16 + 16 * 10


class _Exploit:
    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_crafted_pickle_is_refused_not_executed(tmp_path):
    marker = tmp_path / "pwned"
    payload = _Exploit()
    payload.marker = marker
    path = tmp_path / "lottery.pt"
    with open(path, "wb") as fh:
        pickle.dump({"masks": payload}, fh)
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        load_tensors(path)
    assert not marker.exists()
    # What we write ourselves loads fine under the same rule.
    save_tensors({"masks": {"a": torch.ones(2, dtype=torch.bool)}, "round": 3}, tmp_path / "ok.pt")
    assert load_tensors(tmp_path / "ok.pt")["round"] == 3


@pytest.mark.slow
def test_written_files_respect_the_umask(tmp_path, tiny_data):
    """Results, plots, TensorBoard, checkpoints and exported tickets follow the umask (027: readable by the group)."""
    script = REPO / "tests" / "scripts" / "small_run.py"
    result = subprocess.run(
        [sys.executable, str(script), str(tiny_data), str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=300,
        umask=0o027,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    paths = list((tmp_path / "out").rglob("*"))
    names = {p.name for p in paths}
    assert {"results.csv", "accuracy_vs_weights_remaining.png", "ticket.pt", "ticket.json", "lottery.pt"} <= names
    assert {"last.ckpt", "dashboard"} <= names and any(n.startswith("events.out.tfevents") for n in names)
    wrong = {
        str(p): oct(p.stat().st_mode & 0o777)
        for p in paths
        if p.stat().st_mode & 0o777 != (0o750 if p.is_dir() else 0o640)
    }
    assert not wrong
