"""Exporting a ticket, and compact sparse inference."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
import torch
from cli_helpers import lth, lth_here, write_tiny_fashion
from conftest import round_trainer

from lth_lightning import (
    MLP,
    FashionMNISTDataModule,
    LotteryClassifier,
    LotteryTicketCallback,
    SparseLinear,
    export_ticket,
    load_ticket,
    run_lottery,
    to_sparse,
)
from lth_lightning.experiment.record.paths import RunPaths
from lth_lightning.export.ticket import choose_round
from lth_lightning.pruning.magnitude import prune

PLAIN_LOADER = """
import sys, torch
from torch import nn

class MLP(nn.Module):  # the user's own copy of the network, no lth_lightning anywhere
    def __init__(self, sizes):
        super().__init__()
        self.flatten = nn.Flatten()
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
    def forward(self, x):
        x = self.flatten(x)
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = torch.relu(x)
        return x

assert "lth_lightning" not in sys.modules
ticket = torch.load(sys.argv[1], weights_only=True)
net = MLP([784, 32, 16, 10])
net.load_state_dict(ticket["state_dict"])
x = torch.load(sys.argv[2], weights_only=True)
with torch.no_grad():
    torch.save(net(x), sys.argv[3])
assert "lth_lightning" not in sys.modules
"""


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("export")
    data = write_tiny_fashion(tmp / "data")
    torch.manual_seed(0)
    dm = FashionMNISTDataModule(data, batch_size=32, val_size=60)
    model = LotteryClassifier(net=MLP((784, 32, 16, 10)), lr=0.01)
    trainer = round_trainer(max_epochs=2, logger=False)
    rows = run_lottery(
        model, dm, rounds=2, lottery=LotteryTicketCallback(amount=0.5), trainer=trainer, out_dir=tmp, progress=False
    )
    return rows.run_dir, dm


def test_export_round_trip_into_a_plain_module_without_the_package(tmp_path, finished_run):
    run, dm = finished_run
    card = export_ticket(run, 1, tmp_path / "ticket.pt")
    state, masks = load_ticket(tmp_path / "ticket.pt")
    assert set(state) == {f"layers.{i}.{p}" for i in range(3) for p in ("weight", "bias")}
    for name, mask in masks.items():
        assert torch.all(state[name][~mask] == 0) and name in card["layers"]
    assert card["density"] == pytest.approx(0.5, abs=1e-3) and card["round"] == 1
    assert card["seed"] == 0  # the run's seed (its folder seed_0)
    saved = json.loads(RunPaths(run).metrics(1).read_text())
    assert card["metrics"]["test_acc"] == saved["metrics"]["test_acc"] and card["metrics"]["round"] == 1
    assert card["config"]["lottery"]["amount"] == 0.5
    assert json.loads((tmp_path / "ticket.json").read_text())["alive"] == card["alive"]

    # The trained ticket of round 1, as the run left it, predicts the same on the test set.
    trained = LotteryClassifier(net=MLP((784, 32, 16, 10)))
    trained.load_state_dict(torch.load(RunPaths(run).weights(1), weights_only=True))
    dm.setup("test")
    x, y = dm.split("test")
    torch.save(x.cpu(), tmp_path / "x.pt")
    script = tmp_path / "plain.py"
    script.write_text(PLAIN_LOADER)
    result = subprocess.run(
        [
            sys.executable,
            "-I",
            str(script),
            str(tmp_path / "ticket.pt"),
            str(tmp_path / "x.pt"),
            str(tmp_path / "out.pt"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    plain = torch.load(tmp_path / "out.pt", weights_only=True)
    with torch.no_grad():
        expected = trained(x.cpu())
    assert torch.allclose(plain, expected, atol=1e-6)
    assert torch.equal(plain.argmax(1), expected.argmax(1))
    acc = float((plain.argmax(1) == y.cpu()).float().mean())
    assert acc == pytest.approx(card["metrics"]["test_acc"], abs=1e-6)


@pytest.mark.slow
def test_lth_export_command(tmp_path, finished_run):
    run, _ = finished_run
    result = lth("export", str(run), "--round", "0", "--out", str(tmp_path / "t.pt"), cwd=tmp_path)
    assert "Exported round 0: 100.00% of weights" in result.stdout
    assert (tmp_path / "t.pt").is_file() and (tmp_path / "t.json").is_file()
    missing = lth("export", str(run), "--round", "5", "--out", str(tmp_path / "x.pt"), cwd=tmp_path, check=False)
    assert missing.returncode == 2 and "Round 5 of" in missing.stderr and "finished rounds: [0, 1]" in missing.stderr
    assert not (tmp_path / "x.pt").exists()
    nowhere = lth("export", str(tmp_path / "nowhere"), "--round", "last", "--out", "x.pt", cwd=tmp_path, check=False)
    assert nowhere.returncode == 2 and f"lth export: error: {tmp_path / 'nowhere'} does not exist" in nowhere.stderr
    # The experiment folder (one seed) and `last` pick the run and the round.
    last = lth("export", str(run.parent), "--round", "last", "--out", str(tmp_path / "last.pt"), cwd=tmp_path)
    assert "Exported round 1: 50.00% of weights" in last.stdout and "Traceback" not in last.stderr


def test_export_best_is_the_pruned_round_with_the_best_test_metric(tmp_path, finished_run, capsys):
    run, _ = finished_run
    copy = tmp_path / run.parent.name / run.name  # its round 0 made the best, in a copy
    shutil.copytree(run.parent, copy.parent)
    rows = [json.loads(RunPaths(copy).metrics(r).read_text()) for r in (0, 1)]
    rows[0]["metrics"]["test_acc"] = rows[1]["metrics"]["test_acc"] + 0.1
    RunPaths(copy).metrics(0).write_text(json.dumps(rows[0]))
    assert choose_round(RunPaths(copy), "best") == 1  # the dense network is no ticket, however accurate
    assert choose_round(RunPaths(copy), 0) == 0 and choose_round(RunPaths(copy), "last") == 1  # asked for: round 0
    shutil.rmtree(RunPaths(copy).round_dir(1))
    with pytest.raises(
        FileNotFoundError, match="has no finished pruned round yet; round 0, the dense network, is --round 0"
    ):
        choose_round(RunPaths(copy), "best")
    with pytest.raises(ValueError, match="`round` must be a round number, 'last' or 'best', got 'first'"):
        choose_round(RunPaths(run), "first")
    out, _ = lth_here(capsys, "export", "--help")
    assert "best: the pruned round with the best test metric (the sparser on a tie; never round 0)" in " ".join(
        out.split()
    )


@pytest.mark.slow
def test_commands_that_do_not_train_do_not_import_lightning(tmp_path, finished_run):
    run, _ = finished_run
    script = f"""
