"""docs/analysis.md's recipes run on a small experiment of the shape they read (two seeds, random_prune)."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from conftest import REPO, two_seeds

PAGE = REPO / "docs" / "analysis.md"


@pytest.mark.slow
def test_the_recipes_run_on_an_experiment_and_say_what_they_measured(tiny_data, tmp_path):
    runs = two_seeds(tiny_data, tmp_path / "runs", rounds=3)
    (code,) = re.findall(r"```python\n(.*?)```", PAGE.read_text(), flags=re.S)
    line = next(x for x in code.splitlines() if x.startswith("experiment = Path("))
    script = tmp_path / "recipes.py"
    script.write_text(code.replace(line, f"experiment = Path({str(runs.experiment_dir)!r})"))
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    for png in ("accuracy_vs_weights_remaining.png", "initial_weights_kept_vs_pruned.png"):
        assert (tmp_path / png).stat().st_size > 10_000
    rounds = re.findall(r"seed_(\d) rounds \[([\d., ]+)\]", done.stdout)
    assert [seed for seed, _ in rounds] == ["0", "1"]
    for _, values in rounds:
        overlaps = [float(v) for v in values.split(", ")]
        assert overlaps == pytest.approx([0.5, 0.5], abs=0.01)  # IMP only removes: a round keeps half of the last
    (between,) = re.findall(r"seeds at round 2 ([\d.]+)", done.stdout)
    assert 0 < float(between) < 1  # two seeds' tickets differ
    assert re.search(r"mean \|initial\| kept [\d.]+ pruned [\d.]+", done.stdout)
    assert re.search(r"early stop at step \d+ of \d+ \d+ tensors", done.stdout)
