"""Instability (Frankle et al. 2020): two copies from the rewind point, the error barrier on the line between them."""

from __future__ import annotations

import json

import lightning.pytorch as pl
import pytest
import torch
from conftest import lean_trainer, round_trainer, saved_accuracy, tiny_datamodule, tiny_experiment
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.custom_scalar import layout_pb2
from tensorboard.util import tensor_util
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lth_lightning import MLP, FashionMNISTDataModule, LotteryClassifier, LotteryTicketCallback
from lth_lightning.experiment.record.paths import RunPaths, round_label
from lth_lightning.experiment.rounds.instability import other_data_order, path_errors
from lth_lightning.metric_names import DEFAULT_METRICS
from lth_lightning.pruning.stability import PATH_POINTS, error_barrier, interpolate, path_alphas

XS = [-2.0, -1.0, 1.0, 2.0]  # class 1 for x > 0
XT = [-1.0, 0.5, 3.0, 4.0]  # the training points
BIAS = 0.3  # class 0's output bias, at both ends


def _points(xs: list[float], shuffle: bool = False) -> DataLoader:
    x = torch.tensor(xs).unsqueeze(1)
    return DataLoader(TensorDataset(x, (x[:, 0] > 0).long()), batch_size=2, shuffle=shuffle)


class PointData(pl.LightningDataModule):
    """Four 1-D test points, and four others to train on (shuffled, as training data is)."""

    def test_dataloader(self) -> DataLoader:
        return _points(XS)

    def train_dataloader(self) -> DataLoader:
        return _points(XT, shuffle=True)


def _toy_pair() -> tuple[LotteryClassifier, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Two perfect networks that differ by swapping their two ReLU units: averaging them breaks them."""
    model = LotteryClassifier(net=nn.Sequential(nn.Linear(1, 2, bias=False), nn.ReLU(), nn.Linear(2, 2)))
    end_a, end_b = dict(model.state_dict()), dict(model.state_dict())
    end_a.update(
        {"net.0.weight": torch.tensor([[1.0], [-1.0]]), "net.2.weight": torch.tensor([[0.0, 1.0], [1.0, 0.0]])}
    )
    end_b.update(
        {"net.0.weight": torch.tensor([[-1.0], [1.0]]), "net.2.weight": torch.tensor([[1.0, 0.0], [0.0, 1.0]])}
    )
    for end in (end_a, end_b):
        end["net.2.bias"] = torch.tensor([BIAS, 0.0])
    return model, end_a, end_b


def _hand_errors(xs: list[float] = XS) -> list[float]:
    """Along the line, class 1's margin on x > 0 is (1 - 2a)^2 x - BIAS; x < 0 is always right."""
    return [sum((1 - 2 * a) ** 2 * x <= BIAS for x in xs if x > 0) / len(xs) for a in path_alphas()]


def test_the_barrier_of_a_toy_pair_is_the_hand_computed_one(tmp_path):
    model, end_a, end_b = _toy_pair()
    model.load_state_dict(end_b)
    errors = path_errors(lean_trainer(tmp_path), model, end_a, PointData(), DEFAULT_METRICS)
    expected = _hand_errors()
    assert len(errors) == PATH_POINTS == 30
    assert errors == pytest.approx(expected, abs=1e-6)
    assert errors[0] == errors[-1] == 0.0 and max(errors) == 0.5
    assert error_barrier(errors) == pytest.approx(0.5)
    assert all(torch.equal(model.state_dict()[k], end_b[k]) for k in end_b)  # the model holds its own weights again


def test_the_training_datas_barrier_of_the_toy_pair_is_the_hand_computed_one(tmp_path):
    model, end_a, end_b = _toy_pair()
    model.load_state_dict(end_b)
    state = torch.random.get_rng_state()
    errors = path_errors(lean_trainer(tmp_path), model, end_a, PointData(), DEFAULT_METRICS, "train")
    assert errors == pytest.approx(_hand_errors(XT), abs=1e-6) and errors != _hand_errors(XS)
    assert error_barrier(errors) == pytest.approx(0.75)  # right at both ends; at the middle the 3 points x > 0 fail
    assert torch.equal(torch.random.get_rng_state(), state)  # the shuffled loader drew nothing from torch's state


def test_identical_copies_have_no_instability(tmp_path):
    model, end_a, _ = _toy_pair()
    model.load_state_dict(end_a)
    errors = path_errors(lean_trainer(tmp_path), model, end_a, PointData(), DEFAULT_METRICS)
    assert errors == [errors[0]] * PATH_POINTS and error_barrier(errors) == 0.0


def test_barrier_interpolation_and_points_by_hand():
    assert error_barrier([0.1, 0.3, 0.2]) == pytest.approx(0.3 - 0.15)
    assert path_alphas(3) == [0.0, 0.5, 1.0]
    a = {"w": torch.tensor([0.0, 2.0]), "n": torch.tensor(3)}
    b = {"w": torch.tensor([4.0, 2.0]), "n": torch.tensor(7)}
    mid = interpolate(a, b, 0.25)
    assert mid["w"].tolist() == [1.0, 2.0] and int(mid["n"]) == 3  # counters are not interpolated
    assert torch.equal(interpolate(a, b, 1.0)["w"], b["w"])  # both ends exactly
    with pytest.raises(ValueError, match=r"`points` must be an integer >= 2 \(both ends of the path\), got 1"):
        path_alphas(1)
    with pytest.raises(ValueError, match=r"The errors along a path must be >= 2 finite numbers, got \[0.1, nan\]"):
        error_barrier([0.1, float("nan")])
    with pytest.raises(ValueError, match=r"The two states differ in their entries: \['n'\]"):
        interpolate(a, {"w": b["w"]}, 0.5)


class ConstantTest(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))

    def test_step(self, batch, batch_idx):
        self.log("test/acc", 2.0)


