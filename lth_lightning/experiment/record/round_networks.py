"""``load_round``: a finished round's networks and results, read back from its run folder, for analysis.

Lightning-free: plain tensors and dicts, from the files :mod:`.paths` lays out, whether the round trained
sequentially or stacked. The ticket's masks, trained weights and early-stopping weights are always kept; its
initial weights are the rewind point of the round's callback state (``lottery.pt``). A control's masks and row
are always kept, its networks with ``keep_weights="all"``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from torch import Tensor

from lth_lightning.experiment.record.paths import ExperimentPaths, RunPaths, WeightsKind
from lth_lightning.io import load_tensors

__all__ = ["RoundNetworks", "load_round"]

TICKET = "ticket"


@dataclass(frozen=True)
class RoundNetworks:
    """One member of a finished round: its masks, its networks (state dicts, on the CPU) and its results.

    Attributes:
        round: The round (0 is the dense network).
        member: ``ticket`` or a control's name (``random_reinit``).
        masks: The boolean masks it trained with, by parameter name.
        initial: The weights it started from: the ticket's rewind point (its initialization unless
            ``rewind_step``; after the dense round under ``retrain="lr_rewind"``/``"finetune"``, the previous
            round's trained weights with the pruned ones zeroed), or a control's own start. None where not kept.
        trained: Its weights at the end of the round's training; None where not kept.
        at_early_stop: Its weights at its early-stopping iteration (the trained ones where that was the last
            step); None without validation, or where not kept.
        metrics: Its row: for the ticket the round's ``metrics.json`` (``RoundResult.as_dict()``), for a control
            its columns.
        config: The run's ``config.yaml``.
    """

    round: int
    member: str
    masks: dict[str, Tensor]
    initial: dict[str, Tensor] | None
    trained: dict[str, Tensor] | None
    at_early_stop: dict[str, Tensor] | None
    metrics: dict[str, Any]
    config: dict[str, Any]


def _run(folder: str | Path) -> RunPaths:
    """The run in ``folder``: a run folder (``seed_<s>``), or an experiment folder holding one run.

    Raises:
        FileNotFoundError: If ``folder`` holds no run.
        ValueError: If it is an experiment of several seeds (the message names their folders).
    """
    run = RunPaths(Path(folder))
    if run.results.with_suffix(".json").is_file():
        return run
    runs = ExperimentPaths(Path(folder)).runs()
    if not runs:
        raise FileNotFoundError(f"{folder} holds no run: neither results.json nor seed_<s>/ folders.")
    if len(runs) > 1:
        raise ValueError(f"{folder} holds {len(runs)} runs: pass one of {', '.join(str(r.root) for r in runs)}.")
    return runs[0]


def _optional(path: Path) -> dict[str, Tensor] | None:
    return load_tensors(path) if path.is_file() else None


def _early_stop(row: dict[str, Any], at_best: Path, trained: dict[str, Tensor] | None) -> dict[str, Tensor] | None:
    """The weights at the early stop: kept where it came before the last step, the trained ones where it was it."""
    if at_best.is_file():
        return load_tensors(at_best)
    step, last = row.get("best_val_step"), row.get("steps")
    return trained if step is not None and step == last else None


def _ticket_start(run: RunPaths, r: int, config: dict[str, Any], masks: dict[str, Tensor]) -> dict[str, Tensor]:
    """The ticket's start in round ``r``: the rewind point, or (retraining without rewinding) the last round's
    trained weights with this round's pruned ones zeroed."""
    retrain = (config.get("lottery") or {}).get("retrain") or "rewind"
    if retrain == "rewind" or r == 0:
        return dict(load_tensors(run.lottery_state(r))["snapshot"])
    previous = load_tensors(run.weights(r - 1))
    return {k: v * masks[k].to(v.dtype) if k in masks else v for k, v in previous.items()}


def load_round(folder: str | Path, round: int, member: str = TICKET) -> RoundNetworks:
    """Round ``round``'s ``member`` (``ticket`` or a control's name) of the finished run in ``folder``.

    Args:
        folder: A run folder (``<experiment>/seed_<s>``), or an experiment folder of one seed.
        round: A finished round.
        member: ``ticket``, or a control the experiment trained that round.

    Raises:
        FileNotFoundError: If the folder holds no run, or the round is not finished (the message says which
            rounds are).
        ValueError: If ``member`` was not trained in that round (the message lists those that were), or the
            folder holds several seeds.
    """
    run = _run(folder)
    if round not in run.finished_rounds():
        raise FileNotFoundError(
            f"Round {round} of {run.root} is not finished; finished rounds: {run.finished_rounds() or 'none'}."
        )
    config = yaml.safe_load(run.config.read_text()) or {}
    if member == TICKET:
        row = json.loads(run.metrics(round).read_text())
        masks = {k: v.bool() for k, v in load_tensors(run.masks(round)).items()}
        trained = load_tensors(run.weights(round))
        at_best = _early_stop(row, run.weights_at_best(round), trained)
        return RoundNetworks(
            round, member, masks, _ticket_start(run, round, config, masks), trained, at_best, row, config
        )
    columns_file = run.control(round, member)
    if not columns_file.is_file():
        trained_controls = sorted(p.name[8:-5] for p in run.round_dir(round).glob("control_*.json"))
        raise ValueError(
            f"`member` {member!r} was not trained in round {round} of {run.root}; "
            f"allowed: {', '.join([TICKET, *trained_controls])}."
        )
    columns = json.loads(columns_file.read_text())
    masks = {k: v.bool() for k, v in load_tensors(run.control_masks(round, member)).items()}
    kept: dict[WeightsKind, dict[str, Tensor] | None] = {
        kind: _optional(run.control_weights(round, member, kind)) for kind in ("init", "trained", "at_best")
    }
    at_best = kept["at_best"]
    if at_best is None and kept["trained"] is not None and columns.get("best_val_step") == _steps(run, round):
        at_best = kept["trained"]
    return RoundNetworks(round, member, masks, kept["init"], kept["trained"], at_best, columns, config)


def _steps(run: RunPaths, r: int) -> int | None:
    """The optimizer steps round ``r`` trained (a control trains as many)."""
    steps = json.loads(run.metrics(r).read_text()).get("steps")
    return None if steps is None else int(steps)
