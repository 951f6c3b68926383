"""The experiment layer: run identity and folders, failed starts, seeds from Python, aggregation and comparison."""

from __future__ import annotations

import csv
import itertools
import re
import shutil

import pytest
import torch
from conftest import round_trainer, tiny_datamodule, tiny_experiment

from lth_lightning import (
    MLP,
    FashionMNISTDataModule,
    LotteryClassifier,
    LotteryTicketCallback,
    aggregate_runs,
    compare_runs,
    run_lottery,
    run_seeds,
)
from lth_lightning.experiment.dashboard.plots import (
    plot_accuracy_vs_density,
    plot_comparison,
    plot_early_stop_vs_density,
)
from lth_lightning.experiment.record.identity import experiment_folder, experiment_identity, folder_name, python_config
from lth_lightning.experiment.record.paths import ExperimentPaths, RunPaths


def _read(path):
    with open(path) as fh:
        return list(csv.DictReader(fh))


# ----------------------------------------------------------------------------- identity


def _config(**changes):
    settings = {"amount": 0.2, "scope": "global", "controls": [], "seed": 0, "rounds": 3, **changes.pop("lottery", {})}
    trainer = {"max_epochs": 1, "enable_progress_bar": False, **changes.pop("trainer", {})}
    net = MLP(changes.pop("sizes", (784, 24, 10)))
    model = LotteryClassifier(net=net, lr=changes.pop("lr", 0.01))
    dm = FashionMNISTDataModule(changes.pop("data_dir", "data"), batch_size=changes.pop("batch_size", 32))
    return python_config(model, dm, settings, trainer)


@pytest.mark.parametrize(
    "change",
    [
        {"lr": 0.5},
        {"batch_size": 64},
        {"sizes": (784, 32, 10)},  # the network's hyperparameters
        {"lottery": {"amount": 0.5}},
        {"lottery": {"controls": ["random_reinit"]}},
        {"lottery": {"monitor": "val_loss"}},
        {"trainer": {"max_epochs": 9}},
    ],
    ids=lambda change: next(iter(change.get("lottery", change.get("trainer", change)))),
)
def test_every_setting_that_changes_results_changes_the_experiment(change):
    assert folder_name(_config(**change)) != folder_name(_config())


@pytest.mark.parametrize(
    "change",
    [
        {"data_dir": "elsewhere"},
        {"trainer": {"enable_progress_bar": True}},
        {"lottery": {"rounds": 14}},
        {"lottery": {"seed": 3}},  # a seed is a run of the experiment, not another experiment
        {"lottery": {"snapshot_device": "module"}},  # where the rewind snapshot is kept
    ],
    ids=["data_dir", "progress", "rounds", "seed", "snapshot_device"],
)
def test_where_the_data_lives_progress_rounds_and_seed_do_not(change):
    assert folder_name(_config(**change)) == folder_name(_config())


def test_the_seed_is_in_a_runs_identity_not_the_experiments():
    assert experiment_identity(_config(), seed=True)["lottery.seed"] == 0
    assert "lottery.seed" not in experiment_identity(_config())


def test_a_wrapped_network_names_the_folder_from_python_as_from_the_cli():
    assert re.fullmatch(r"MLP-FashionMNIST-global0\.2-[0-9a-f]{8}", folder_name(_config()))


class SmallCNN(LotteryClassifier):
    """A user's module whose network is an inner nn.Sequential."""

    def __init__(self) -> None:
        super().__init__(net=torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10)))


