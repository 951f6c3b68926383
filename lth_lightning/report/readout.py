"""An experiment read back from its folder for the report: its config and every seed's finished rounds.

Lightning-free. A folder is an experiment (``seed_<s>/`` runs, as ``lth fit`` writes them or as
``lth report --save`` keeps them) or a single run; anything else, or a round that has started and
not finished, is refused before anything is printed or written.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lth_lightning.experiment.record.aggregate import check_one_experiment, load_rows
from lth_lightning.experiment.record.identity import load_config
from lth_lightning.experiment.record.paths import ExperimentPaths, RunPaths
from lth_lightning.experiment.record.round_result import RoundResult
from lth_lightning.metric_names import MetricNames

__all__ = ["Experiment", "read_experiment", "read_runs"]

_ROUND_DIR = re.compile(r"round_(\d+)")


@dataclass(frozen=True)
class Experiment:
    """One experiment's finished rounds, seed by seed.

    Attributes:
        name: The experiment folder's name (its label in the report).
        folder: Where it was read from.
        config: The first seed's config (``config.yaml``): the experiment's settings.
        names: The metric names its results use.
        seeds: Each seed's rounds, by seed; every seed has the same rounds.
        runs: The run folders they were read from, in seed order.
    """

    name: str
    folder: Path
    config: Mapping[str, Any]
    names: MetricNames
    seeds: Mapping[int, list[RoundResult]]
    runs: Sequence[RunPaths]

    @property
    def rounds(self) -> list[int]:
        """The rounds every seed finished, in order."""
        first = next(iter(self.seeds.values()))
        return [row.round for row in first]

    def setting(self, key: str) -> Any:
        """A setting of the experiment by its dotted config key (``lottery.retrain``), or None if not set."""
        value: Any = self.config
        for part in key.split("."):
            if not isinstance(value, Mapping) or part not in value:
                return None
            value = value[part]
        return value


def _runs(folder: Path) -> list[RunPaths]:
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} does not exist or is not a folder; give an experiment folder.")
    run = RunPaths(folder)
    if run.results.with_suffix(".json").is_file():
        return [run]
    runs = [
        r for r in ExperimentPaths(folder).runs() if r.results.with_suffix(".json").is_file() or r.round_dir(0).is_dir()
    ]
    if not runs:
        raise ValueError(
            f"{folder} is not an experiment folder: it holds no seed_<s>/ run with a results.json and is not a run "
            "itself (give the folder `lth fit` printed as `Run folder:`, or its parent)."
        )
    return runs


def _unfinished(run: RunPaths) -> int | None:
    """The first round that started (its folder exists) and has no ``metrics.json``, if any."""
    started = sorted(int(m.group(1)) for p in run.root.glob("round_*") if (m := _ROUND_DIR.fullmatch(p.name)))
    return next((r for r in started if not run.metrics(r).is_file()), None)


def _check_finished(folder: Path, seeds: Mapping[int, list[RoundResult]], runs: list[RunPaths]) -> None:
    for run in runs:
        round_ = _unfinished(run)
        if round_ is not None:
            raise ValueError(
                f"Round {round_} of {run.root} is unfinished (round_{round_:02d}/ has no metrics.json): let the run "
                "finish it, or report a copy made before it started."
            )
    counts = {seed: [row.round for row in rows] for seed, rows in seeds.items()}
    longest = max(counts.values(), key=len)
    for seed, rounds in counts.items():
        if rounds != longest[: len(rounds)] or not rounds:
            raise ValueError(f"Seed {seed} of {folder} has rounds {rounds}, another {longest}: not one experiment.")
        if len(rounds) < len(longest):
            raise ValueError(
                f"Round {len(rounds)} of seed {seed} in {folder} is unfinished (the seed has rounds "
                f"0-{len(rounds) - 1}, another seed 0-{len(longest) - 1}); let it finish first."
            )


def read_experiment(folder: str | Path) -> Experiment:
    """Read an experiment (or a single run) for the report.

    Raises:
        FileNotFoundError: If the folder does not exist.
        ValueError: If it is not an experiment, its runs are not the seeds of one experiment, or a
            round is unfinished.
    """
    return read_runs(_runs(Path(folder)), folder)


def read_runs(runs: Sequence[RunPaths], folder: str | Path) -> Experiment:
    """Read the runs of one experiment's seeds (wherever they are, as ``lth aggregate`` takes them), named after
    ``folder``.

    Raises:
        ValueError: If the runs are not the seeds of one experiment, or a round is unfinished.
    """
    folder, runs = Path(folder), list(runs)
    for run in runs:
        if not run.results.with_suffix(".json").is_file():
            raise ValueError(f"Round 0 of {run.root} is unfinished (no results.json yet); let the run finish it.")
    configs = [load_config(run) for run in runs]
    check_one_experiment(runs, configs)
    seeds = {run.seed if run.seed is not None else 0: load_rows(run) for run in runs}
    _check_finished(folder, seeds, runs)
    name = folder.resolve().name
    return Experiment(name, folder, configs[0], MetricNames.from_config(configs[0]), seeds, runs)
