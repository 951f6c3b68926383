"""Runs read back from their folders: the seeds of an experiment aggregated, several experiments compared.

Lightning-free: ``lth aggregate`` and ``lth compare`` read finished runs wherever they were
trained (several jobs of a SLURM array, several machines writing to one shared filesystem) and
write what an in-process multi-seed run writes.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from lth_lightning.experiment.dashboard import run_name, write_comparison, write_seeds_report
from lth_lightning.experiment.identity import describe_differences, experiment_identity, hparams, load_config
from lth_lightning.experiment.paths import ExperimentPaths, RunPaths
from lth_lightning.experiment.results import RoundResult, write_table
from lth_lightning.metric_names import MetricNames

__all__ = ["aggregate", "aggregate_runs", "check_one_experiment", "compare_runs", "find_runs", "load_rows"]


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


def aggregate_runs(
    runs: Sequence[RunPaths], out: str | Path, *, report: bool = True, write: bool = True
) -> list[dict[str, Any]]:
    """Aggregate the seeds of one experiment into ``<out>/results_seeds.csv``/``.json``, plots and summary.

    Args:
        runs: Runs of one experiment, one per seed.
        out: The folder to write to (the experiment's folder, for ``lth fit --lottery.seeds``).
        report: Write the plots (with min-max bands) and the TensorBoard summary.
        write: Write anything at all (False on processes other than rank zero).

    Returns:
        The aggregated rows (see :func:`aggregate`).

    Raises:
        ValueError: If the runs are not the seeds of one experiment, or ``runs`` is empty.
    """
    if not runs:
        raise ValueError("No runs to aggregate.")
    configs = [load_config(run) for run in runs]
    check_one_experiment(runs, configs)
    results = [load_rows(run) for run in runs]
    rows = aggregate([[r.flat() for r in rows] for rows in results])
    if write and rows:
        experiment = ExperimentPaths(Path(out))
        write_table(experiment.results_seeds, rows)
        if report:
            write_seeds_report(experiment, rows, list(runs), hparams(configs[0]), MetricNames.from_config(configs[0]))
    return rows


def compare_runs(
    folders: Sequence[str | Path], out: str | Path, labels: Sequence[str] | None = None
) -> dict[str, list[dict[str, Any]]]:
    """Overlay several experiments: one accuracy-vs-weights plot and one TensorBoard logdir in ``out``.

    Each folder is an experiment (its seeds are aggregated) or a single run.

    Returns:
        Each experiment's rows (aggregated over its seeds), by label.

    Raises:
        ValueError: If the labels do not match the folders, or the experiments report different test metrics.
        FileNotFoundError: If a folder holds no run.
    """
    if labels is not None and len(labels) != len(folders):
        raise ValueError(f"Give one label per folder: {len(labels)} labels for {len(folders)} folders.")
    names = labels or [Path(f).resolve().name for f in folders]
    if len({run_name(n) for n in names}) != len(names):
        raise ValueError(
            f"Every experiment needs its own label, got {names} (as TensorBoard runs, '/' reads as '_'); pass --labels."
        )
    experiments: dict[str, list[dict[str, Any]]] = {}
    settings: dict[str, dict[str, Any]] = {}
    metrics: set[MetricNames] = set()
    for name, folder in zip(names, folders, strict=True):
        runs = find_runs([folder])
        configs = [load_config(run) for run in runs]
        check_one_experiment(runs, configs)
        experiments[name] = aggregate([[r.flat() for r in load_rows(run)] for run in runs])
        settings[name] = hparams(configs[0])
        metrics.add(MetricNames.from_config(configs[0]))
    tests = sorted({m.test for m in metrics})
    if len(tests) > 1:
        raise ValueError(f"The experiments report different test metrics ({', '.join(tests)}); compare like with like.")
    write_comparison(Path(out), experiments, settings, metrics.pop())
    return experiments
