"""The round results in the user's Lightning loggers (lth_lightning/experiment/rounds/round_logging.py): one run per
experiment, every round's results at step = round, read back from each logger's own files."""

from __future__ import annotations

import csv
import json
import struct
import time

import pytest
from conftest import round_trainer, tiny_experiment
from lightning.pytorch.loggers import CSVLogger

from lth_lightning import LotteryTicketCallback


def _expected(rows, seed=0):
    """What each round should say, from the run's own rows: the ticket's test accuracy, at its early stop, the
    weights remaining and the control's gap."""
    out = {}
    for row in rows:
        said = {"weights_remaining": row.density, "test_acc": row.metrics["test_acc"]}
        said["test_acc_at_best_val"] = row.metrics["test_acc_at_best_val"]
        if "random_reinit" in row.controls:
            said["random_reinit/gap"] = row.metrics["test_acc"] - row.controls["random_reinit"]["test_acc"]
        out[row.round] = {f"round/seed_{seed}/{k}": v for k, v in said.items()}
    return out


def _run(tiny_data, tmp_path, logger):
    return tiny_experiment(
        tiny_data,
        tmp_path / "runs",
        rounds=3,
        controls=["random_reinit"],
        trainer=round_trainer(logger=logger),
        report=False,
    )


def test_csv_logger_gets_every_rounds_results_in_one_run(tiny_data, tmp_path):
    rows = _run(tiny_data, tmp_path, CSVLogger(tmp_path / "csv", name="lth"))
    versions = list((tmp_path / "csv" / "lth").iterdir())
    assert [v.name for v in versions] == ["version_0"]  # one run for the experiment, not one per round
    with open(versions[0] / "metrics.csv") as fh:
        logged = list(csv.DictReader(fh))
    by_step = {int(r["step"]): r for r in logged}
    for step, expected in _expected(rows).items():
        for name, value in expected.items():
            assert float(by_step[step][name]) == pytest.approx(value, abs=1e-6), (step, name)
    assert (
        "model.init_args.lr" in (versions[0] / "hparams.yaml").read_text()
        or "model" in (versions[0] / "hparams.yaml").read_text()
    )


def test_mlflow_on_a_local_store_gets_every_rounds_results(tiny_data, tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # a local file store, as the issue asks
    from lightning.pytorch.loggers import MLFlowLogger
    from mlflow.tracking import MlflowClient

    uri = f"file:{tmp_path / 'mlruns'}"
    logger = MLFlowLogger(experiment_name="lth", tracking_uri=uri)
    rows = _run(tiny_data, tmp_path, logger)
    client = MlflowClient(tracking_uri=uri)
    (run,) = client.search_runs([client.get_experiment_by_name("lth").experiment_id])
    assert run.info.status == "FINISHED"
    for step, expected in _expected(rows).items():
        for name, value in expected.items():
            history = {m.step: m.value for m in client.get_metric_history(run.info.run_id, name)}
            assert history[step] == pytest.approx(value, abs=1e-6), (step, name)


def _wandb_records(data: bytes) -> list[bytes]:
    """The records of an offline run's ``.wandb`` file: a 7-byte header (``:W&B``, magic, version), then LevelDB's
    log format (32 KiB blocks; records of a 7-byte header, checksum, length and type, split across blocks)."""
    assert data[:4] == b":W&B", data[:7]
    records, pending, position = [], b"", 7
    while position + 7 <= len(data):
        space = 32768 - position % 32768
        if space < 7:  # a block's tail too short for a header is padding
            position += space
            continue
        _, length, kind = struct.unpack_from("<IHB", data, position)
        if position + 7 + length > len(data):  # a record still being written
            break
        chunk, position = data[position + 7 : position + 7 + length], position + 7 + length
        if kind == 1:
            records.append(chunk)
        elif kind in (2, 3):
            pending += chunk
        elif kind == 4:
            records.append(pending + chunk)
            pending = b""
    return records


def _wandb_history(stream, record_type, seconds: float = 60.0) -> list[dict]:
    """The history records of an offline run's stream, once its exit record is written (W&B's service writes the
    stream after the run finishes, later on a busy machine)."""
    for _ in range(int(seconds * 2)):
        records = []
        for data in _wandb_records(stream.read_bytes()):
            record = record_type()
            record.ParseFromString(data)
            records.append(record)
        if any(r.WhichOneof("record_type") == "exit" for r in records):
            break
        time.sleep(0.5)
    return [
        {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in r.history.item}
        for r in records
        if r.WhichOneof("record_type") == "history"
    ]


def test_wandb_offline_gets_every_rounds_results(tiny_data, tmp_path, monkeypatch):
    wandb = pytest.importorskip("wandb")
    from lightning.pytorch.loggers import WandbLogger
    from wandb.proto import wandb_internal_pb2

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    rows = _run(tiny_data, tmp_path, WandbLogger(project="lth", save_dir=str(tmp_path), offline=True))
    wandb.finish()  # what the end of the user's script does: the run's records are written out
    (stream,) = (tmp_path / "wandb").glob("offline-run-*/run-*.wandb")
    history = _wandb_history(stream, wandb_internal_pb2.Record)
    for step, expected in _expected(rows).items():
        (point,) = [h for h in history if h.get("trainer/global_step") == step and next(iter(expected)) in h]
        for name, value in expected.items():
            assert point[name] == pytest.approx(value, abs=1e-6), (step, name)


def test_the_callback_in_a_users_own_loop_logs_each_round_on_the_round_axis(tiny_data, tmp_path):
    """The drop-in: a user's Trainer per round with one CSVLogger; rows tell their round by `round/index`."""
    import lightning.pytorch as pl
    import torch
    from conftest import tiny_datamodule

    from lth_lightning import MLP, LotteryClassifier

    torch.manual_seed(0)
    model, callback = (
        LotteryClassifier(net=MLP((784, 24, 10)), lr=0.01),
        LotteryTicketCallback(amount=0.5, verbose=False),
    )
    logger, datamodule = CSVLogger(tmp_path, name="mine"), tiny_datamodule(tiny_data)
    accuracies = []
    for _ in range(3):
        trainer = pl.Trainer(**round_trainer(logger=logger, callbacks=[callback]), default_root_dir=tmp_path)
        trainer.fit(model, datamodule=datamodule)
        accuracies.append(trainer.test(model, datamodule=datamodule, verbose=False)[0]["test/acc"])
    logger.save()
    with open(tmp_path / "mine" / "version_0" / "metrics.csv") as fh:
        rounds = [r for r in csv.DictReader(fh) if r.get("round/index")]
    assert sorted({int(r["step"]) for r in rounds}) == [0, 1, 2]
    assert all(int(r["step"]) == int(float(r["round/index"])) for r in rounds)
    weights = {int(r["step"]): float(r["round/weights_remaining"]) for r in rounds}
    assert weights == {0: 1.0, 1: pytest.approx(0.5, abs=0.01), 2: pytest.approx(0.25, abs=0.01)}
    tested = {int(r["step"]): float(r["round/test/acc"]) for r in rounds if r.get("round/test/acc")}
    assert tested == {r: pytest.approx(a, abs=1e-6) for r, a in enumerate(accuracies)}
