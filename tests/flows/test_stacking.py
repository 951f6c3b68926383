"""Many tickets at once: the ticket, its controls and its seeds as members of one stacked network."""

from __future__ import annotations

import csv
from typing import Any, ClassVar

import lightning.pytorch as pl
import pytest
import torch
import yaml
from conftest import ConvNet, TinyImageData, lean_trainer, lightning_messages, loader, round_trainer, tiny_datamodule
from torch import nn

from lth_lightning import MLP, FashionMNISTDataModule, LotteryClassifier, LotteryTicketCallback, run_lottery, run_seeds
from lth_lightning.callbacks.state import LotteryState
from lth_lightning.experiment.record.paths import RunPaths
from lth_lightning.pruning.packing import unpack_masks
from lth_lightning.stack.batches import MemberBatches
from lth_lightning.stack.module import StackedClassifier
from lth_lightning.stack.network import StackingError, stack_network, stack_states

CONTROLS = ["random_reinit", "random_prune", "snip", "grasp", "synflow", "magnitude_init"]
CONTROLS += ["random_prune:global", "snip:shuffled", "grasp:inverted", "synflow:reinit"]  # ablations, as members too
# Measured: after 50 fused-Adam steps per round (3 rounds, 2 seeds, both controls), the largest
# |stacked - sequential| over every trained weight was 2.8e-6 (float32); masks identical.
WEIGHT_TOLERANCE = 1e-5
# A fit of one seed on its own data order, stacked vs alone: the largest difference measured on
# 2026-12-05 (lightning 2.6.6, numpy 2.4.6) was 1.2e-5 on one first-layer weight of round 1 (round 0:
# 3e-8; masks identical), over the 1e-5 above on an earlier install: float-level, amplified by Adam.
ORDER_TOLERANCE = 3e-5


def _model() -> LotteryClassifier:
    return LotteryClassifier(net=MLP((784, 24, 10)), lr=0.01)


def _seeds(tiny_data, out, stack, keep_checkpoints=False, instability=True, **trainer):
    return run_seeds(
        _model,
        tiny_datamodule(tiny_data),
        seeds=[0, 1],
        rounds=3,
        lottery=LotteryTicketCallback(amount=0.5, verbose=False),
        trainer=round_trainer(**{"max_epochs": 10, **trainer}),  # 5 steps an epoch: 50 Adam steps a round
        out_dir=out,
        controls=CONTROLS,
        progress=False,
        stack=stack,
        keep_checkpoints=keep_checkpoints,
        instability=instability,
    )


def _read(path):
    with open(path) as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def both(tmp_path_factory, tiny_data):
    out = tmp_path_factory.mktemp("equivalence")
    return _seeds(tiny_data, out / "sequential", False), _seeds(tiny_data, out / "stacked", True, keep_checkpoints=True)


