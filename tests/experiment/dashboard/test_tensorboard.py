"""The TensorBoard dashboard, read back with TensorBoard's own reader."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import torch
from conftest import round_trainer, tiny_datamodule, two_seeds
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.custom_scalar import layout_pb2
from tensorboard.plugins.hparams import metadata as hparams_metadata
from tensorboard.plugins.hparams import plugin_data_pb2
from tensorboard.util import tensor_util

from lth_lightning import MLP, LotteryClassifier, LotteryTicketCallback, run_lottery
from lth_lightning.experiment.record.paths import ExperimentPaths, RunPaths

CONTROLS = ["random_reinit", "random_prune"]


def _reader(folder) -> EventAccumulator:
    events = EventAccumulator(str(folder), size_guidance={"images": 0, "tensors": 0})
    events.Reload()
    return events


def _layout(events: EventAccumulator) -> layout_pb2.Layout:
    (event,) = events.Tensors("custom_scalars__config__")
    return layout_pb2.Layout.FromString(tensor_util.make_ndarray(event.tensor_proto).item())


def _charts(layout: layout_pb2.Layout) -> dict[str, layout_pb2.Chart]:
    return {chart.title: chart for category in layout.category for chart in category.chart}


def _session_start(events: EventAccumulator) -> plugin_data_pb2.SessionStartInfo:
    content = events.PluginTagToContent("hparams")[hparams_metadata.SESSION_START_INFO_TAG]
    return plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info


@pytest.fixture(scope="module")
def run(tmp_path_factory, tiny_data) -> RunPaths:
    torch.manual_seed(0)
    rows = run_lottery(
        LotteryClassifier(net=MLP((784, 24, 10)), lr=0.01),
        tiny_datamodule(tiny_data),
        rounds=3,
        lottery=LotteryTicketCallback(amount=0.5, verbose=False),
        trainer=round_trainer(deterministic=False),
        out_dir=tmp_path_factory.mktemp("dash"),
        controls=CONTROLS,
        progress=False,
    )
    return RunPaths(rows.run_dir)


def _first_event_times(summary: Path) -> dict[str, float]:
    """Each run's first event time: TensorBoard lists runs (and gives them colours) in this order."""
    return {run.name: _reader(run).FirstEventTimestamp() for run in summary.iterdir()}


def test_the_layout_tells_the_ticket_vs_controls_story(run):
    assert sorted(p.name for p in run.summary.iterdir()) == ["random_prune", "random_reinit", "ticket"]  # a run each
    events = _reader(run.series("ticket"))
    layout = _layout(events)
    charts = _charts(layout)
    story = charts["test accuracy: ticket vs random reinit vs random pruning"].multiline.tag
    assert list(story) == ["^lottery/test_acc$"]  # one tag, drawn for every series' run, each in its own color
    # The page leads with its answer: accuracy, then early stopping, then weights and masks.
    assert [[chart.title for chart in category.chart] for category in layout.category] == [
        [
            "test accuracy: ticket vs random reinit vs random pruning",
            "test accuracy at the early-stopping iteration: ticket vs controls",
        ],
        ["early-stopping iteration (step): ticket vs controls"],
        [
            "weights remaining (fraction) by round",
            "density of each layer by round",
            "mask overlap with the previous round (Jaccard), per layer",
        ],
    ]
    assert "untick 'Ignore outliers in chart scaling'" in layout.category[0].title  # the page's own text says how
    # Every chart shows something: each of its tag patterns matches a scalar of the summary run.
    scalars = events.Tags()["scalars"]
    for title, chart in charts.items():
        for pattern in chart.multiline.tag:
            assert any(re.search(pattern, tag) for tag in scalars), (title, pattern)
    assert [e.step for e in events.Scalars("lottery/test_acc")] == [0, 1, 2]
    for control in CONTROLS:
        series = _reader(run.series(control))
        assert [e.step for e in series.Scalars("lottery/test_acc")] == [1, 2]
        expected = {"lottery/test_acc", "lottery/test_acc_at_best_val", "lottery/best_val_step", "lottery/val_loss"}
        assert set(series.Tags()["scalars"]) == expected


def test_the_scalars_page_is_clean_and_the_hparams_typed(run):
    events = _reader(run.series("ticket"))
    scalars = events.Tags()["scalars"]
    assert all(tag.startswith("lottery/") for tag in scalars)  # no epoch, no single-point hparam/* charts
    assert {"lottery/accuracy_vs_weights_remaining", "lottery/first_layer_pixels"} <= set(events.Tags()["images"])
    hparams = _session_start(events).hparams
    assert hparams["trainer.deterministic"].WhichOneof("kind") == "bool_value"  # a boolean, shown as one
    assert hparams["trainer.deterministic"].bool_value is False
    assert hparams["lottery.amount"].number_value == 0.5 and hparams["lottery.scope"].string_value == "global"
    assert hparams["lottery.seed"].number_value == 0


