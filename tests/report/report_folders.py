"""Hand-made experiment folders for the report's tests: what `lth fit` writes, reduced to what the report reads."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from lth_lightning.experiment.record.paths import RunPaths

CONFIG = {
    "seed_everything": 0,
    "model": {"class_path": "lth_lightning.LotteryClassifier", "init_args": {"lr": 0.01}},
    "lottery": {"amount": 0.5, "retrain": "rewind", "rounds": 2},
}


def row(round: int, density: float, test_acc: float, controls: Mapping[str, float] | None = None, **extra: Any) -> dict:
    """A round's results.json row: the ticket's accuracy (and early-stopping columns), each control's accuracy."""
    return {
        "round": round,
        "density": density,
        "metrics": {"test_acc": test_acc, "test_acc_at_best_val": extra.pop("early", test_acc)},
        "best_val_step": extra.pop("step", 10),
        "steps": 20,
        "seconds": 1.0,
        "layer_density": {},
        "controls": {n: {"test_acc": v, "test_acc_at_best_val": v} for n, v in (controls or {}).items()},
        **extra,
    }


def write_experiment(
    folder: Path, seeds: Mapping[int, Sequence[dict]], config: Mapping[str, Any] | None = None
) -> Path:
    """An experiment folder: ``seed_<s>/config.yaml`` and ``results.json`` for each seed's rows."""
    for seed, rows in seeds.items():
        run = folder / f"seed_{seed}"
        run.mkdir(parents=True, exist_ok=True)
        (run / "config.yaml").write_text(yaml.safe_dump({**(config or CONFIG), "seed_everything": seed}))
        (run / "results.json").write_text(json.dumps(list(rows)))
        for r in rows:
            RunPaths(run).round_dir(r["round"]).mkdir(exist_ok=True)
            RunPaths(run).metrics(r["round"]).write_text(json.dumps(r))
    return folder


def gap_experiment(folder: Path, gaps: Sequence[float], control: str = "random_prune") -> Path:
    """Seeds 0, 1, ... whose round-1 ticket is ``gaps[s]`` points above ``control`` (accuracy 0.80 + s / 100)."""
    seeds = {}
    for seed, gap in enumerate(gaps):
        ticket = 0.80 + seed / 100
        seeds[seed] = [row(0, 1.0, ticket), row(1, 0.5, ticket, {control: ticket - gap / 100})]
    return write_experiment(folder, seeds)


def in_memory(seeds: Mapping[int, Sequence[dict]], config: Mapping[str, Any] | None = None):
    """The report's table of an experiment whose seeds' rows are ``seeds`` (as :func:`row` makes them), read from no
    folder: for the many experiments a simulation needs."""
    from lth_lightning.experiment.record.round_result import RoundResult
    from lth_lightning.metric_names import MetricNames
    from lth_lightning.report.readout import Experiment
    from lth_lightning.report.table import build_table

    config = dict(config or CONFIG)
    rows = {seed: [RoundResult(**r) for r in rs] for seed, rs in seeds.items()}
    return build_table(Experiment("simulated", Path("simulated"), config, MetricNames.from_config(config), rows, []))