@pytest.mark.slow
def test_a_stacked_round_equals_the_sequential_runs_member_by_member(both):
    sequential, stacked = both
    # one stacked fit per round (each step one batch of each seed's own data order), each kept, as asked
    assert len(list(stacked.experiment_dir.glob("stacked/round_0[0-2]-*/last.ckpt"))) == 3
    assert not (sequential.experiment_dir / "stacked").exists()
    for seed in (0, 1):
        a, b = sequential.runs[seed].run_dir, stacked.runs[seed].run_dir
        for r in range(3):
            files = ["masks.pt", *(f"control_{c}_masks.pt" for c in CONTROLS if r > 0)]
            for name in files:
                masks_a = torch.load(RunPaths(a).round_dir(r) / name, weights_only=True)
                masks_b = torch.load(RunPaths(b).round_dir(r) / name, weights_only=True)
                assert all(torch.equal(masks_a[k], masks_b[k]) for k in masks_a), (seed, r, name)
            weights_a = torch.load(RunPaths(a).weights(r), weights_only=True)
            weights_b = torch.load(RunPaths(b).weights(r), weights_only=True)
            assert weights_a.keys() == weights_b.keys()
            largest = max(float((weights_a[k] - weights_b[k]).abs().max()) for k in weights_a)
            assert largest < WEIGHT_TOLERANCE, (seed, r, largest)
            next_a = torch.load(RunPaths(a).lottery_state(r), weights_only=True)
            next_b = torch.load(RunPaths(b).lottery_state(r), weights_only=True)
            masks_a, masks_b = unpack_masks(next_a["masks"]), unpack_masks(next_b["masks"])
            assert masks_a.keys() == masks_b.keys() and all(torch.equal(masks_a[k], masks_b[k]) for k in masks_a)
            assert (next_a["round"], next_a["phase"], len(next_a["history"])) == (r, "pruned", r + 1)
            record_a, record_b = next_a["history"][-1], next_b["history"][-1]
            assert record_a["metrics"].keys() == record_b["metrics"].keys()
            for key in ("round", "density", "layer_density", "steps", "epochs", "next_density"):
                assert record_a[key] == record_b[key], (seed, r, key)
        rows_a, rows_b = _read(a / "results.csv"), _read(b / "results.csv")
        assert [list(row) for row in rows_a] == [list(row) for row in rows_b]  # the same columns
        for row_a, row_b in zip(rows_a, rows_b, strict=True):
            for key in row_a:
                if key == "seconds" or row_a[key] == "":
                    assert (row_a[key] == "") == (row_b[key] == ""), key
                    continue
                assert float(row_b[key]) == pytest.approx(float(row_a[key]), abs=1e-5), (seed, key)
    agg_a = _read(sequential.experiment_dir / "results_seeds.csv")
    agg_b = _read(stacked.experiment_dir / "results_seeds.csv")
    assert agg_a[2]["random_prune_test_acc_mean"] == pytest.approx(agg_b[2]["random_prune_test_acc_mean"])
    for control in CONTROLS:  # every control, pruning at initialization included, aggregated over the seeds
        column = f"{control}_test_acc"
        values = [float(_read(sequential.runs[seed].run_dir / "results.csv")[2][column]) for seed in (0, 1)]
        assert float(agg_a[2][f"{column}_mean"]) == pytest.approx(sum(values) / 2)
        assert float(agg_a[2][f"{column}_min"]) == pytest.approx(min(values))
    for runs in (sequential, stacked):  # the instability of every round, with its bands and plot
        per_seed = [[float(row["instability"]) for row in _read(runs.runs[s].run_dir / "results.csv")] for s in (0, 1)]
        aggregated = _read(runs.experiment_dir / "results_seeds.csv")
        assert [float(row["instability_max"]) for row in aggregated] == pytest.approx(
            [max(v) for v in zip(*per_seed, strict=True)]
        )
        assert (runs.experiment_dir / "instability_vs_weights_remaining.png").is_file()


@pytest.mark.slow
def test_each_member_trains_under_its_own_label_in_its_seeds_training_run(both):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    sequential, stacked = both
    for label in ("round_00", "round_02_random_reinit"):
        values = []
        for runs in (sequential, stacked):
            events = EventAccumulator(str(RunPaths(runs.runs[1].run_dir).training_run))
            events.Reload()
            expected = {f"{label}/{tag}" for tag in ("train/loss", "val/loss", "val/acc", "test/acc")}
            assert expected <= set(events.Tags()["scalars"])
            values.append([e.value for e in events.Scalars(f"{label}/val/loss")])
        assert values[0] == pytest.approx(values[1], abs=1e-5)


def test_gradient_clipping_by_norm_is_per_member(tmp_path, tiny_data):
    def run(stack):
        torch.manual_seed(0)
        return run_lottery(
            _model(),
            tiny_datamodule(tiny_data),
            rounds=2,
            lottery=LotteryTicketCallback(amount=0.5, verbose=False),
            trainer=round_trainer(max_epochs=3, gradient_clip_val=0.05),  # clips every step
            out_dir=tmp_path / str(stack),
            controls=["random_reinit"],
            progress=False,
            stack=stack,
        )

    sequential, stacked = run(False), run(True)
    for r in range(2):
        a = torch.load(RunPaths(sequential.run_dir).weights(r), weights_only=True)
        b = torch.load(RunPaths(stacked.run_dir).weights(r), weights_only=True)
        assert max(float((a[k] - b[k]).abs().max()) for k in a) < WEIGHT_TOLERANCE
    assert stacked[1].controls["random_reinit"]["test_acc"] == pytest.approx(
        sequential[1].controls["random_reinit"]["test_acc"], abs=1e-5
    )


