"""`lth fit` driven as a user would (subprocesses), the run folder, TensorBoard, resume, configs."""

from __future__ import annotations

import contextlib
import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from cli_helpers import LTH, UnderscoreMLP, lth, lth_here, read_csv, run_folder, tiny_config
from conftest import REPO, accuracy, lightning_messages, saved_accuracy
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from lth_lightning import MLP, FashionMNISTDataModule, LotteryClassifier
from lth_lightning.cli.lottery_cli import LotteryCLI
from lth_lightning.experiment.record.paths import RunPaths, round_label
from lth_lightning.pruning.magnitude import keep_count
from lth_lightning.pruning.packing import unpack_masks

TOTAL = 784 * 32 + 32 * 16 + 16 * 10  # prunable weights of the tiny MLP of cli_helpers.tiny_config


@pytest.mark.slow
def test_lth_fit_two_rounds_leaves_a_complete_run_folder(tmp_path, tiny_data, capsys, monkeypatch):
    config = tiny_config(tmp_path, tiny_data)
    result = lth("fit", "-c", str(config), "--trainer.enable_model_summary=true", cwd=tmp_path)
    run = run_folder(result)
    experiment = run.parent
    assert run.name == "seed_0" and experiment.parent == (tmp_path / "runs").resolve()
    assert re.fullmatch(r"MLP-FashionMNIST-global0\.5-[0-9a-f]{8}", experiment.name)
    assert f"Run folder: {run}" in result.stdout and (experiment / "experiment.yaml").is_file()
    said = result.stdout + result.stderr  # the model summary, without a cloud-logger advertisement or FLOPs that read 0
    assert (
        "Trainable params" in said and "litlogger" not in said.lower() and "Flops" not in said.replace("FLOPs", "Flops")
    )
    assert "| round | weights left | ticket: final |" in result.stdout and "| 1 | 50.0% |" in result.stdout
    for name in (
        "config.yaml",
        "results.csv",
        "results.json",
        "accuracy_vs_weights_remaining.png",
        "first_layer_pixels.png",
    ):
        assert (run / name).is_file(), name
    for r in range(2):
        for name in ("metrics.json", "masks.pt", "weights.pt", "lottery.pt"):
            assert (RunPaths(run).round_dir(r) / name).is_file(), (r, name)
    # A recorded round keeps no checkpoint (LotteryClassifier's MLP is stackable: `lth fit` stacked each round).
    assert not list(experiment.rglob("*.ckpt")) and not (experiment / "stacked").exists()
    rows = read_csv(run / "results.csv")
    assert [int(r["round"]) for r in rows] == [0, 1]
    assert float(rows[0]["density"]) == 1.0
    assert float(rows[1]["density"]) == pytest.approx(keep_count(TOTAL, 0.5, 1) / TOTAL)
    for row in rows:
        assert 0 <= float(row["test_acc_at_best_val"]) <= 1
    data = FashionMNISTDataModule(tiny_data, batch_size=32, val_size=60)
    data.setup("test")
    for r, row in enumerate(rows):  # the reported accuracy is that of the network the round trained
        net = LotteryClassifier(net=MLP((784, 32, 16, 10)))
        assert float(row["test_acc"]) == pytest.approx(
            saved_accuracy(net, RunPaths(run).weights(r), *data.split("test")), abs=1e-6
        )
        assert 0 < int(row["best_val_step"]) <= int(row["steps"]) == 2 * 8  # 240 examples in batches of 32
    # masks.pt holds the masks each round trained with, loadable without running code.
    masks = torch.load(RunPaths(run).masks(1), weights_only=True)
    assert sum(int(m.sum()) for m in masks.values()) == keep_count(TOTAL, 0.5, 1)
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["lottery"]["amount"] == 0.5 and saved["model"]["init_args"]["lr"] == 0.01

    # TensorBoard, read back with its own reader: one value per round, images, hparams.
    summary = EventAccumulator(str(RunPaths(run).series("ticket")), size_guidance={"images": 0})
    summary.Reload()
    tags = summary.Tags()
    for tag in (
        "lottery/test_acc",
        "lottery/val_loss",
        "lottery/best_val_step",
        "lottery/density",
        "lottery/test_acc_at_best_val",
        "lottery/density/net.layers.0.weight",
    ):
        assert [e.step for e in summary.Scalars(tag)] == [0, 1], tag
    assert summary.Scalars("lottery/density")[1].value == pytest.approx(float(rows[1]["density"]))
    assert summary.Scalars("lottery/test_acc")[0].value == pytest.approx(float(rows[0]["test_acc"]))
    assert {"lottery/accuracy_vs_weights_remaining", "lottery/first_layer_pixels"} <= set(tags["images"])
    assert summary.PluginTagToContent("hparams")  # the hparams plugin's session data is there
    training = EventAccumulator(str(RunPaths(run).training_run))  # every training of the seed: one run
    training.Reload()
    scalars = set(training.Tags()["scalars"])
    for r in range(2):
        label = round_label(r)
        assert {f"{label}/{t}" for t in ("train/loss", "val/loss", "val/acc", "test/acc")} <= scalars
        assert len(training.Scalars(f"{label}/val/loss")) == 2  # one per epoch
        assert len(training.Scalars(f"{label}/test/acc")) == 1  # the final weights' test, once
    assert not any(t.endswith("/epoch") or "/lottery/" in t for t in scalars)  # the summary has lottery/*
    with pytest.raises(KeyError, match="hparams"):  # hyperparameters live in the summary run only
        training.PluginTagToContent("hparams")
    assert [p.name for p in RunPaths(run).tensorboard.iterdir()] == ["training"]  # the summary is in dashboard/

    # Rerunning the same command recomputes nothing; asking for one more round runs only that one.
    # (The later commands run in this process: the console script above already showed what a subprocess shows.)
    monkeypatch.chdir(tmp_path)
    stamps = {p: p.stat().st_mtime_ns for p in run.glob("round_*/metrics.json")}
    with lightning_messages() as said:
        lth_here(capsys, "fit", "-c", str(config))
    assert any("rounds 0-1 are finished and will not be recomputed" in line for line in said)
    assert {p: p.stat().st_mtime_ns for p in run.glob("round_*/metrics.json")} == stamps
    lth_here(capsys, "fit", "-c", str(config), "--lottery.rounds", "3")
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    rows = read_csv(run / "results.csv")
    assert [int(r["round"]) for r in rows] == [0, 1, 2]
    assert float(rows[2]["density"]) == pytest.approx(keep_count(TOTAL, 0.5, 2) / TOTAL)

    # A variant is another experiment, in its own folder; the first is untouched.
    out, _ = lth_here(capsys, "fit", "-c", str(config), "--lottery.amount", "0.3", "--model.lr", "0.02")
    variant = Path(re.findall(r"Run folder: (\S+)", out)[-1])
    assert variant.parent != experiment and re.fullmatch(
        r"MLP-FashionMNIST-global0\.3-[0-9a-f]{8}", variant.parent.name
    )
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    # Naming the first experiment's folder for the variant is refused, naming what differs; nothing is touched.
    named = ["--lottery.name", experiment.name, "--lottery.amount", "0.3", "--model.lr", "0.02"]
    _, err = lth_here(capsys, "fit", "-c", str(config), *named, code=2)
    assert "holds another experiment: it differs in lottery.amount: folder has 0.5, now 0.3" in err
    assert "model.init_args.lr: folder has 0.01, now 0.02" in err
    assert yaml.safe_load((run / "config.yaml").read_text())["lottery"]["amount"] == 0.5


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, tiny_data) -> dict[str, Path]:
    from lth_lightning.cli.commands import main

    runs = {}
    for stack in ("false", "true"):
        tmp = tmp_path_factory.mktemp(f"uninterrupted_{stack}")
        config = tiny_config(tmp, tiny_data, rounds=3, controls=["random_prune", "snip"], stack=stack == "true")
        with contextlib.redirect_stdout(io.StringIO()) as out:
            main(["fit", "-c", str(config)])  # in this process: nothing to kill here
        runs[stack] = Path(re.findall(r"Run folder: (\S+)", out.getvalue())[-1])
    return runs