def test_a_test_metric_that_is_not_an_accuracy_is_refused(tmp_path):
    model = ConstantTest()
    with pytest.raises(ValueError, match=r"reads the test metric as an accuracy .* test/acc was 2.0, outside \[0, 1\]"):
        path_errors(lean_trainer(tmp_path), model, model.state_dict(), PointData(), DEFAULT_METRICS)


def _shuffled() -> torch.Tensor:
    return next(iter(DataLoader(TensorDataset(torch.arange(50)), batch_size=50, shuffle=True)))[0]


def test_the_second_copy_sees_another_data_order_and_everything_is_restored(tiny_data):
    dm = FashionMNISTDataModule(tiny_data, batch_size=32, val_size=60)
    dm.prepare_data()
    dm.setup("fit")

    def first_labels():
        return next(iter(dm.train_dataloader()))[1].tolist()

    before, state = first_labels(), torch.random.get_rng_state()
    with other_data_order(dm, 1234):
        other = first_labels()
        plain = _shuffled()
    assert other != before and first_labels() == before and dm.shuffle_seed == 0
    assert torch.equal(torch.random.get_rng_state(), state)  # torch's random state as it was
    with other_data_order(dm, 1234):  # a DataLoader(shuffle=True) draws its order from torch's state: reproducible
        assert torch.equal(
            next(iter(DataLoader(TensorDataset(torch.arange(50)), batch_size=50, shuffle=True)))[0], plain
        )


def _run(tiny_data, out, rounds, experiment=None, **kwargs):
    """``run_lottery`` with instability: ``experiment``'s keywords for it, ``kwargs`` for the callback."""
    return tiny_experiment(
        tiny_data,
        out,
        rounds=rounds,
        lottery=LotteryTicketCallback(amount=0.5, verbose=False, **kwargs),
        trainer=round_trainer(max_epochs=4),
        instability=True,
        **(experiment or {}),
    )


def _training_tags(run_dir):
    events = EventAccumulator(str(RunPaths(run_dir).training_run))
    events.Reload()
    return set(events.Tags()["scalars"])


def _training_examples(tiny_data):
    datamodule = tiny_datamodule(tiny_data)
    datamodule.setup("fit")
    return datamodule.train_dataloader().examples.tensors


