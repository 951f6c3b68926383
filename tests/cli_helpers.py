"""Helpers for driving `lth` as a user would: tiny data on disk, and a callback that kills the process."""

from __future__ import annotations

import atexit
import csv
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import torch
import yaml
from idx_files import tiny_arrays, write_dataset

from lth_lightning import LotteryTicketCallback


def write_tiny_fashion(data_dir: Path, n_train: int = 300, n_test: int = 100) -> Path:
    """Uncompressed tiny Fashion-MNIST-shaped files (read as is, no md5 to match)."""
    arrays = tiny_arrays(n_train, n_test)
    rng = np.random.default_rng(1)
    # Make the classes learnable: a bright band whose row depends on the label.
    for images, labels in (
        ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
        ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
    ):
        x, y = arrays[images], arrays[labels]
        x[:] = rng.integers(0, 60, x.shape, dtype=np.uint8)
        for i, label in enumerate(y):
            x[i, 2 + 2 * int(label) : 4 + 2 * int(label), :] = 250
    write_dataset(data_dir / "FashionMNIST" / "raw", arrays, gz=False)
    return data_dir


LTH = str(Path(sys.executable).parent / "lth")


def tiny_config(tmp_path: Path, data_dir: Path, **lottery) -> Path:
    config = {
        "seed_everything": 0,
        "trainer": {
            "accelerator": "cpu",
            "devices": 1,
            "max_epochs": 2,
            "enable_progress_bar": False,
            "enable_model_summary": False,
            "default_root_dir": str(tmp_path / "runs"),
        },
        "model": {
            "class_path": "lth_lightning.LotteryClassifier",
            "init_args": {
                "lr": 0.01,
                "net": {"class_path": "lth_lightning.MLP", "init_args": {"sizes": [784, 32, 16, 10]}},
            },
        },
        "data": {
            "class_path": "lth_lightning.FashionMNISTDataModule",
            "init_args": {"data_dir": str(data_dir), "batch_size": 32, "val_size": 60},
        },
        "lottery": {"rounds": 2, "amount": 0.5, "progress": False, **lottery},
    }
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def run_folder(result: subprocess.CompletedProcess) -> Path:
    """The folder `lth fit` says it writes to (the last "Run folder:" line), as a user reads it."""
    folders = re.findall(r"Run folder: (\S+)", result.stdout) or re.findall(r"Run folder: (\S+)", result.stderr)
    assert folders, result.stdout[-2000:] + result.stderr[-2000:]
    return Path(folders[-1])


def lth(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent)}
    result = subprocess.run([LTH, *args], cwd=cwd, capture_output=True, text=True, timeout=600, env=env)
    if check:
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    return result


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path) as fh:
        return list(csv.DictReader(fh))


class KillAt(pl.Callback):
    """Sends its own process ``signal_name`` (SIGKILL: a crash; SIGINT: Ctrl-C) once, in the given epoch of the given
    round.

    Args:
        round: Lottery round to kill in.
        epoch: Epoch of that round to kill in.
        marker: File created just before the kill; while it exists nothing happens.
        at: ``"epoch_start"``, or ``"checkpoint"``: while the epoch's checkpoint is being written.
    """

    def __init__(
        self, round: int, epoch: int, marker: str, at: str = "epoch_start", signal_name: str = "SIGKILL"
    ) -> None:
        self.round, self.epoch, self.marker, self.at = round, epoch, Path(marker), at
        self.signal = getattr(signal, signal_name)

    def _maybe_kill(self, trainer: pl.Trainer, where: str) -> None:
        lottery = next(c for c in trainer.callbacks if isinstance(c, LotteryTicketCallback))
        if (
            where == self.at
            and lottery.round == self.round
            and trainer.current_epoch == self.epoch
            and not self.marker.exists()
        ):
            self.marker.write_text("killed")
            os.kill(os.getpid(), self.signal)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._maybe_kill(trainer, "epoch_start")

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        self._maybe_kill(trainer, "checkpoint")


class RankProbe(pl.Callback):
    """Under DDP: make rank 1's initial weights differ before DDP broadcasts rank 0's, and record,
    per rank and round, hashes of the lottery masks and snapshot and of rank 0's initial weights.

    Made before any fit, it also records, per rank, whether the process group is still alive when
    the interpreter exits, after every exit handler registered later (they run first) has run.
    """

    def __init__(self, out_dir: str) -> None:
        self.out_dir = Path(out_dir)
        self.init_hash = ""
        atexit.register(_record_process_group_at_exit, self.out_dir)

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        lottery = next(c for c in trainer.callbacks if isinstance(c, LotteryTicketCallback))
        if lottery.phase == "init":
            if trainer.global_rank == 0:
                self.init_hash = tensor_hash(pl_module.state_dict())
            else:
                with torch.no_grad():
                    for p in pl_module.parameters():
                        p.add_(1.0)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        lottery = next(c for c in trainer.callbacks if isinstance(c, LotteryTicketCallback))
        rank = trainer.global_rank  # the ticket's fit, then its controls', then its instability copy's
        fit = len(list(self.out_dir.glob(f"rank{rank}_round{lottery.round}_fit*.json")))  # the probe is copied per fit
        record = {
            "rank": trainer.global_rank,
            "round": lottery.round,
            "fit": fit,
            "round_masks": tensor_hash(lottery.round_masks),
            "masks": tensor_hash(lottery.masks),
            "snapshot": tensor_hash(lottery.snapshot or {}),
            "init": self.init_hash,
        }
        self.out_dir.mkdir(parents=True, exist_ok=True)
        name = f"rank{trainer.global_rank}_round{lottery.round}_fit{fit}.json"
        (self.out_dir / name).write_text(json.dumps(record))