# ----------------------------------------------------------------------------- the stacked module


def _stacked(members: int, seed: int = 0, perturb: bool = False) -> tuple[StackedClassifier, dict[str, torch.Tensor]]:
    torch.manual_seed(seed)
    template = LotteryClassifier(net=MLP((64, 16, 4)), lr=0.02)
    states = []
    for k in range(members):
        torch.manual_seed(100 + k)
        state = {name: torch.randn_like(v) * 0.3 for name, v in template.state_dict().items()}
        if perturb and k == 0:
            state = {name: v + 1.0 for name, v in state.items()}
        states.append(state)
    masks = {
        name: torch.rand(members, *p.shape, generator=torch.Generator().manual_seed(7)) < 0.5
        for name, p in template.state_dict().items()
        if name.endswith("weight")
    }
    probe = torch.rand(4, 1, 8, 8)
    return StackedClassifier(template, states, [f"m{k}" for k in range(members)], probe), masks


def _train_stacked(tmp_path, members: int, data, perturb: bool = False, extra=()) -> StackedClassifier:
    module, masks = _stacked(members, perturb=perturb)
    callback = LotteryTicketCallback(amount=0.5, verbose=False)
    snapshot = {k: v.clone() for k, v in module.state_dict().items()}
    callback.set_state(
        LotteryState(round=0, phase="pruned", names=list(masks), masks=masks, snapshot=snapshot, member_dims=1)
    )
    lean_trainer(tmp_path, callbacks=[callback, *extra], max_epochs=2).fit(module, loader(data, shuffle=False))
    return module


class MembersStayMasked(pl.Callback):
    """Before every training batch: every member's pruned weights are exactly zero."""

    def __init__(self) -> None:
        self.checks = 0

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        lottery = next(c for c in trainer.callbacks if isinstance(c, LotteryTicketCallback))
        params = dict(pl_module.named_parameters())
        for name, mask in lottery.round_masks.items():
            assert mask.shape[0] == 3 and bool((params[name][~mask] == 0).all()), name
        self.checks += 1


def test_every_members_pruned_weights_stay_exactly_zero(tmp_path, data):
    probe = MembersStayMasked()
    module = _train_stacked(tmp_path, 3, data, extra=[probe])
    assert probe.checks == 2 * 6
    _, masks = _stacked(3)
    for name, mask in masks.items():
        weights = dict(module.named_parameters())[name]
        assert bool((weights[~mask] == 0).all()) and bool((weights[mask] != 0).all())


def test_members_do_not_leak_into_each_other(tmp_path, data):
    plain = _train_stacked(tmp_path, 3, data)
    perturbed = _train_stacked(tmp_path, 3, data, perturb=True)  # member 0 starts elsewhere
    for name, value in plain.state_dict().items():
        assert not torch.equal(value[0], perturbed.state_dict()[name][0])
        assert torch.equal(value[1:], perturbed.state_dict()[name][1:]), name  # bit for bit


# ----------------------------------------------------------------------------- what cannot be stacked


@pytest.mark.parametrize(
    ("net", "message"),
    [
        (
            lambda: nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 4)),
            r"Sequential has buffers \(2.running_mean, 2.running_var, 2.num_batches_tracked\), updated in place",
        ),
        (
            lambda: nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.Dropout(0.5), nn.Linear(16, 4)),
            r"Sequential cannot run as stacked members under torch.func.vmap: .*random",
        ),
    ],
    ids=["batchnorm", "dropout"],
)
def test_a_network_that_cannot_be_stacked_is_refused_with_the_reason(net, message):
    network = net()
    state = {k: v.detach() for k, v in network.named_parameters()}
    with pytest.raises(StackingError, match=message + r".*Train it with stack=false"):
        stack_network(network, [state, state], torch.rand(4, 1, 8, 8))


