"""run_lottery through the Python API, in process."""

from __future__ import annotations

import json

import lightning.pytorch as pl
import pytest
import torch
from cli_helpers import write_tiny_fashion
from conftest import round_trainer, saved_accuracy

from lth_lightning import MLP, FashionMNISTDataModule, LotteryClassifier, LotteryTicketCallback, run_lottery
from lth_lightning.experiment.record.paths import RunPaths
from lth_lightning.report.command import closing_summary


class CountFits(pl.Callback):
    """A user's stateful callback: the driver must give each round a fresh copy."""

    def __init__(self) -> None:
        self.fits = 0

    def on_fit_start(self, trainer, pl_module):
        self.fits += 1
        assert self.fits == 1, "a callback instance was reused across rounds"


def _setup(tmp_path):
    data = write_tiny_fashion(tmp_path / "data")
    torch.manual_seed(0)
    model = LotteryClassifier(net=MLP((784, 24, 10)), lr=0.01)
    dm = FashionMNISTDataModule(data_dir=data, batch_size=48, val_size=60)
    trainer = round_trainer(callbacks=[CountFits()])
    return model, dm, trainer


def test_run_lottery_python_api(tmp_path):
    model, dm, trainer = _setup(tmp_path)
    lottery = LotteryTicketCallback(amount=0.4)
    rows = run_lottery(
        model, dm, rounds=3, lottery=lottery, trainer=trainer, out_dir=tmp_path, name="api", progress=False
    )
    assert [r.round for r in rows] == [0, 1, 2]
    assert [round(r.density, 3) for r in rows] == [1.0, 0.6, 0.36]
    assert all(r.best_val_step == r.steps == 5 for r in rows)  # 240 / 48
    dm.setup("test")
    for r in rows:  # the reported accuracy is that of the network the round trained, on the whole test set
        net = LotteryClassifier(net=MLP((784, 24, 10)))
        assert r.metrics["test_acc"] == pytest.approx(
            saved_accuracy(net, RunPaths(rows.run_dir).weights(r.round), *dm.split("test")), abs=1e-6
        )
    assert all(
        set(r.metrics) == {"val_loss", "val_acc", "test_loss", "test_acc", "best_val_loss", "test_acc_at_best_val"}
        for r in rows
    )
    assert rows.run_dir == tmp_path / "api" / "seed_0" and rows.experiment_dir == tmp_path / "api"
    saved = json.loads((rows.run_dir / "results.json").read_text())
    assert [s["metrics"]["test_acc"] for s in saved] == [r.metrics["test_acc"] for r in rows]
    assert set(saved[0]["layer_density"]) == {"net.layers.0.weight", "net.layers.1.weight"}
    table = closing_summary(rows.experiment_dir)  # what run_lottery prints when it shows progress
    assert "| 2 | 36.0% |" in table and f"| {100 * rows[2].metrics['test_acc']:.2f} |" in table

    # Resuming in a new "process": a fresh model and callback; finished rounds are read back.
    model2, dm2, trainer2 = _setup(tmp_path / "again")
    lottery2 = LotteryTicketCallback(amount=0.4)
    again = run_lottery(
        model2, dm2, rounds=3, lottery=lottery2, trainer=trainer2, out_dir=tmp_path, name="api", progress=False
    )
    assert [r.as_dict() for r in again] == [r.as_dict() for r in rows]
    assert lottery2.round == 2 and all(torch.equal(lottery2.masks[k], lottery.masks[k]) for k in lottery.masks)


def test_run_lottery_refuses_bad_rounds_and_another_experiment(tmp_path):
    model, dm, trainer = _setup(tmp_path)

    def run(rounds, amount):
        lottery = LotteryTicketCallback(amount=amount)
        return run_lottery(
            model, dm, rounds=rounds, lottery=lottery, trainer=trainer, out_dir=tmp_path, name="x", progress=False
        )

    with pytest.raises(ValueError, match="`rounds` must be an integer >= 1, got 0"):
        run(0, 0.4)
    run(1, 0.4)
    with pytest.raises(
        ValueError,
        match=r"The experiment folder .*x holds another experiment: it differs in lottery.amount: "
        r"folder has 0.4, now 0.5",
    ):
        run(2, 0.5)