def _record_process_group_at_exit(out_dir: Path) -> None:
    from lightning.pytorch.utilities.rank_zero import rank_zero_only

    out_dir.mkdir(parents=True, exist_ok=True)
    alive = torch.distributed.is_available() and torch.distributed.is_initialized()
    (out_dir / f"exit_rank{rank_zero_only.rank}.txt").write_text("alive" if alive else "destroyed")


def tensor_hash(tensors: dict) -> str:
    digest = hashlib.sha256()
    for name in sorted(tensors):
        digest.update(name.encode())
        digest.update(tensors[name].detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


class UnderscoreMLP(pl.LightningModule):
    """A user's module that logs `val_loss`, `val_acc` and `test_acc` (not `val/loss` and `test/acc`)."""

    def __init__(self, lr: float = 0.01) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Flatten(), torch.nn.Linear(784, 24), torch.nn.ReLU(), torch.nn.Linear(24, 10)
        )
        self.lr = lr

    def training_step(self, batch, batch_idx):
        x, y = batch
        return torch.nn.functional.cross_entropy(self.net(x), y)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        logits = self.net(x)
        self.log("val_loss", torch.nn.functional.cross_entropy(logits, y))
        self.log("val_acc", (logits.argmax(1) == y).float().mean())

    def test_step(self, batch, batch_idx):
        x, y = batch
        self.log("test_acc", (self.net(x).argmax(1) == y).float().mean())

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.lr)


class PauseAt(pl.Callback):
    """Sleeps at the start of a round's training (creating ``marker`` first): a run that holds its folder.

    Its arguments are not part of the experiment's identity (a Python run records callbacks by
    class), so the same run with another ``round`` is the same experiment.
    """

    def __init__(self, round: int, marker: str, seconds: float = 300.0) -> None:
        self.round, self.marker, self.seconds = round, Path(marker), seconds

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        lottery = next(c for c in trainer.callbacks if isinstance(c, LotteryTicketCallback))
        if lottery.round == self.round:
            self.marker.write_text(str(os.getpid()))
            time.sleep(self.seconds)


def unsaved_run(
    data_dir: Path, out_dir: Path, *, lr: float = 0.01, rounds: int = 2, callbacks=(), trainer=None, **kwargs
):
    """``run_lottery`` of :class:`UnderscoreMLP` (a module that never calls ``save_hyperparameters``).

    ``trainer`` overrides the lean Trainer settings (one epoch, no bars or summaries).
    """
    from lth_lightning import FashionMNISTDataModule, run_lottery

    torch.manual_seed(kwargs.pop("init_seed", 0))
    model = UnderscoreMLP(lr=lr)
    settings = {
        "accelerator": "cpu",
        "max_epochs": 1,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "callbacks": list(callbacks),
        **(trainer or {}),
    }
    return run_lottery(
        model,
        FashionMNISTDataModule(data_dir, batch_size=48, val_size=60),
        rounds=rounds,
        lottery=LotteryTicketCallback(amount=0.5, verbose=False),
        trainer=settings,
        out_dir=out_dir,
        progress=False,
        monitor="val_loss",
        test_metric="test_acc",
        stack=False,
        **kwargs,
    )


def lth_here(capsys, *args: str, code: int = 0) -> tuple[str, str]:
    """``lth ARGS`` run in this process as its console script runs it, exiting with ``code``: its stdout, stderr.

    For what a subprocess adds nothing to (parsing, help, user errors): no second Python and torch to start.
    """
    from lth_lightning.cli.commands import main

    argv0, sys.argv[0] = sys.argv[0], "lth"  # the program name argparse prints, as the console script has it
    try:
        main(list(args))
        exited = 0
    except SystemExit as exit_:
        exited = 0 if exit_.code is None else int(exit_.code)
    finally:
        sys.argv[0] = argv0
    out, err = capsys.readouterr()
    assert exited == code, f"exit {exited}, not {code}: {err[-3000:]}"
    assert "Traceback" not in err
    return out, err


def lottery_options_in_help(help_text: str) -> dict[str, dict[str, object]]:
    """Every ``--lottery.*`` option of ``lth fit --help``: its default and its allowed values, as the help shows them.

    ``type`` is the declared type as jsonargparse prints it, with ``Sequence``/``Mapping`` read as ``list``/``dict``
    (they accept the same YAML); ``choices`` are the values a ``Literal`` allows.
    """
    text = " ".join(help_text.split())
    text = text[text.index("--lottery CONFIG Path to a configuration file.") :]
    options: dict[str, dict[str, object]] = {}
    option = r"--(lottery\.\w+) [A-Z_{][^ ]*(?:, --lottery\.\w+\+ \w+)? (.*?)(?= --lottery\.| Runs the)"
    for match in re.finditer(option, text):
        name, body = match.groups()
        found = re.search(r"\((?:type: (.*), )?default: ([^()]*)\)$", body)
        if found is None:
            raise AssertionError(f"no default in the help of --{name}: {body!r}")
        kind = (found.group(1) or "").replace("Sequence[", "list[").replace("Mapping[", "dict[")
        choices = sorted(set(re.findall(r"'([^']+)'", kind)))
        kind = re.sub(r"Literal\[[^\]]*\]", "Literal", kind)
        options[name] = {"type": kind, "choices": choices, "default": found.group(2)}
    return options
