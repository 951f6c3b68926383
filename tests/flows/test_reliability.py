"""Reliability end to end: real DDP (2 CPU processes, gloo), kills mid-write, a diverging round, determinism."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from cli_helpers import lth, lth_here, read_csv, run_folder, tiny_config
from conftest import REPO, ConvNet, lean_trainer, loader, round_trainer, tiny_images

from lth_lightning import MLP, FashionMNISTDataModule, LotteryClassifier, LotteryTicketCallback, run_lottery
from lth_lightning.experiment.record.paths import RunPaths
from lth_lightning.io import load_tensors
from lth_lightning.pruning.magnitude import keep_count
from lth_lightning.pruning.packing import unpack_masks
from lth_lightning.pruning.stability import error_barrier

TOTAL = 784 * 32 + 32 * 16 + 16 * 10


def _process_group_at_exit(probe_dir):
    return {path.name: path.read_text() for path in sorted(probe_dir.glob("exit_rank*.txt"))}


def _probe_records(probe_dir):
    records = {}
    for path in probe_dir.glob("*.json"):
        record = json.loads(path.read_text())
        records[(record["rank"], record["round"], record["fit"])] = record
    return records


def _check_ranks_agree(records, fits):
    """Both ranks trained the same fits (``fits[r]`` in round ``r``) with the same masks, from rank 0's init."""
    assert sorted(records) == [(rank, r, k) for rank in (0, 1) for r, n in enumerate(fits) for k in range(n)]
    init = records[(0, 0, 0)]["init"]
    for r, n in enumerate(fits):
        for k in range(n):
            zero, one = records[(0, r, k)], records[(1, r, k)]
            for key in ("round_masks", "masks"):
                assert zero[key] == one[key], f"{key} differ across ranks in round {r}, fit {k}"
            assert zero["snapshot"] == one["snapshot"] == init, f"snapshot is not rank 0's init in round {r}, fit {k}"


@pytest.mark.slow
def test_lth_fit_with_ddp_on_two_processes(tmp_path, tiny_data):
    config = tiny_config(tmp_path, tiny_data, rounds=3, stack=False)
    probe = tmp_path / "probe"
    ddp = ["--trainer.devices", "2", "--trainer.strategy", "ddp"]
    result = lth(
        "fit",
        "-c",
        str(config),
        *ddp,
        "--trainer.callbacks+=cli_helpers.RankProbe",
        f"--trainer.callbacks.out_dir={probe}",
        cwd=tmp_path,
    )
    _check_ranks_agree(_probe_records(probe), [1, 1, 1])
    # Each rank destroys its gloo process group while the interpreter is whole (left to finalization,
    # gloo's threads can abort a rank, and Lightning's launcher then kills every rank).
    assert _process_group_at_exit(probe) == {"exit_rank0.txt": "destroyed", "exit_rank1.txt": "destroyed"}
    run = run_folder(result)
    rows = read_csv(run / "results.csv")
    assert [float(r["density"]) for r in rows] == [keep_count(TOTAL, 0.5, r) / TOTAL for r in range(3)]
    assert result.stdout.count("Run folder:") == 1  # printed by rank zero only
    # Files are written by rank zero alone: every TensorBoard event file comes from one process.
    pids = {p.name.split(".")[-2] for p in run.glob("tensorboard/*/events.out.tfevents.*")}
    assert len(pids) == 1
    assert not list(run.rglob("*.tmp")) and not list(run.rglob("*.part"))
    # Each rank trains on its own half of the 240 examples: 4 batches of 32 per epoch, 2 epochs.
    assert int(rows[0]["steps"]) == 2 * 4
    # Stacking composes with DDP: every rank holds all members, the data is sharded as before; same results.
    stacked = tmp_path / "stacked"
    stacked.mkdir()
    stacked_config = tiny_config(stacked, tiny_data, rounds=3, stack=True)
    keep = ["--lottery.keep_checkpoints", "true"]
    stacked_run = run_folder(lth("fit", "-c", str(stacked_config), *ddp, *keep, cwd=stacked))
    assert len(list(stacked_run.parent.glob("stacked/round_0[0-2]-*/last.ckpt"))) == 3
    stacked_rows = read_csv(stacked_run / "results.csv")
    assert [r["density"] for r in stacked_rows] == [r["density"] for r in rows]
    for got, want in zip(stacked_rows, rows, strict=True):
        assert float(got["test_acc"]) == pytest.approx(float(want["test_acc"]), abs=1e-5)
    for r in range(3):
        got = unpack_masks(torch.load(RunPaths(stacked_run).lottery_state(r), weights_only=True)["masks"])
        want = unpack_masks(torch.load(RunPaths(run).lottery_state(r), weights_only=True)["masks"])
        assert all(torch.equal(got[k], want[k]) for k in want)