def test_run_lottery_refuses_or_falls_back_where_stacking_cannot_work(tmp_path, tiny_data):
    dm = tiny_datamodule(tiny_data)
    common = {"rounds": 1, "trainer": round_trainer(), "out_dir": tmp_path, "progress": False}
    with pytest.raises(StackingError, match=r"stack=True cannot stack this experiment: .*ConvNet is not one"):
        run_lottery(ConvNet(), dm, stack=True, **common)
    late = LotteryTicketCallback(rewind_step=3, verbose=False)
    with pytest.raises(StackingError, match=r"rewind_step=3 trains with stack=false"):
        run_lottery(_model(), dm, lottery=late, stack=True, **common)
    dropout = LotteryClassifier(net=nn.Sequential(nn.Flatten(), nn.Linear(784, 16), nn.Dropout(0.2), nn.Linear(16, 10)))
    with lightning_messages() as messages:
        rows = run_lottery(dropout, dm, stack=None, **common)  # auto: says why, trains one network at a time
    assert rows[0].round == 0 and not (rows.experiment_dir / "stacked").exists()
    assert any(m.startswith("Training the rounds one network at a time: Sequential cannot run") for m in messages)


class TrainerBoundData(TinyImageData):
    """A user's datamodule that, as many do, reads its Trainer in ``setup`` (and shuffles with torch's global RNG)."""

    def setup(self, stage: str) -> None:
        self.rank = self.trainer.global_rank


def test_deciding_not_to_stack_a_users_module_leaves_its_data_to_the_trainer(tmp_path):
    """``stack=None`` (lth fit's default) on a module that is no LotteryClassifier: the data is not touched
    before the Trainer has it, so the run is the one ``stack=False`` gives, weight for weight."""
    common = {"rounds": 1, "trainer": round_trainer(), "progress": False, "report": False}
    metrics = {"monitor": "val_loss", "test_metric": "test_loss"}
    weights = {}
    for stack in (False, None):
        torch.manual_seed(0)
        model, data = ConvNet(), TrainerBoundData()
        with lightning_messages() as messages:
            rows = run_lottery(model, data, stack=stack, out_dir=tmp_path / str(stack), **common, **metrics)
        weights[stack] = torch.load(RunPaths(rows.run_dir).weights(0), weights_only=True)
    assert any(m.startswith("Training the rounds one network at a time: stacking trains") for m in messages)
    assert all(torch.equal(weights[None][k], weights[False][k]) for k in weights[False])


def test_stack_states_puts_members_first():
    states = [{"w": torch.full((2, 3), float(k))} for k in range(4)]
    stacked = stack_states(states)
    assert stacked["w"].shape == (4, 2, 3) and torch.equal(stacked["w"][2], states[2]["w"])


class FirstBatches(pl.Callback):
    """The labels of the first training batch of every fit, in the order of the fits (kept on the class: the
    Trainer settings' callbacks are copied for every round)."""

    seen: ClassVar[list[list[int]]] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if batch_idx == 0:
            FirstBatches.seen.append(batch[1].tolist())


@pytest.mark.parametrize("data_order", ["seed", "fixed"])
def test_each_seed_trains_on_its_own_data_order_unless_it_is_fixed(tmp_path, tiny_data, data_order):
    FirstBatches.seen = []
    runs = run_seeds(
        _model,
        tiny_datamodule(tiny_data),
        seeds=[0, 1],
        rounds=1,
        trainer=round_trainer(max_epochs=1, callbacks=[FirstBatches()]),
        out_dir=tmp_path,
        progress=False,
        report=False,
        data_order=data_order,
    )
    first, second = FirstBatches.seen
    assert (first != second) == (data_order == "seed")
    recorded = [yaml.safe_load((runs.runs[s].run_dir / "run.yaml").read_text()) for s in (0, 1)]
    assert [r.get("data_order_seed") for r in recorded] == ([0, 1] if data_order == "seed" else [None, None])
    with pytest.raises(ValueError, match=r"`data_order` must be 'seed' or 'fixed', got 'shuffled'"):
        run_seeds(_model, None, seeds=[0], rounds=1, out_dir=tmp_path, data_order="shuffled")  # type: ignore[arg-type]


