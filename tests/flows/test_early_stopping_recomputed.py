"""A round's reported accuracies, recomputed independently from weights saved along the way.

The experiment reports, per round, the test accuracy of the trained network and of the weights at the
early-stopping iteration (the step of minimum validation loss). Here a plain callback saves the weights at
every validation; the test then finds the minimum of the validation loss itself and measures accuracy with
plain torch (argmax over the whole test set): no Lightning loop, no torchmetrics, no code of the package's
measurement.
"""

from __future__ import annotations

import csv
from pathlib import Path

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from conftest import round_trainer

from lth_lightning import MLP, FashionMNISTDataModule, LotteryClassifier, LotteryTicketCallback, run_lottery
from lth_lightning.experiment.record.paths import RunPaths


class SaveAtValidation(pl.Callback):
    """Saves the module's weights at every validation (not the sanity check), a folder per fit."""

    def __init__(self, out: Path) -> None:
        self.out = out

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.fit = len(list(self.out.glob("fit_*"))) if self.out.exists() else 0

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        folder = self.out / f"fit_{self.fit}"
        folder.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().clone() for k, v in pl_module.state_dict().items()}
        torch.save(state, folder / f"step_{trainer.global_step}.pt")


@torch.no_grad()
def _loss_and_accuracy(net: torch.nn.Module, loader) -> tuple[float, float]:
    total_loss, correct, count = 0.0, 0, 0
    for x, y in loader:
        logits = net(x)
        total_loss += float(F.cross_entropy(logits, y, reduction="sum"))
        correct += int((logits.argmax(dim=1) == y).sum())
        count += len(y)
    return total_loss / count, correct / count


def test_the_reported_accuracies_are_those_of_the_saved_weights(tmp_path, tiny_data):
    saved = tmp_path / "saved"
    dm = FashionMNISTDataModule(tiny_data, batch_size=32, val_size=60)
    trainer = round_trainer(max_epochs=8, val_check_interval=2, callbacks=[SaveAtValidation(saved)])
    torch.manual_seed(0)
    model = LotteryClassifier(net=MLP((784, 24, 10)), lr=1.0)
    rows = run_lottery(
        model,
        dm,
        rounds=2,
        lottery=LotteryTicketCallback(amount=0.5, verbose=False),
        trainer=trainer,
        out_dir=tmp_path / "runs",
        progress=False,
        report=False,
    )
    dm.setup("fit")
    dm.setup("test")
    with open(RunPaths(rows.run_dir).results.with_suffix(".csv")) as fh:
        recorded = list(csv.DictReader(fh))
    net, early = MLP((784, 24, 10)), []
    for r, row in enumerate(recorded):
        by_step = {int(p.stem.split("_")[1]): p for p in (saved / f"fit_{r}").glob("step_*.pt")}
        assert len(by_step) >= 4, "validation ran several times this round"
        losses = {}
        for step in sorted(by_step):
            net.load_state_dict({k.removeprefix("net."): v for k, v in torch.load(by_step[step]).items()})
            losses[step] = _loss_and_accuracy(net, dm.val_dataloader())[0]
        best = min(sorted(losses), key=lambda s: losses[s])  # the first step of the minimum
        assert int(row["best_val_step"]) == best
        early.append(best < max(by_step))
        net.load_state_dict({k.removeprefix("net."): v for k, v in torch.load(by_step[best]).items()})
        assert abs(float(row["test_acc_at_best_val"]) - _loss_and_accuracy(net, dm.test_dataloader())[1]) < 1e-6
        final = torch.load(RunPaths(rows.run_dir).weights(r))
        net.load_state_dict({k.removeprefix("net."): v for k, v in final.items()})
        assert abs(float(row["test_acc"]) - _loss_and_accuracy(net, dm.test_dataloader())[1]) < 1e-6
    assert any(early), "a round stopped early, so the weights there differ from the trained network's"