def test_a_module_wrapping_an_nn_sequential_names_the_folder_after_the_users_class(tmp_path):
    dm = FashionMNISTDataModule("data")
    config = python_config(SmallCNN(), dm, {"amount": 0.2, "scope": "global"}, {})
    assert config["model"]["network"] == "torch.nn.modules.container.Sequential"  # recorded as it is
    assert re.fullmatch(r"SmallCNN-FashionMNIST-global0\.2-[0-9a-f]{8}", folder_name(config))
    cli = {"model": {"class_path": "my.SmallCNN", "init_args": {"net": {"class_path": "torch.nn.Sequential"}}}}
    assert folder_name(cli).startswith("SmallCNN-")  # lth fit's config alike
    # An experiment started under the earlier rule keeps its folder: the same identity's hash names it.
    identity = experiment_identity(config)
    earlier = tmp_path / f"Sequential-FashionMNIST-global0.2-{folder_name(config, identity).rsplit('-', 1)[1]}"
    assert experiment_folder(tmp_path, config, identity) == tmp_path / folder_name(config, identity)
    earlier.mkdir()
    assert experiment_folder(tmp_path, config, identity) == earlier


# ----------------------------------------------------------------------------- defect 1: stale results


def test_rerunning_from_python_with_other_hyperparameters_trains_them(tmp_path, tiny_data):
    first = tiny_experiment(tiny_data, tmp_path)
    second = tiny_experiment(tiny_data, tmp_path, lr=0.5, batch_size=32)  # same out_dir, no name: another experiment
    assert [r.as_dict() for r in second] != [r.as_dict() for r in first]
    assert second.run_dir != first.run_dir and first.run_dir.is_dir()
    assert second[0].steps == 8 and first[0].steps == 5  # 240 examples in batches of 32, not the old 48
    again = tiny_experiment(tiny_data, tmp_path, lr=0.5, batch_size=32)  # the same experiment: read back
    assert [r.as_dict() for r in again] == [r.as_dict() for r in second]
    with pytest.raises(
        ValueError, match=r"holds another experiment: it differs in data.init_args.batch_size: folder has 48"
    ):
        tiny_experiment(tiny_data, tmp_path, lr=0.5, batch_size=32, name=first.experiment_dir.name)


# ----------------------------------------------------------------------------- defect 2: failed starts


def test_a_failed_start_records_nothing_and_moving_the_data_resumes(tmp_path, tiny_data):
    with pytest.raises(Exception, match="FashionMNIST file train-images-idx3-ubyte.gz not found"):
        torch.manual_seed(0)
        run_lottery(
            LotteryClassifier(net=MLP((784, 24, 10)), lr=0.01),
            FashionMNISTDataModule(tmp_path / "nowhere", batch_size=48, val_size=60),
            rounds=2,
            trainer=round_trainer(),
            out_dir=tmp_path / "runs",
            progress=False,
        )
    typo = LotteryTicketCallback(amount=0.5, rates={"net.layers.9.weight": 0.1}, verbose=False)
    with pytest.raises(ValueError, match=r"`rates` entry 'net.layers.9.weight' matches no parameter"):
        tiny_experiment(tiny_data, tmp_path / "runs", lottery=typo)
    assert not any((tmp_path / "runs").rglob("*.yaml"))  # nothing recorded as an experiment
    rows = tiny_experiment(tiny_data, tmp_path / "runs")  # the corrected command
    assert [r.round for r in rows] == [0, 1]
    moved = shutil.copytree(tiny_data, tmp_path / "moved")
    resumed = tiny_experiment(moved, tmp_path / "runs")  # the data moved: the same experiment, read back
    assert resumed.run_dir == rows.run_dir and [r.as_dict() for r in resumed] == [r.as_dict() for r in rows]


# ----------------------------------------------------------------------------- seeds, aggregation, comparison


