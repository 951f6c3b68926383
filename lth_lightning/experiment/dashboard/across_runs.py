"""Several runs read back and presented: an experiment's seeds aggregated and drawn, experiments compared.

What ``lth aggregate`` and ``lth compare`` write for runs trained anywhere (several jobs of a SLURM array,
several machines writing to one shared filesystem), and what ``run_seeds`` writes at its end: the
record reads the runs (:mod:`lth_lightning.experiment.record.aggregate`), this draws them. Lightning-free.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lth_lightning.experiment.dashboard.tensorboard import run_name, write_comparison, write_seeds_report
from lth_lightning.experiment.record.aggregate import find_runs, read_seeds
from lth_lightning.experiment.record.identity import hparams
from lth_lightning.experiment.record.paths import ExperimentPaths, RunPaths
from lth_lightning.experiment.record.round_result import write_table
from lth_lightning.metric_names import MetricNames

__all__ = ["aggregate_runs", "compare_runs"]


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
    seeds = read_seeds(runs)
    rows, config = seeds.rows, seeds.configs[0]
    if write and rows:
        experiment = ExperimentPaths(Path(out))
        write_table(experiment.results_seeds, rows)
        if report:
            write_seeds_report(experiment, rows, list(runs), hparams(config), MetricNames.from_config(config))
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
        seeds = read_seeds(find_runs([folder]))
        experiments[name] = seeds.rows
        settings[name] = hparams(seeds.configs[0])
        metrics.add(MetricNames.from_config(seeds.configs[0]))
    tests = sorted({m.test for m in metrics})
    if len(tests) > 1:
        raise ValueError(f"The experiments report different test metrics ({', '.join(tests)}); compare like with like.")
    write_comparison(Path(out), experiments, settings, metrics.pop())
    return experiments