import sys
from lth_lightning.cli.commands import main
main(["export", {str(run)!r}, "--round", "best", "--out", {str(tmp_path / "t.pt")!r}])
main(["aggregate", {str(run.parent)!r}])
main(["compare", {str(run.parent)!r}, "--out", {str(tmp_path / "cmp")!r}])
loaded = sorted(m for m in sys.modules if m.split(".")[0] == "lightning")
assert not loaded, loaded
print("no lightning")
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "no lightning" in result.stdout and "Aggregated 1 runs (seeds [0])" in result.stdout
    assert (run.parent / "results_seeds.csv").is_file() and (tmp_path / "cmp" / "tensorboard").is_dir()


@pytest.mark.parametrize("density", [1.0, 0.2, 0.05, 0.02])
@pytest.mark.parametrize("batch", [1, 256])
def test_sparse_module_equals_dense_masked_module(density, batch):
    torch.manual_seed(0)
    net = MLP()
    weights = {n: p.detach() for n, p in net.named_parameters() if n.endswith("weight")}
    masks = {n: torch.ones_like(w, dtype=torch.bool) for n, w in weights.items()}
    if density < 1:
        rounds = 1
        masks = prune(weights, masks, 1 - density, rounds=rounds)
    with torch.no_grad():
        for name, p in net.named_parameters():
            if name in masks:
                p.mul_(masks[name])
    sparse = to_sparse(net)
    assert all(isinstance(layer, SparseLinear) for layer in sparse.layers)
    assert sum(layer.nnz for layer in sparse.layers) == sum(int(m.sum()) for m in masks.values())
    x = torch.randn(batch, 1, 28, 28)
    with torch.no_grad():
        assert torch.allclose(sparse(x), net(x), atol=1e-5, rtol=1e-5)
    assert isinstance(net.layers[0], torch.nn.Linear)  # the original is untouched
    with pytest.raises(ValueError, match=r"`max_density` must be in \(0, 1\], got 0"):
        to_sparse(net, max_density=0)
