"""Golden runs of the experiment layer: what a refactoring must leave exactly as it was.

Three runs on tiny data (:func:`cli_helpers.write_tiny_fashion`): the quick config through
``LotteryCLI`` with two seeds and both controls, stacked and one network at a time, and the
README's drop-in loop (three fits of a plain Trainer with the callback). The quick runs hold the
data order fixed across seeds (``--lottery.data_order fixed``), as every run did when the record
was made: the option reproduces those runs exactly. Each is reduced to
what it decided and measured: every results row (``seconds`` left out), a digest of every
mask a round or control trained with, and the callback's history. ``tests/flows/test_golden.py``
compares a fresh record with ``tests/golden/experiment_layer.json``.

    python tests/golden_runs.py --write    # record anew (only when a change of results is intended)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from cli_helpers import write_tiny_fashion
from torch.utils.data import DataLoader, TensorDataset

from lth_lightning import MLP, LotteryClassifier, LotteryTicketCallback
from lth_lightning.cli.lottery_cli import LotteryCLI
from lth_lightning.experiment.record.paths import ExperimentPaths
from lth_lightning.io import load_tensors
from lth_lightning.pruning.packing import unpack_masks

REPO = Path(__file__).resolve().parents[1]
GOLDEN = REPO / "tests" / "golden" / "experiment_layer.json"


def _digest(masks: dict[str, torch.Tensor]) -> str:
    sha = hashlib.sha256()
    for name in sorted(masks):
        sha.update(name.encode())
        sha.update(masks[name].to(torch.bool).contiguous().numpy().tobytes())
    return sha.hexdigest()[:16]


def _history(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return json.loads(json.dumps(history, default=float))


def _folder(experiment: ExperimentPaths) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for run in experiment.runs():
        rows = json.loads(run.results.with_suffix(".json").read_text())
        for row in rows:
            row.pop("seconds", None)
        masks = {}
        for r in run.finished_rounds():
            masks[str(r)] = _digest(load_tensors(run.masks(r)))
            for control in ("random_reinit", "random_prune"):
                if run.control_masks(r, control).is_file():
                    masks[f"{r}/{control}"] = _digest(load_tensors(run.control_masks(r, control)))
        last = load_tensors(run.lottery_state(run.finished_rounds()[-1]))
        out[run.root.name] = {
            "rows": rows,
            "masks": masks,
            "next_masks": _digest(unpack_masks(last["masks"])),
            "history": _history(last["history"]),
        }
    return out


def quick(data: Path, out: Path, stack: bool) -> dict[str, Any]:
    """``lth fit -c configs/quick.yaml`` on tiny data, seeds 0 and 1, both controls (the config's)."""
    args = ["fit", "-c", str(REPO / "configs" / "quick.yaml"), "--data.data_dir", str(data)]
    args += ["--data.val_size", "60", "--data.batch_size", "48", "--trainer.limit_train_batches", "4"]
    args += ["--trainer.default_root_dir", str(out), "--trainer.enable_progress_bar", "false"]
    args += ["--trainer.accelerator", "cpu", "--lottery.seeds", "[0, 1]", "--lottery.progress", "false"]
    args += ["--lottery.stack", "true" if stack else "false"]
    args += ["--lottery.data_order", "fixed"]  # as recorded: both seeds on one data order (the default is the seed's)
    args += ["--trainer.val_check_interval", "1.0", "--trainer.limit_val_batches", "2"]  # as recorded: once an epoch
    LotteryCLI(args=args)
    (experiment,) = [ExperimentPaths(p) for p in out.iterdir() if p.is_dir()]
    return _folder(experiment)


def dropin() -> dict[str, Any]:
    """The README's drop-in loop: one fit per round, fresh Trainers, the same callback."""
    torch.manual_seed(0)
    x, y = torch.rand(256, 1, 28, 28), torch.randint(0, 10, (256,))
    train = DataLoader(TensorDataset(x, y), batch_size=64, shuffle=True)
    model = LotteryClassifier(net=MLP((784, 64, 32, 10)), lr=1e-3)
    lottery = LotteryTicketCallback(amount=0.2, rates={"net.layers.2.weight": 0.1}, verbose=False)
    for _ in range(3):
        trainer = pl.Trainer(
            max_epochs=1,
            callbacks=[lottery],
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            accelerator="cpu",
        )
        trainer.fit(model, train)
    return {"masks": _digest(lottery.masks), "history": _history(lottery.history)}


def record() -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        data = write_tiny_fashion(root / "data")
        return {
            "quick_stacked": quick(data, root / "stacked", stack=True),
            "quick_sequential": quick(data, root / "sequential", stack=False),
            "dropin": dropin(),
        }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help=f"write {GOLDEN.relative_to(REPO)}")
    if parser.parse_args().write:
        GOLDEN.parent.mkdir(parents=True, exist_ok=True)
        GOLDEN.write_text(json.dumps(record(), indent=1, sort_keys=True) + "\n")
        print(f"Wrote {GOLDEN}")
    else:
        json.dump(record(), sys.stdout, indent=1, sort_keys=True)