@pytest.mark.slow
@pytest.mark.parametrize(("round_", "epoch", "stack"), [(1, 1, "false"), (2, 0, "false"), (1, 1, "true")])
def test_kill_mid_round_then_rerun_matches_an_uninterrupted_run(
    tmp_path, tiny_data, uninterrupted, round_, epoch, stack, capsys
):
    """Sequential rounds, and stacked ones (the ticket and its controls in one fit), resume exactly."""
    config = tiny_config(tmp_path, tiny_data, rounds=3, controls=["random_prune", "snip"], stack=stack == "true")
    uninterrupted = uninterrupted[stack]
    marker = tmp_path / "killed"
    kill = [
        "--trainer.callbacks+=cli_helpers.KillAt",
        f"--trainer.callbacks.round={round_}",
        f"--trainer.callbacks.epoch={epoch}",
        f"--trainer.callbacks.marker={marker}",
    ]
    killed = lth("fit", "-c", str(config), *kill, cwd=tmp_path, check=False)
    assert killed.returncode == -9 and marker.exists(), killed.stderr[-3000:]
    run = run_folder(killed)  # said when the run starts
    assert not RunPaths(run).metrics(round_).exists()
    with lightning_messages() as said:  # the rerun, in this process (the marker keeps KillAt quiet)
        out, _ = lth_here(capsys, "fit", "-c", str(config), *kill)
    assert Path(re.findall(r"Run folder: (\S+)", out)[-1]) == run
    if epoch > 0:
        interrupted = f"Stacked round {round_}" if stack == "true" else f"round_{round_:02d}"
        assert any(f"{interrupted} was interrupted: resuming it from" in line for line in said), said
    final = torch.load(RunPaths(run).lottery_state(2), weights_only=True)
    expected = torch.load(RunPaths(uninterrupted).lottery_state(2), weights_only=True)
    for key in ("masks", "round_masks"):
        got_masks, want_masks = unpack_masks(final[key]), unpack_masks(expected[key])
        assert got_masks.keys() == want_masks.keys()
        assert all(torch.equal(got_masks[k], want_masks[k]) for k in want_masks), key
    got, want = read_csv(run / "results.csv"), read_csv(uninterrupted / "results.csv")
    columns = ("density", "test_acc", "best_val_step", "random_prune_test_acc", "snip_test_acc")
    assert [[r[c] for c in columns] for r in got] == [[r[c] for c in columns] for r in want]
    for r in (1, 2):  # the controls' masks too: SNIP scores the initial network on the same batch after a resume
        got_snip = torch.load(RunPaths(run).control_masks(r, "snip"), weights_only=True)
        want_snip = torch.load(RunPaths(uninterrupted).control_masks(r, "snip"), weights_only=True)
        assert all(torch.equal(got_snip[k], want_snip[k]) for k in want_snip), r