def test_member_batches_give_each_member_its_orders_batch(tiny_data):
    loaders = []
    for seed in (0, 1):
        datamodule = FashionMNISTDataModule(tiny_data, batch_size=48, val_size=60, shuffle_seed=seed)
        datamodule.setup("fit")
        loaders.append(datamodule.train_dataloader())
    batches = MemberBatches(loaders, [0, 0, 1, 0, 1])  # seed 0's ticket and controls, seed 1's
    batches.sampler.set_epoch(2)
    got = list(batches)
    expected = [list(loader) for loader in loaders]  # each order on its own, epoch 2 (set above)
    assert len(got) == len(batches) == len(expected[0]) == 5
    for step, (x, y) in enumerate(got):
        assert x.shape[:2] == y.shape == (5, 48)
        for member, order in enumerate([0, 0, 1, 0, 1]):
            assert torch.equal(x[member], expected[order][step][0]) and torch.equal(y[member], expected[order][step][1])
    assert not torch.equal(got[0][1][0], got[0][1][2])  # two orders, two batches
    batches.start_at(3)
    assert len(list(batches)) == 2 and len(list(batches)) == 5  # once, from batch 3; then whole epochs again
    with pytest.raises(ValueError, match=r"`member_orders` must index the 2 loaders, got \[0, 2\]"):
        MemberBatches(loaders, [0, 2])


def test_seeds_stacked_with_a_users_datamodule_train_one_fit_per_seed(tmp_path, tiny_data):
    class Users(pl.LightningDataModule):  # not this package's: its order may come from torch's state
        def __init__(self):
            super().__init__()
            self.inner = tiny_datamodule(tiny_data)
            self.shuffle_seed = 0

        def setup(self, stage):
            self.inner.shuffle_seed = self.shuffle_seed
            self.inner.setup(stage)

        def train_dataloader(self):
            self.inner.shuffle_seed = self.shuffle_seed
            return self.inner.train_dataloader()

        def val_dataloader(self):
            return self.inner.val_dataloader()

        def test_dataloader(self):
            return self.inner.test_dataloader()

    runs = run_seeds(
        _model,
        Users(),
        seeds=[0, 1],
        rounds=2,
        lottery=LotteryTicketCallback(amount=0.5, verbose=False),
        trainer=round_trainer(max_epochs=1),
        out_dir=tmp_path,
        progress=False,
        report=False,
        stack=True,
        keep_checkpoints=True,
    )
    assert len(list(runs.experiment_dir.glob("stacked/round_0[0-1]-*/last.ckpt"))) == 2 * 2  # per seed and round


def test_one_seed_stacked_trains_on_its_own_data_order_as_sequentially(tmp_path, tiny_data):
    runs = {}
    for stack in (False, True):
        torch.manual_seed(0)
        runs[stack] = run_lottery(
            _model(),
            tiny_datamodule(tiny_data),  # its own shuffle_seed is 0
            rounds=2,
            seed=3,  # the data order of seed 3, stacked or not
            lottery=LotteryTicketCallback(amount=0.5, verbose=False),
            trainer=round_trainer(max_epochs=2),
            out_dir=tmp_path / str(stack),
            controls=["random_prune"],
            progress=False,
            stack=stack,
        )
    for name in ("masks.pt", "weights.pt"):
        alone = torch.load(RunPaths(runs[False].run_dir).round_dir(1) / name, weights_only=True)
        stacked = torch.load(RunPaths(runs[True].run_dir).round_dir(1) / name, weights_only=True)
        assert all(torch.allclose(alone[k].float(), stacked[k].float(), atol=ORDER_TOLERANCE) for k in alone), name