@pytest.mark.slow
def test_python_driver_with_ddp_on_two_processes(tmp_path, tiny_data):
    script = REPO / "tests" / "scripts" / "ddp_driver.py"
    probe = tmp_path / "probe"
    env = {**os.environ, "PYTHONPATH": str(REPO / "tests")}
    result = subprocess.run(
        [sys.executable, str(script), str(tiny_data), str(tmp_path / "out"), str(probe)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    # Round 0: the ticket and its instability copy; round 1: the ticket, SNIP, SynFlow, the copy. SNIP scores a
    # batch that each rank reads from its own shard: the masks of rank 0 are every rank's.
    _check_ranks_agree(_probe_records(probe), [2, 4])
    assert _process_group_at_exit(probe) == {"exit_rank0.txt": "destroyed", "exit_rank1.txt": "destroyed"}
    run = tmp_path / "out" / "ddp" / "seed_0"
    rows = read_csv(run / "results.csv")
    assert [float(r["density"]) for r in rows] == [1.0, keep_count(TOTAL, 0.5, 1) / TOTAL]
    for control in ("snip", "synflow"):
        masks = load_tensors(RunPaths(run).control_masks(1, control))
        assert sum(int(m.sum()) for m in masks.values()) == keep_count(TOTAL, 0.5, 1)
        assert 0 <= float(rows[1][f"{control}_test_acc"]) <= 1
    assert all(
        float(r["instability"])
        == pytest.approx(error_barrier(json.loads(RunPaths(run).metrics(int(r["round"])).read_text())["path_errors"]))
        for r in rows
    )


@pytest.mark.slow
def test_ddp_spawn_is_refused_with_the_reason(tmp_path):
    cb = LotteryTicketCallback(verbose=False)
    trainer = lean_trainer(tmp_path, callbacks=[cb], strategy="ddp_spawn", devices=2)
    with pytest.raises(Exception, match=r"does not support the 'spawn' launcher .* Use strategy='ddp'"):
        trainer.fit(ConvNet(), loader(tiny_images(32)))


@pytest.mark.slow
def test_kill_while_writing_a_checkpoint_then_resume(tmp_path, tiny_data, capsys):
    config = tiny_config(tmp_path, tiny_data, rounds=2, stack=False)
    marker = tmp_path / "killed"
    kill = [
        "--trainer.callbacks+=cli_helpers.KillAt",
        "--trainer.callbacks.round=1",
        "--trainer.callbacks.epoch=1",
        f"--trainer.callbacks.marker={marker}",
        "--trainer.callbacks.at=checkpoint",
    ]
    killed = lth("fit", "-c", str(config), *kill, cwd=tmp_path, check=False)
    assert killed.returncode == -9 and marker.exists()
    run = run_folder(killed)
    # The epoch-0 checkpoint of round 1 is intact (the kill came while the next one was being made).
    state = torch.load(RunPaths(run).last_checkpoint(1), weights_only=False)
    assert state["epoch"] == 0 and state["callbacks"]["LotteryTicketCallback"]["round"] == 1
    lth_here(capsys, "fit", "-c", str(config), *kill)  # the rerun, in this process (the marker keeps KillAt quiet)
    clean = tmp_path / "clean"
    clean.mkdir()
    out, _ = lth_here(capsys, "fit", "-c", str(tiny_config(clean, tiny_data, rounds=2, stack=False)))
    clean_run = Path(re.findall(r"Run folder: (\S+)", out)[-1])
    got = unpack_masks(torch.load(RunPaths(run).lottery_state(1), weights_only=True)["masks"])
    want = unpack_masks(torch.load(RunPaths(clean_run).lottery_state(1), weights_only=True)["masks"])
    assert all(torch.equal(got[k], want[k]) for k in want)
    assert [r["test_acc"] for r in read_csv(run / "results.csv")] == [
        r["test_acc"] for r in read_csv(clean_run / "results.csv")
    ]


class Diverging(LotteryClassifier):
    """Trains normally in round 0, then its loss becomes NaN."""

    def training_step(self, batch, batch_idx):
        loss = super().training_step(batch, batch_idx)
        if "round_01" in str(self.trainer.default_root_dir):
            loss = loss * float("nan")
        return loss


def test_nan_loss_stops_naming_the_round_and_keeps_finished_rounds(tmp_path, tiny_data):
    dm = FashionMNISTDataModule(tiny_data, batch_size=32, val_size=60)
    model = Diverging(net=MLP((784, 16, 10)), lr=0.01)
    trainer = round_trainer()
    with pytest.raises(FloatingPointError, match=r"round 1 ended with NaN or infinite weights in \['net.layers.0"):
        run_lottery(model, dm, rounds=3, trainer=trainer, out_dir=tmp_path, progress=False)
    (run,) = tmp_path.glob("*/seed_0")
    assert RunPaths(run).metrics(0).is_file() and not RunPaths(run).metrics(1).exists()
    assert [r["round"] for r in read_csv(run / "results.csv")] == ["0"]


@pytest.mark.slow
def test_same_seed_same_masks_and_metrics(tmp_path, tiny_data):
    def run(out):
        pl.seed_everything(3)
        dm = FashionMNISTDataModule(tiny_data, batch_size=32, val_size=60)
        lottery = LotteryTicketCallback(amount=0.5, verbose=False)
        trainer = round_trainer(max_epochs=2, logger=False)
        rows = run_lottery(
            LotteryClassifier(net=MLP((784, 32, 10)), lr=0.01),
            dm,
            rounds=3,
            lottery=lottery,
            trainer=trainer,
            out_dir=out,
            progress=False,
            controls=["random_prune"],
        )
        return lottery.masks, [r.flat() for r in rows]

    masks_a, rows_a = run(tmp_path / "a")
    masks_b, rows_b = run(tmp_path / "b")
    assert all(torch.equal(masks_a[k], masks_b[k]) for k in masks_a)
    strip = [{k: v for k, v in row.items() if k != "seconds"} for row in rows_a]
    assert strip == [{k: v for k, v in row.items() if k != "seconds"} for row in rows_b]