@pytest.mark.slow
def test_run_seeds_equals_separate_jobs_aggregated(tmp_path, tiny_data):
    def make_model():
        return LotteryClassifier(net=MLP((784, 24, 10)), lr=0.01)

    dm = tiny_datamodule(tiny_data)
    lottery = LotteryTicketCallback(amount=0.5, verbose=False)
    common = {"rounds": 2, "trainer": round_trainer(), "progress": False, "controls": ["random_prune"]}
    together = run_seeds(make_model, dm, seeds=[0, 1], lottery=lottery, out_dir=tmp_path / "a", **common)
    assert sorted(together.runs) == [0, 1] and [r["seeds"] for r in together.aggregated] == [2, 2]

    # The same seeds as two jobs (a SLURM array), each one seed, then `aggregate_runs` over the folder.
    for seed in (0, 1):
        import lightning.pytorch as pl

        pl.seed_everything(seed)
        callback = LotteryTicketCallback(amount=0.5, verbose=False)
        job = run_lottery(make_model(), dm, lottery=callback, seed=seed, out_dir=tmp_path / "b", **common)
    experiment = ExperimentPaths(job.experiment_dir)
    assert [run.seed for run in experiment.runs()] == [0, 1]
    assert experiment.root.name == together.experiment_dir.name  # one experiment, one name
    aggregate_runs(experiment.runs(), experiment.root)

    def strip(rows):
        return [{k: v for k, v in row.items() if not k.startswith("seconds")} for row in rows]

    a = _read(ExperimentPaths(together.experiment_dir).results_seeds.with_suffix(".csv"))
    b = _read(experiment.results_seeds.with_suffix(".csv"))
    assert strip(a) == strip(b) and "random_prune_test_acc_max" in a[1]
    for name in ("accuracy_vs_weights_remaining.png", "early_stop_vs_weights_remaining.png"):
        assert (experiment.root / name).is_file()
    with pytest.raises(ValueError, match="`seeds` must be a non-empty list of distinct integers"):
        run_seeds(make_model, dm, seeds=[1, 1], **common)
    with pytest.raises(TypeError, match=r"run_seeds\(\) got an unexpected keyword argument 'epochs'"):
        run_seeds(make_model, dm, seeds=[0], epochs=3, **common)


def test_aggregating_another_experiment_is_refused(tmp_path, tiny_data):
    one = tiny_experiment(tiny_data, tmp_path)
    other = tiny_experiment(tiny_data, tmp_path, lr=0.05)
    with pytest.raises(ValueError, match=r"is another experiment than .*model.init_args.lr: first has 0.01, now 0.05"):
        aggregate_runs([RunPaths(one.run_dir), RunPaths(other.run_dir)], tmp_path / "out")


def test_lth_compare_prints_the_tickets_side_by_side_as_it_plotted_them(tmp_path, tiny_data, capsys):
    from cli_helpers import lth_here

    half = tiny_experiment(tiny_data, tmp_path)
    third = tiny_experiment(tiny_data, tmp_path, lottery=LotteryTicketCallback(amount=0.3, verbose=False))
    folders = [str(half.experiment_dir), str(third.experiment_dir)]
    out, _ = lth_here(capsys, "compare", *folders, "--out", str(tmp_path / "cmp"), "--labels", "half", "third")
    header = "| round | half: weights left | half: ticket | third: weights left | third: ticket |"
    assert out.startswith("### Side by side: the ticket's test/acc at the end\n\n" + header)
    lines = out.splitlines()
    for rows, column in ((half, 1), (third, 3)):  # each round's weights and accuracy, from the run's own rows
        for row in rows:
            cells = lines[4 + row.round].strip("| ").split(" | ")
            assert cells[column : column + 2] == [f"{100 * row.density:.1f}%", f"{100 * row.metrics['test_acc']:.2f}"]
    assert lines[-1].startswith("Compared half, third: ")


def test_compare_overlays_experiments_by_weights_pruned(tmp_path, tiny_data):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    half = tiny_experiment(tiny_data, tmp_path)
    third = tiny_experiment(tiny_data, tmp_path, lottery=LotteryTicketCallback(amount=0.3, verbose=False))
    labels = ["amount 0.5", "amount 0.3/late"]  # a "/" in a label is not a folder of the TensorBoard logdir
    experiments = compare_runs([half.experiment_dir, third.experiment_dir], tmp_path / "cmp", labels=labels)
    assert list(experiments) == labels and (tmp_path / "cmp" / "accuracy_vs_weights_remaining.png").is_file()
    assert sorted(p.name for p in (tmp_path / "cmp" / "tensorboard").iterdir()) == ["amount 0.3_late", "amount 0.5"]
    for label, rows in (("amount 0.5", half), ("amount 0.3_late", third)):
        events = EventAccumulator(str(tmp_path / "cmp" / "tensorboard" / label))
        events.Reload()
        steps = [e.step for e in events.Scalars("lottery/test_acc")]
        assert steps == [round(10_000 * (1 - r.density)) for r in rows]  # aligned by weights pruned
    with pytest.raises(ValueError, match="Give one label per folder: 1 labels for 2 folders"):
        compare_runs([half.experiment_dir, third.experiment_dir], tmp_path / "cmp", labels=["x"])
    with pytest.raises(ValueError, match=r"needs its own label, got \['a/b', 'a_b'\]"):
        compare_runs([half.experiment_dir, third.experiment_dir], tmp_path / "cmp", labels=["a/b", "a_b"])