def test_rounds_1_is_a_plain_fit_with_the_callback(tmp_path, tiny_data, capsys):
    config = tiny_config(tmp_path, tiny_data, rounds=1)
    lth_here(capsys, "fit", "-c", str(config), "--trainer.max_epochs", "1")
    runs = tmp_path / "runs"
    assert not list(runs.rglob("experiment.yaml"))  # a plain fit: no experiment folder
    ckpts = list(runs.glob("lightning_logs/version_0/checkpoints/*.ckpt"))
    assert len(ckpts) == 1
    state = torch.load(ckpts[0], weights_only=True)["callbacks"]["LotteryTicketCallback"]
    assert state["round"] == 0 and state["phase"] == "training" and state["snapshot"] is not None


def test_ckpt_path_with_several_rounds_is_refused(tmp_path, tiny_data, capsys):
    config = tiny_config(tmp_path, tiny_data)
    _, err = lth_here(capsys, "fit", "-c", str(config), "--ckpt_path", "x.ckpt", code=2)
    assert "--ckpt_path 'x.ckpt' is only for --lottery.rounds 1" in err


def test_help_documents_the_lottery_options(capsys):
    out, _ = lth_here(capsys, "fit", "--help")
    for option in (
        "--lottery.rounds",
        "--lottery.amount",
        "--lottery.scope",
        "--lottery.parameters",
        "--lottery.rates",
        "--lottery.rewind_step",
        "--lottery.name",
        "--lottery.out_dir",
        "--lottery.monitor",
        "--lottery.mode",
        "--lottery.test_metric",
        "--lottery.snapshot_device",
        "--lottery.keep_checkpoints",
        "--lottery.retrain",
        "--lottery.instability",
        "--lottery.scoring_per_class",
        "--lottery.grasp_temperature",
    ):
        assert option in out, option
    text = " ".join(out.split())  # argparse wraps lines
    assert "Fraction of the alive prunable weights removed per round, in (0, 1)." in text
    assert "{global,layerwise}" in out and "{cpu,module}" in out
    assert "{rewind,lr_rewind,finetune}" in out
    assert "Literal['random_reinit', 'random_prune', 'snip', 'grasp', 'synflow', 'magnitude_init', " in text
    assert "'random_prune:global', 'snip:layerwise', 'snip:shuffled', 'snip:reinit', 'snip:inverted'," in text
    assert "(GraSP's -w * Hg at temperature 200)" in text and "stable below 0.02" in text
    assert "Examples of each class in the batch SNIP and GraSP score" in text