def test_mask_overlap_with_the_previous_round_is_the_layers_survival_rate(run):
    events = _reader(run.series("ticket"))
    masks = [torch.load(run.masks(r), weights_only=True) for r in range(3)]
    for name in masks[0]:
        values = [e.value for e in events.Scalars(f"lottery/overlap_prev/{name}")]
        expected = [masks[r][name].sum().item() / masks[r - 1][name].sum().item() for r in (1, 2)]
        assert values == pytest.approx(expected)  # the masks are nested, so Jaccard = survivors / alive before


@pytest.mark.slow
def test_seeds_have_min_max_bands_and_the_overlap_between_their_tickets(tmp_path, tiny_data):
    runs = two_seeds(tiny_data, tmp_path)
    experiment = ExperimentPaths(runs.experiment_dir)
    events = _reader(experiment.series("ticket"))
    charts = _charts(_layout(events))
    band = charts["test accuracy: mean and min-max over seeds"].margin.series[0]
    tags = ("lottery/test_acc/mean", "lottery/test_acc/min", "lottery/test_acc/max")
    assert (band.value, band.lower, band.upper) == tags
    # Accuracy first, as on a run's page (TensorBoard draws a section's Margin charts last-listed first).
    layout = _layout(events)
    assert [chart.title for chart in reversed(layout.category[0].chart)] == [
        "test accuracy: mean and min-max over seeds",
        "test accuracy at the early-stopping iteration: mean and min-max over seeds",
    ]
    assert "untick 'Ignore outliers in chart scaling'" in layout.category[0].title
    assert [c.title for c in layout.category[1:]] == [
        "lottery ticket over seeds: early stopping",
        "lottery ticket over seeds: weights remaining and masks",
    ]
    # One colour per series: its runs come in the same order on the seeds' page and on each run's page.
    order = ["ticket", "random_prune", "chance"]
    for summary, series in ((experiment.summary, order), (experiment.run(0).summary, order[:2])):
        times = _first_event_times(summary)
        assert sorted(times, key=times.get) == series, times
    # No chart opens empty: each of its tags is a scalar of the summary.
    scalars = set(events.Tags()["scalars"]) | set(_reader(experiment.series("random_prune")).Tags()["scalars"])
    for title, chart in charts.items():
        wanted = list(chart.multiline.tag) or [t for s in chart.margin.series for t in (s.value, s.lower, s.upper)]
        assert wanted and all(any(re.search(p, tag) for tag in scalars) for p in wanted), (title, wanted)
    per_seed = _reader(experiment.run(0).series("ticket")).Tags()["scalars"]
    assert not any(tag.endswith(("/mean", "/min", "/max")) for tag in per_seed)  # no band chart lacks its tags
    lows = [e.value for e in events.Scalars("lottery/test_acc/min")]
    assert lows == pytest.approx([row["test_acc_min"] for row in runs.aggregated])
    control = _reader(experiment.series("random_prune"))  # the same band tags: the chart draws a band per series
    highs = [e.value for e in control.Scalars("lottery/test_acc/max")]
    assert highs == pytest.approx([row["random_prune_test_acc_max"] for row in runs.aggregated[1:]])
    masks = [torch.load(experiment.run(s).masks(1), weights_only=True) for s in (0, 1)]
    name = "net.layers.0.weight"
    both, either = (masks[0][name] & masks[1][name]).sum(), (masks[0][name] | masks[1][name]).sum()
    (overlap,) = [e.value for e in events.Scalars(f"lottery/overlap_seeds/{name}") if e.step == 1]
    assert overlap == pytest.approx(float(both / either))
    chance_run = _reader(experiment.series("chance"))
    (chance,) = [e.value for e in chance_run.Scalars(f"lottery/overlap_seeds/{name}") if e.step == 1]
    density = float((masks[0][name].float().mean() + masks[1][name].float().mean()) / 2)
    assert chance == pytest.approx(density / (2 - density))
    assert _session_start(events).hparams["seeds"].number_value == 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_lth_dashboard_serves_the_story_runs_only_with_smoothing_0(run, tmp_path):
    lth = Path(sys.executable).with_name("lth")
    port = _free_port()
    server = subprocess.Popen(
        [str(lth), "dashboard", str(run.root.parent), "--port", str(port)],  # the experiment folder, one run
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        said = [server.stdout.readline() for _ in range(2)]
        assert said[0].strip() == f"TensorBoard on {run.summary}"
        assert said[1].strip() == f"Open http://127.0.0.1:{port}/#custom_scalars&_smoothingWeight=0"
        deadline = time.monotonic() + 120
        while True:
            try:
                runs = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/data/runs", timeout=5).read())
                break
            except OSError:
                assert time.monotonic() < deadline and server.poll() is None, "TensorBoard did not answer"
                time.sleep(0.5)
        assert sorted(runs) == ["random_prune", "random_reinit", "ticket"]  # not the rounds' 8 training runs
    finally:
        server.terminate()
        server.wait(timeout=30)  # TensorBoard itself (lth execs it): nothing left behind
    refused = subprocess.run([str(lth), "dashboard", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and f"No TensorBoard summary in {tmp_path}" in refused.stderr
