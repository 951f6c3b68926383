"""Keep what the report needs of an experiment, and nothing more: the copy ``results/`` holds in the repository.

Per seed: ``config.yaml`` (the settings and metric names), ``run.yaml`` (the seed's initial weights'
digest and data order), ``results.json`` (every finished round) and ``results.csv`` (the same, for a
reader); the experiment's ``experiment.yaml``. No weights, masks or checkpoints: a few KB a seed.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from lth_lightning.experiment.record.identity import describe_differences, experiment_identity
from lth_lightning.experiment.record.paths import ExperimentPaths, RunPaths
from lth_lightning.report.readout import Experiment, read_experiment

__all__ = ["check_destination", "kept_files", "save_results"]


def kept_files(run: RunPaths) -> list[Path]:
    """The files of a run the report needs."""
    return [run.config, run.identity, run.results.with_suffix(".json"), run.results.with_suffix(".csv")]


def check_destination(experiment: Experiment, destination: Path) -> None:
    """Refuse a destination that is a file or holds another experiment (an earlier copy of this one is replaced).

    Raises:
        ValueError: If it is a file, or a folder holding anything but a saved copy of this experiment.
    """
    if not destination.exists():
        return
    if not destination.is_dir():
        raise ValueError(f"Cannot save {experiment.folder} to {destination}: it is a file.")
    if any(destination.iterdir()):
        saved = read_experiment(destination)  # refuses a folder that is not a saved experiment
        differences = describe_differences(experiment_identity(saved.config), experiment_identity(experiment.config))
        if differences:
            raise ValueError(
                f"{destination} holds another experiment than {experiment.folder} "
                f"({differences.replace('folder has', 'saved copy has')}); choose another folder."
            )


def save_results(experiment: Experiment, destination: str | Path) -> Path:
    """Copy what ``lth report`` needs of an experiment to ``destination``, replacing an earlier copy of it.

    The experiment is one :func:`~.readout.read_experiment` read, so a folder that is not one, or
    has an unfinished round, was refused before anything is copied; the copy is written beside
    ``destination`` and moved into place, so that an interruption leaves the earlier copy whole.

    Returns:
        The destination folder.

    Raises:
        ValueError: If ``destination`` is a file or holds another experiment.
    """
    destination = Path(destination)
    check_destination(experiment, destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{destination.name}-", dir=destination.parent))
    try:
        identity = ExperimentPaths(experiment.folder).identity
        if identity.is_file():
            shutil.copy2(identity, ExperimentPaths(staging).identity)
        for run in experiment.runs:
            target = ExperimentPaths(staging).run(run.seed if run.seed is not None else 0)
            target.root.mkdir()
            for path in kept_files(run):
                if path.is_file():
                    shutil.copy2(path, target.root / path.name)
        if destination.exists():
            shutil.rmtree(destination)
        staging.rename(destination)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return destination
