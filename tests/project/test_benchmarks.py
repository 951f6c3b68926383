"""The benchmark scripts run at tiny sizes and print their tables (no timing is asserted)."""

import re
import subprocess
import sys

import pytest
from conftest import REPO

pytestmark = pytest.mark.slow  # each starts the benchmark's own processes (`-m "not slow"` leaves them out)


def _run(script: str, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / script), *args], capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_epoch_speed_prints_its_tables():
    out = _run(
        "epoch_speed.py", "--epochs", "2", "--reps", "1", "--limit", "4", "--round-epochs", "1", "--round-reps", "1"
    )
    assert "| loop | s/epoch | x raw loop | x raw loop, fused Adam | peak memory (MB) |" in out
    names = ("raw PyTorch loop (tensor", "fused Adam (as ours)", "seed: DataLoader + PIL", "ModelPruning(LTH)", "ours:")
    for name in names:
        assert re.search(rf"\| [^|]*{re.escape(name)}[^|]* \| [\d.]+ \| [\d.]+ \| [\d.]+ \| \d+ \|", out), name
    assert re.search(r"\| raw PyTorch loop \(tensor \+ randperm\), notebook Adam \| [\d.]+ \| 1\.00 \|", out)
    ratio = r"[\d.]+ \[[\d.]+, [\d.]+\]"
    assert re.search(rf"\| ours \(run_lottery, 1 round\) \| [\d.]+ \| {ratio} \| {ratio} \|", out)
    assert "Masking (the weights re-masked after each step) per step" in out and "Plots + TensorBoard summary" in out


def test_sparse_inference_prints_its_table():
    out = _run("sparse_inference.py", "--densities", "1", "0.1", "--batches", "1", "4", "--reps", "1")
    rows = [line for line in out.splitlines() if re.match(r"\| (100|10)% \| [14] \|", line)]
    assert len(rows) == 4
    assert "batch 4: sparse beats dense" in out


def test_startup_prints_its_table_and_the_light_commands_load_no_lightning():
    out = _run("startup.py", "--reps", "1")
    for command in ("export", "aggregate", "compare"):
        assert re.search(rf"\| `lth {command} --help` \| [\d.]+ \| [\d.]+ \| no \|", out), command
    assert re.search(r"\| `lth fit --help` \| [\d.]+ \| 1\.00 \| yes \|", out)


def test_stacked_speed_prints_its_table():
    out = _run("stacked_speed.py", "--members", "1", "3", "--epochs", "2", "--limit", "20", "--reps", "1")
    for k in (1, 3):
        row = rf"\| {k} \| [\d.]+ \(runs: [\d.]+\) \| [\d.]+ ms \| \d+ \| [\d.]+ \| \d+ \| [\d.]+ \| [\d.]+ \|"
        assert re.search(row, out), k


def test_scale_prints_its_tables():
    out = _run("scale.py", "--sizes", "1M", "--steps", "2", "--reps", "1", "--densities", "0.04")
    number = r"-?[\d.]+"
    boundary = rf"\| 1\.0M \| {number} \({number} \+ {number}\) \| {number} \| {number} \| {number} \| 4\.25 \|"
    assert re.search(boundary, out), out[-2000:]
    for optimizer in ("adam", "sgd"):
        for kept in ("4.0",):  # the density the round keeps, to the weight
            step = (
                rf"\| 1\.0M \| {optimizer} \| {kept}% \| weights \| {number} / {number} \| [+-]{number}% "
                rf"\| {number} ms \({number}%\) \|"
            )
            assert re.search(step, out), (optimizer, kept, out[-2000:])


def test_neighbour_prints_its_table():
    out = _run("neighbour.py", "--steps", "3", "--spins", "1000", "--only-spins")
    assert re.search(r"^GOMP_SPINCOUNT=1000 +[\d.]+ +[\d.]+ +[\d.]+x +\(\d+ s\)$", out, flags=re.M), out


def test_validation_interval_prints_its_table():
    out = _run("validation_interval.py", "--steps", "40", "--reps", "1", "--intervals", "20", "--val", "600")
    assert re.search(r"\| none \| [\d.]+ \| 1\.00 \| 0% \|", out), out
    assert re.search(r"\| every 20 steps \| [\d.]+ \| [\d.]+ \| -?\d+% \|", out), out
