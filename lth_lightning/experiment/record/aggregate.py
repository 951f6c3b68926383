"""Runs read back from their folders: found, checked to be the seeds of one experiment, aggregated round by round.

Lightning-free and drawing nothing: what presents the aggregate (plots, TensorBoard) reads it from here
(:mod:`lth_lightning.experiment.dashboard.across_runs`).
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lth_lightning.experiment.record.identity import describe_differences, experiment_identity, load_config
from lth_lightning.experiment.record.paths import ExperimentPaths, RunPaths
from lth_lightning.experiment.record.round_result import RoundResult

__all__ = ["SeedRows", "aggregate", "check_one_experiment", "find_runs", "load_rows", "read_seeds"]


def _number(value: Any) -> float | None:
    if value is None or value == "" or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def aggregate(runs: Sequence[Sequence[Mapping[str, Any]]]) -> list[dict[str, Any]]:
    """Mean, sample standard deviation, min and max of every numeric column, round by round, over seeds.

    Args:
        runs: One list of flat rows (``RoundResult.flat()``) per seed. Rounds are matched by
            position; only rounds every seed finished are aggregated.

    Returns:
        One row per round with ``round``, ``seeds`` (how many values were averaged) and, for
        each numeric column ``k``, ``k_mean``, ``k_std`` (0.0 with a single value), ``k_min`` and
        ``k_max``. Missing values (a control not run at round 0, say) are left out of their column.

    Raises:
        ValueError: If ``runs`` is empty or the seeds disagree on a round's index.
    """
    if not runs:
        raise ValueError("`runs` must hold the rows of at least one seed.")
    out: list[dict[str, Any]] = []
    for index in range(min(len(run) for run in runs)):
        rows = [run[index] for run in runs]
        rounds = {int(row["round"]) for row in rows}
        if len(rounds) != 1:
            raise ValueError(f"Seeds disagree on the round at position {index}: {sorted(rounds)}.")
        merged: dict[str, Any] = {"round": rounds.pop(), "seeds": len(rows)}
        for key in (k for k in rows[0] if k != "round"):
            values = [v for v in (_number(row.get(key)) for row in rows) if v is not None]
            if values:
                merged[f"{key}_mean"] = statistics.fmean(values)
                merged[f"{key}_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
                merged[f"{key}_min"], merged[f"{key}_max"] = min(values), max(values)
        out.append(merged)
    return out


def load_rows(run: RunPaths) -> list[RoundResult]:
    """A run's finished rounds, from its ``results.json``.

    Raises:
        FileNotFoundError: If the folder holds no finished round.
    """
    path = run.results.with_suffix(".json")
    if not path.is_file():
        raise FileNotFoundError(f"{run.root} holds no finished run: {path} does not exist.")
    return [RoundResult(**row) for row in json.loads(path.read_text())]


def find_runs(folders: Sequence[str | Path]) -> list[RunPaths]:
    """The runs in ``folders``: each one a run (``seed_<s>/``) or an experiment holding runs.

    Raises:
        FileNotFoundError: If a folder does not exist or holds no run.
    """
    runs: list[RunPaths] = []
    for folder in map(Path, folders):
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder} does not exist or is not a folder.")
        run = RunPaths(folder)
        found = [run] if run.results.with_suffix(".json").is_file() else ExperimentPaths(folder).runs()
        if not found:
            raise FileNotFoundError(f"{folder} holds no run: neither results.json nor seed_<s>/ folders.")
        runs += found
    return runs


def check_one_experiment(runs: Sequence[RunPaths], configs: Sequence[Mapping[str, Any]]) -> None:
    """Refuse runs that are not the seeds of one experiment, each seed once.

    Raises:
        ValueError: If two runs' identities differ or a seed repeats.
    """
    first = experiment_identity(configs[0])
    for run, config in zip(runs[1:], configs[1:], strict=True):
        differences = describe_differences(first, experiment_identity(config))
        if differences:
            raise ValueError(
                f"{run.root} is another experiment than {runs[0].root}: "
                f"{differences.replace('folder has', 'first has')}. "
                "Only the seeds of one experiment are aggregated; use `lth compare` to compare experiments."
            )
    seeds = [run.seed for run in runs]
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"The runs repeat a seed: {seeds}; each seed may be aggregated once.")


@dataclass(frozen=True)
class SeedRows:
    """The seeds of one experiment read back.

    Attributes:
        runs: Their folders, one per seed.
        configs: Each run's config, in the same order.
        rows: Per round, the mean, std, min and max of every column over the seeds (:func:`aggregate`).
    """

    runs: list[RunPaths]
    configs: list[dict[str, Any]]
    rows: list[dict[str, Any]]


def read_seeds(runs: Sequence[RunPaths]) -> SeedRows:
    """The runs' configs and their rows aggregated, once checked to be the seeds of one experiment.

    Raises:
        ValueError: If the runs are not the seeds of one experiment, or ``runs`` is empty.
    """
    if not runs:
        raise ValueError("No runs to aggregate.")
    configs = [load_config(run) for run in runs]
    check_one_experiment(runs, configs)
    rows = aggregate([[r.flat() for r in load_rows(run)] for run in runs])
    return SeedRows(list(runs), configs, rows)