@pytest.mark.slow
def test_every_round_records_its_instability_curve_plot_and_dashboard(tiny_data, tmp_path):
    rows = _run(tiny_data, tmp_path, 2)
    run = rows.run_dir
    x, y = _training_examples(tiny_data)
    net = LotteryClassifier(net=MLP((784, 24, 10)))
    for row in rows:
        assert len(row.path_errors) == len(row.path_train_errors) == PATH_POINTS
        assert row.instability == pytest.approx(error_barrier(row.path_errors))
        assert row.instability_train == pytest.approx(error_barrier(row.path_train_errors))
        # The training data's path starts at the ticket's error on every training example, recomputed here.
        trained = saved_accuracy(net, RunPaths(run).weights(row.round), x, y)
        assert row.path_train_errors[0] == pytest.approx(1 - trained, abs=1e-6)
        # The path's ends are the ticket (its test error) and the second copy (its own test error).
        copy = json.loads(RunPaths(run).control(row.round, "instability").read_text())
        assert row.path_errors[0] == pytest.approx(1 - row.metrics["test_acc"], abs=1e-6)
        assert row.path_errors[-1] == pytest.approx(1 - copy["test_acc"], abs=1e-6)
        assert f"{round_label(row.round, 'instability')}/val/loss" in _training_tags(run)  # the copy's own curves
    header = (run / "results.csv").read_text().splitlines()[0].split(",")
    assert {"instability", "instability_train"} <= set(header)
    assert (run / "instability_vs_weights_remaining.png").is_file()
    events = EventAccumulator(str(RunPaths(run).series("ticket")), size_guidance={"tensors": 0})
    events.Reload()
    (config,) = events.Tensors("custom_scalars__config__")
    layout = layout_pb2.Layout.FromString(tensor_util.make_ndarray(config.tensor_proto).item())
    stability = next(c for c in layout.category if c.title == "lottery ticket: early stopping and stability")
    tags = [tag for chart in stability.chart for tag in chart.multiline.tag]
    assert tags == [
        r"^lottery/best_val_step$",
        r"^lottery/instability$",
        r"^lottery/instability_train$",
        r"^instability/round_\d+$",
        r"^instability_train/round_\d+$",
    ]
    curve = events.Scalars("instability/round_01")
    assert [e.step for e in curve] == list(range(PATH_POINTS))
    assert [e.value for e in curve] == pytest.approx(rows[1].path_errors)
    assert [e.value for e in events.Scalars("lottery/instability")] == pytest.approx([r.instability for r in rows])
    train = [r.instability_train for r in rows]
    assert [e.value for e in events.Scalars("lottery/instability_train")] == pytest.approx(train)
    curve = events.Scalars("instability_train/round_01")
    assert [e.value for e in curve] == pytest.approx(rows[1].path_train_errors)
    # Continuing the experiment reads the finished rounds back: the copies are not trained again.
    stamp = RunPaths(run).control(1, "instability").stat().st_mtime_ns
    more = _run(tiny_data, tmp_path, 3)
    assert more.run_dir == run and RunPaths(run).control(1, "instability").stat().st_mtime_ns == stamp
    assert more[1].path_errors == rows[1].path_errors and len(more[2].path_errors) == PATH_POINTS


def test_instability_needs_rewinding(tiny_data, tmp_path):
    with pytest.raises(ValueError, match="`instability` trains two copies from the rewind point; retrain='finetune'"):
        _run(tiny_data, tmp_path, 2, retrain="finetune")
    assert not any(tmp_path.iterdir())  # refused before anything was written


def test_the_instability_option_is_a_boolean():
    from lth_lightning.experiment.spec import ExperimentSpec

    with pytest.raises(ValueError, match="`lottery.instability` must be true or false, got 'yes'"):
        ExperimentSpec(rounds=2, instability="yes", prefix="lottery.")  # type: ignore[arg-type]


@pytest.mark.slow
def test_a_controls_instability_is_measured_on_request_stacked_or_not(tiny_data, tmp_path):
    measured = {}
    for stack in (False, True):
        options = {"controls": ["random_reinit", "random_prune"], "instability_controls": ["random_reinit"]}
        rows = _run(tiny_data, tmp_path / str(stack), 2, experiment={**options, "stack": stack})
        control = measured[stack] = rows[1].controls["random_reinit"]
        assert 0.0 <= control["instability"] <= 1.0 and 0.0 <= control["instability_train"] <= 1.0
        assert "instability" not in rows[1].controls["random_prune"]  # not asked for
        header = (rows.run_dir / "results.csv").read_text().splitlines()[0].split(",")
        assert {"random_reinit_instability", "random_reinit_instability_train"} <= set(header)
        copy_label = round_label(1, "random_reinit_instability")
        assert f"{copy_label}/val/loss" in _training_tags(rows.run_dir)  # the copy's own curves
        events = EventAccumulator(str(RunPaths(rows.run_dir).series("random_reinit")))
        events.Reload()
        assert [e.value for e in events.Scalars("lottery/instability")] == pytest.approx([control["instability"]])
    # A stacked round trains the control as a member, its copy alone: the same numbers as one network at a time.
    assert measured[True]["instability"] == pytest.approx(measured[False]["instability"], abs=1e-6)
    assert measured[True]["instability_train"] == pytest.approx(measured[False]["instability_train"], abs=1e-6)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"controls": ["random_prune"], "instability_controls": ["snip"]}, r"must be distinct entries of `controls`"),
        (
            {"controls": ["random_prune"], "instability_controls": ["random_prune"], "instability": False},
            r"contrasts the controls' instability with the ticket's: set `instability` to true too",
        ),
    ],
)
def test_instability_controls_are_checked_before_anything_is_written(tmp_path, options, message):
    from lth_lightning.experiment.spec import ExperimentSpec

    with pytest.raises(ValueError, match=message):
        ExperimentSpec(rounds=2, **{"instability": True, **options})