def test_the_ticks_of_experiments_pruned_at_nearby_rates_do_not_overlap():
    experiments = {
        f"rate {rate}": [{"round": r, "density": (1 - rate) ** r, "test_acc": 0.9 - r / 50} for r in range(12)]
        for rate in (0.2, 0.21, 0.5)
    }
    fig = plot_comparison(experiments)
    fig.canvas.draw()
    boxes = [t.get_window_extent() for t in fig.axes[0].get_xticklabels() if t.get_text()]
    assert len(boxes) >= 8  # still a dense scale of ticks
    assert not any(a.overlaps(b) for a, b in itertools.combinations(boxes, 2))


# ----------------------------------------------------------------------------- plots


def test_accuracy_plot_has_a_title_a_dense_line_the_early_stop_series_and_a_tick_per_round():
    rows = [
        {"round": r, "density": 0.8**r, "test_acc": 0.8 + r / 100, "test_acc_at_best_val": 0.79 + r / 100}
        | ({"random_reinit_test_acc": 0.78, "random_prune_test_acc": 0.77} if r else {})
        for r in range(5)
    ]
    fig = plot_accuracy_vs_density(rows)
    ax = fig.axes[0]
    assert ax.get_title() == "Test accuracy vs weights remaining"
    labels = [line.get_label() for line in ax.get_lines()]
    assert {"ticket", "ticket, at early stop", "random reinit", "random pruning", "dense network (0.8)"} <= set(labels)
    dense = next(line for line in ax.get_lines() if line.get_label().startswith("dense"))
    assert set(dense.get_ydata()) == {0.8}
    ticks = sorted(ax.get_xticks())
    assert ticks == pytest.approx(sorted(100 * 0.8**r for r in range(5)))
    fig.canvas.draw()
    labels = {t.get_text() for t in ax.get_xticklabels()}
    assert labels == {f"{100 * 0.8**r:.3g}" for r in range(5)}  # each tick labelled with its percentage


@pytest.mark.parametrize("plot", [plot_accuracy_vs_density, plot_early_stop_vs_density])
def test_a_seeds_plot_title_fits_inside_the_figure(plot):
    rows = [
        {"round": r, "seeds": 5, "density_mean": 0.8**r}
        | {
            f"{key}_{stat}": value
            for key, value in (("test_acc", 0.9), ("best_val_step", 400.0))
            for stat in ("mean", "min", "max")
        }
        for r in range(3)
    ]
    fig = plot(rows)
    fig.canvas.draw()
    title = fig.axes[0].title
    assert "5 seeds" in title.get_text()
    box, width = title.get_window_extent(), fig.bbox.width
    assert box.x0 >= 0 and box.x1 <= width, f"title spans x {box.x0:.0f}-{box.x1:.0f} of {width:.0f}"


def test_identities_that_compare_equal_hash_alike():
    from lth_lightning.experiment.record.identity import digest

    assert digest({"trainer.limit_train_batches": 100}) == digest({"trainer.limit_train_batches": 100.0})
    assert digest({"a": [1, 2], "b": True}) == digest({"b": True, "a": [1.0, 2.0]})
    assert digest({"a": True}) != digest({"a": 1})  # True == 1 in Python, but a switch is not a count
    assert digest({"lottery.amount": 0.2}) != digest({"lottery.amount": 0.25})