def test_pruning_at_init_retraining_and_instability_from_the_command_line(tmp_path, tiny_data, capsys):
    config = tiny_config(tmp_path, tiny_data, rounds=2, controls=["synflow", "magnitude_init"], stack=False)
    options = ["--lottery.retrain", "lr_rewind", "--model.lr_schedule", "step"]
    out, _ = lth_here(capsys, "fit", "-c", str(config), *options, "--trainer.max_epochs", "1")
    run = Path(re.findall(r"Run folder: (\S+)", out)[-1])
    rows = read_csv(run / "results.csv")
    assert {"synflow_test_acc", "magnitude_init_test_acc"} <= set(rows[1]) and "instability" not in rows[1]
    written = yaml.safe_load((run / "config.yaml").read_text())
    assert written["lottery"]["retrain"] == "lr_rewind" and written["model"]["init_args"]["lr_schedule"] == "step"
    _, err = lth_here(capsys, "fit", "-c", str(config), "--lottery.instability", "true", *options, code=2)
    assert "`instability` trains two copies from the rewind point; retrain='lr_rewind' does not rewind" in err
    _, err = lth_here(capsys, "fit", "-c", str(config), "--lottery.retrain", "reset", code=2)
    assert "--lottery.retrain: reset is not allowed. Allowed: rewind, lr_rewind, finetune." in err


def test_print_config_prints_a_complete_config(capsys):
    out, _ = lth_here(
        capsys, "fit", "-c", str(REPO / "configs" / "quick.yaml"), "--lottery.rounds", "4", "--print_config"
    )
    printed = yaml.safe_load(out)
    assert printed["lottery"]["rounds"] == 4 and printed["lottery"]["amount"] == 0.5
    assert printed["model"]["class_path"] == "lth_lightning.LotteryClassifier"
    assert printed["data"]["init_args"]["batch_size"] == 128 and "max_epochs" in printed["trainer"]


