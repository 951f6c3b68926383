"""The experiment layer around the callback: rounds, seeds, run folders, identity, results, dashboard.

Modules: :mod:`.paths` (every path of an experiment folder), :mod:`.identity` (what defines an
experiment and names its folder), :mod:`.results` (what a round measured, tables),
:mod:`.controls` (the registry of controls), :mod:`.trainer` (the Trainers of an experiment),
:mod:`.lock` (one process per run folder), :mod:`.clock` (a round's seconds across interruptions),
:mod:`.rounds` (``run_lottery``, ``run_seeds``), :mod:`.aggregate` (seeds and comparisons read
back from folders), :mod:`.plots` and :mod:`.dashboard` (plots and TensorBoard).

Names are imported on first use, so the commands that do not train (``lth export``,
``lth aggregate``, ``lth compare``) never import Lightning.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lth_lightning.experiment.aggregate import aggregate, aggregate_runs, compare_runs
    from lth_lightning.experiment.controls import CONTROLS, Control
    from lth_lightning.experiment.paths import ExperimentPaths, RunPaths
    from lth_lightning.experiment.results import RoundResult
    from lth_lightning.experiment.rounds import Rounds, SeedRuns, run_lottery, run_seeds

_WHERE = {
    "aggregate": "aggregate",
    "aggregate_runs": "aggregate",
    "compare_runs": "aggregate",
    "CONTROLS": "controls",
    "Control": "controls",
    "ExperimentPaths": "paths",
    "RunPaths": "paths",
    "RoundResult": "results",
    "Rounds": "rounds",
    "SeedRuns": "rounds",
    "run_lottery": "rounds",
    "run_seeds": "rounds",
}
__all__ = [
    "CONTROLS",
    "Control",
    "ExperimentPaths",
    "RoundResult",
    "Rounds",
    "RunPaths",
    "SeedRuns",
    "aggregate",
    "aggregate_runs",
    "compare_runs",
    "run_lottery",
    "run_seeds",
]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