def test_bad_input_is_refused_with_a_message_and_status_2_not_a_traceback(tmp_path, tiny_data, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    quick = str(REPO / "configs" / "quick.yaml")
    _, err = lth_here(capsys, "fit", "-c", quick, "--lottery.scope", "local", code=2)
    assert "lottery.scope" in err and "global" in err
    _, err = lth_here(capsys, "fit", "-c", quick, "--lottery.rounds", "0", code=2)
    assert "lth fit: error: `lottery.rounds` must be an integer >= 1, got 0" in err
    _, err = lth_here(capsys, "fit", "-c", quick, "--lottery.rounds", "1", "--lottery.seeds", "[0, 1]", code=2)
    assert "`lottery.seeds` runs the multi-round experiment per seed" in err
    _, err = lth_here(capsys, "fit", "-c", quick, "--lottery.round", "5", code=2)  # never abbreviated
    assert "unrecognized arguments: --lottery.round 5" in err and "Round 0" not in err
    config = tiny_config(tmp_path, tiny_data)
    _, err = lth_here(capsys, "fit", "-c", str(config), "--data.data_dir", str(tmp_path / "nowhere"), code=2)
    assert "lth fit: error: FashionMNIST file train-images-idx3-ubyte.gz not found" in err
    assert not any((tmp_path / "runs").rglob("*.yaml"))  # nothing recorded


def test_lth_help_lists_every_command(tmp_path):
    result = lth("--help", cwd=tmp_path)
    for command in ("fit", "validate", "test", "predict", "export", "aggregate", "compare", "report"):
        assert re.search(rf"^  {command}\b", result.stdout, flags=re.M), command
    unknown = lth("train", cwd=tmp_path, check=False)
    assert unknown.returncode != 0 and "unknown command 'train'; choose from fit, validate" in unknown.stderr


@pytest.mark.parametrize("path", sorted((REPO / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_config_parses(path, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    cli = LotteryCLI(args=["-c", str(path)], run=False)
    options, written = cli.config_init["lottery"], yaml.safe_load(path.read_text())["lottery"]
    assert options.spec.rounds == written["rounds"] and options.callback.amount == written["amount"]
    assert list(options.spec.controls) == written.get("controls", []) and options.spec.stack == written["stack"]
    assert options.callback.rates == written.get("rates", {})  # as written, read back as plain data
    assert type(cli.model).__name__ == "LotteryClassifier"
    assert type(cli.datamodule).__name__ in ("FashionMNISTDataModule", "MNISTDataModule")


@pytest.mark.slow
def test_seeds_are_run_and_aggregated_from_their_own_rows(tmp_path, tiny_data):
    config = tiny_config(tmp_path, tiny_data, rounds=2, seeds=[0, 1], controls=["random_prune"])
    result = lth("fit", "-c", str(config), "--trainer.max_epochs", "1", cwd=tmp_path)
    run = run_folder(result)  # the experiment folder, with one run per seed
    assert (run / "experiment.yaml").is_file() and "random_prune" in result.stdout
    assert re.search(r"\| 1 \| \S+% \| \d+\.\d\d \[\d+\.\d\d, \d+\.\d\d\] \|", result.stdout)  # mean [min, max]
    per_seed = [read_csv(run / f"seed_{s}" / "results.csv") for s in (0, 1)]
    assert yaml.safe_load((run / "seed_1" / "config.yaml").read_text())["seed_everything"] == 1
    assert (
        per_seed[0][0]["test_acc"] != per_seed[1][0]["test_acc"]
        or per_seed[0][0]["val_loss"] != per_seed[1][0]["val_loss"]
    )  # different seeds, different networks
    aggregated = read_csv(run / "results_seeds.csv")
    assert [int(r["round"]) for r in aggregated] == [0, 1] and {r["seeds"] for r in aggregated} == {"2"}
    for r, row in enumerate(aggregated):
        accs = [float(seed[r]["test_acc"]) for seed in per_seed]
        assert float(row["test_acc_mean"]) == pytest.approx(sum(accs) / 2)
        assert float(row["test_acc_std"]) == pytest.approx(abs(accs[0] - accs[1]) / 2**0.5)
        assert (float(row["test_acc_min"]), float(row["test_acc_max"])) == (min(accs), max(accs))
    assert float(aggregated[1]["random_prune_test_acc_mean"]) == pytest.approx(
        sum(float(seed[1]["random_prune_test_acc"]) for seed in per_seed) / 2
    )
    for name in ("accuracy_vs_weights_remaining.png", "early_stop_vs_weights_remaining.png", "results_seeds.json"):
        assert (run / name).is_file()


@pytest.mark.slow
def test_lth_fit_reads_the_metric_names_a_users_module_logs(tmp_path, tiny_data, capsys):
    config = tiny_config(tmp_path, tiny_data, controls=["random_prune"])
    user = ["--model", "cli_helpers.UnderscoreMLP"]
    _, err = lth_here(capsys, "fit", "-c", str(config), *user, code=2)
    assert "`monitor` 'val/loss' was never logged in validation. Logged metrics: val_acc, val_loss" in err
    assert not any((tmp_path / "runs").rglob("*"))  # refused at the sanity check, before anything was recorded
    named = ["--lottery.monitor", "val_loss", "--lottery.test_metric", "test_acc", "--lottery.keep_checkpoints", "true"]
    result = lth("fit", "-c", str(config), *user, *named, cwd=tmp_path)
    rows = read_csv(run_folder(result) / "results.csv")
    assert all(RunPaths(run_folder(result)).last_checkpoint(r).is_file() for r in (0, 1))
    assert list(rows[0])[:6] == ["round", "density", "val_loss", "val_acc", "test_acc", "best_val_loss"]
    data = FashionMNISTDataModule(tiny_data, batch_size=32, val_size=60)
    data.setup("test")
    for r, row in enumerate(rows):  # the user's own test metric, for the network the round trained
        module = UnderscoreMLP()
        module.load_state_dict(torch.load(RunPaths(run_folder(result)).weights(r), weights_only=True))
        assert float(row["test_acc"]) == pytest.approx(accuracy(module.net, *data.split("test")), abs=1e-6)
        assert float(row["val_loss"]) > 0 and int(row["best_val_step"]) >= 1
        assert 0 <= float(row["test_acc_at_best_val"]) <= 1
    assert 0 <= float(rows[1]["random_prune_test_acc"]) <= 1 and float(rows[1]["random_prune_val_loss"]) > 0
    # The final table has the control; the log lines read like it; Lightning's per-Trainer lines come once.
    header = next(line for line in result.stdout.splitlines() if line.startswith("| round"))
    assert header == "| round | weights left | ticket: final | ticket: at early stop | early-stop step |"
    assert re.search(r"^\| 1 \| 50\.0% \| \d+\.\d\d \| \d+\.\d\d \| \d+ \|$", result.stdout, flags=re.M)
    assert "| round | weights left | random_prune |" in result.stdout  # the controls' table, as lth report prints it
    line = r"Round 1 of seed 0: 50\.\d\d% of weights, test_acc \d\.\d{4}, early-stop step \d+ "
    line += r"\(test_acc there \d\.\d{4}\), random_prune \d\.\d{4}\."
    assert re.search(line, result.stderr)
    assert result.stderr.count("GPU available:") == 1  # 3 Trainers, said once
    assert "💡 Tip" not in result.stderr  # Lightning's cloud-logger advertisement: not about the run
    assert "LeafSpec" not in result.stderr and "Warning" not in result.stderr


@pytest.mark.slow
def test_lth_calms_openmp_unless_the_user_chose(tmp_path):
    from lth_lightning.cli.commands import OPENMP_DEFAULTS, calm_openmp

    environ = {"PATH": "/bin"}
    assert calm_openmp(environ) == OPENMP_DEFAULTS and environ["GOMP_SPINCOUNT"] == "1000"
    for chosen in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME"):
        environ = {chosen: "7"}
        assert calm_openmp(environ) == {} and environ == {chosen: "7"}  # the user's setting wins
    probe = (
        "import os, sys\nfrom lth_lightning.cli.commands import main\ntry:\n    main(['fit', '--help'])\n"
        "except SystemExit:\n    pass\nprint('SPIN', os.environ.get('GOMP_SPINCOUNT'), file=sys.stderr)"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")}
    result = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120)
    assert "SPIN 1000" in result.stderr, result.stderr[-2000:]  # set before torch loads, in a real `lth fit`


@pytest.mark.slow
def test_lth_fit_into_a_log_file_writes_lines_not_progress_bar_redraws(tmp_path, tiny_data):
    config = yaml.safe_load(tiny_config(tmp_path, tiny_data, rounds=3, controls=["random_reinit"]).read_text())
    del config["trainer"]["enable_progress_bar"]  # the default: a bar in a terminal
    config["lottery"]["progress"] = True
    (tmp_path / "log.yaml").write_text(yaml.safe_dump(config))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    with open(tmp_path / "lth.log", "w") as log:  # as under nohup or a scheduler: not a terminal
        subprocess.run(
            [LTH, "fit", "-c", "log.yaml"],
            cwd=tmp_path,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            timeout=600,
            check=True,
        )
    text = (tmp_path / "lth.log").read_text()
    assert "\r" not in text and "v_num" not in text and "lottery rounds" not in text  # no bar, no redraw
    lines = text.splitlines()
    ours = [i for i, line in enumerate(lines) if "Run folder:" in line or "prunes" in line or ": epoch " in line]
    assert "Run folder:" in lines[ours[0]]  # before anything the training says
    for r in range(3):
        assert sum(line.startswith(f"Round {r} of seed 0:") for line in lines) == 1, text
    epochs = [line for line in lines if re.search(r"round_0\d: epoch [12]/2, step \d+, ", line)]
    assert len(epochs) == 3 * 2, text  # one stacked fit a round (ticket and control), one line an epoch
    assert all("val/acc" in line for line in epochs)  # the figures a person reads
    summary = text.index("| round | weights left |")
    assert len(text[:summary].encode()) < 1500 * 3, text  # a round costs a few lines, not a bar's redraws


@pytest.mark.slow
def test_lth_fit_imports_the_users_module_from_the_working_directory(tmp_path, tiny_data):
    """As `python -m` and most command-line tools do: `--model my_cnn.SmallCNN` beside `my_cnn.py`."""
    (tmp_path / "my_cnn.py").write_text(
        "from lth_lightning import MLP, LotteryClassifier\n\n\n"
        "class SmallCNN(LotteryClassifier):\n"
        "    def __init__(self, lr: float = 0.01) -> None:\n"
        "        super().__init__(net=MLP((784, 8, 10)), lr=lr)\n"
    )
    result = lth("fit", "--model", "my_cnn.SmallCNN", "--data.data_dir", str(tiny_data), "--print_config", cwd=tmp_path)
    assert "class_path: my_cnn.SmallCNN" in result.stdout


@pytest.mark.slow
def test_ctrl_c_exits_130_after_saying_what_rerunning_resumes(tmp_path, tiny_data):
    config = tiny_config(tmp_path, tiny_data, rounds=3)
    interrupt = [
        "--trainer.callbacks+=cli_helpers.KillAt",
        "--trainer.callbacks.round=1",
        "--trainer.callbacks.epoch=0",
        f"--trainer.callbacks.marker={tmp_path / 'interrupted'}",
        "--trainer.callbacks.signal_name=SIGINT",
    ]
    result = lth("fit", "-c", str(config), *interrupt, cwd=tmp_path, check=False)
    said = result.stdout + result.stderr
    assert result.returncode == 130, said[-3000:]
    assert "Interrupted in round 1 of seed 0: round 0 is kept; rerunning the same command resumes round 1" in said
