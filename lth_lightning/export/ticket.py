"""Shipping a ticket: a plain state_dict with pruning made permanent, its masks and a JSON card."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from torch import Tensor

from lth_lightning.experiment.record.identity import load_config
from lth_lightning.experiment.record.paths import ExperimentPaths, RunPaths
from lth_lightning.experiment.record.round_result import RoundResult
from lth_lightning.io import atomic_write_text, load_tensors, save_tensors
from lth_lightning.metric_names import MetricNames
from lth_lightning.pruning.magnitude import sparsity_report

__all__ = ["choose_round", "export_ticket", "find_run", "load_ticket"]

RoundChoice = int | Literal["last", "best"]


def _strip(state: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
    if prefix and any(k.startswith(prefix) for k in state):
        return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    return dict(state)


def find_run(folder: str | Path, seed: int | None = None) -> RunPaths:
    """The run in ``folder``: the folder itself, or the run of ``seed`` in an experiment folder.

    Raises:
        FileNotFoundError: If the folder does not exist, holds no run, or has no run with ``seed``.
        ValueError: If an experiment folder holds several seeds and ``seed`` is None.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(
            f"{folder} does not exist: give a run folder (<experiment>/seed_<s>) or an experiment folder."
        )
    run = RunPaths(folder)
    if run.round_dir(0).is_dir() or run.config.is_file():
        return run
    runs = ExperimentPaths(folder).runs()
    seeds = [r.seed for r in runs]
    if not runs:
        raise FileNotFoundError(f"{folder} holds no run: neither round_00/ nor seed_<s>/ folders.")
    if seed is not None:
        if seed not in seeds:
            raise FileNotFoundError(f"{folder} has no run with seed {seed}; its seeds: {seeds}.")
        return runs[seeds.index(seed)]
    if len(runs) > 1:
        raise ValueError(f"{folder} holds the runs of seeds {seeds}: choose one with --seed (seed=...).")
    return runs[0]


def choose_round(run: RunPaths, round: RoundChoice) -> int:
    """``round`` itself, the last finished round (``"last"``), or the pruned round with the best test metric
    (``"best"``; the sparser one on a tie). The dense round 0 is no ticket: it is exported only when asked for by
    number.

    Raises:
        FileNotFoundError: If no round is finished (no pruned round, for ``"best"``).
        ValueError: For any other choice.
    """
    if isinstance(round, int) and not isinstance(round, bool):
        return round
    if round not in ("last", "best"):
        raise ValueError(f"`round` must be a round number, 'last' or 'best', got {round!r}.")
    finished = run.finished_rounds()
    if not finished:
        raise FileNotFoundError(f"{run.root} has no finished round yet.")
    if round == "last":
        return finished[-1]
    test = MetricNames.from_config(load_config(run)).test_column
    pruned = [r for r in finished if r > 0]
    if not pruned:
        raise FileNotFoundError(
            f"{run.root} has no finished pruned round yet; round 0, the dense network, is --round 0."
        )
    rows = [RoundResult(**json.loads(run.metrics(r).read_text())) for r in pruned]
    scored = [(float(value), row.round) for row in rows if (value := row.metrics.get(test)) is not None]
    if not scored:
        raise ValueError(f"{run.root}: no finished pruned round has the test metric column {test!r}.")
    return max(scored)[1]  # the best value; on a tie, the later (sparser) round


def export_ticket(
    run_dir: str | Path, round: RoundChoice, out: str | Path, *, prefix: str = "net.", seed: int | None = None
) -> dict[str, Any]:
    """Export the network trained in ``round`` of a run as a ticket.

    Writes ``out`` (``torch.save`` of ``{"state_dict", "masks"}``: tensors only, loadable with
    ``weights_only=True`` into the plain network, e.g. ``MLP``, without this package) and
    ``out`` with the suffix ``.json``: the card, with the density per layer, the round's
    metrics, the run's config and seed.

    Args:
        run_dir: A run folder (``<experiment>/seed_<s>``), or an experiment folder (with ``seed``
            when it holds several seeds).
        round: The round whose trained network to export, ``"last"`` or ``"best"``.
        out: Path of the ticket file.
        prefix: Prefix of the plain network's entries in the LightningModule's state (``"net."``
            for :class:`~lth_lightning.LotteryClassifier`); stripped from the exported names.
            Entries without it are dropped when any entry has it.
        seed: Which run of an experiment folder.

    Returns:
        The card.

    Raises:
        FileNotFoundError: If the folder holds no such run, or the round is not finished (the
            message lists the finished rounds).
    """
    run, out = find_run(run_dir, seed), Path(out)
    number = choose_round(run, round)
    needed = [run.metrics(number), run.masks(number), run.weights(number)]
    missing = [str(p) for p in needed if not p.is_file()]
    if missing:
        raise FileNotFoundError(
            f"Round {number} of {run.root} is not finished (missing {', '.join(missing)}); "
            f"finished rounds: {run.finished_rounds()}."
        )
    masks: dict[str, Tensor] = load_tensors(needed[1])
    state: dict[str, Tensor] = load_tensors(needed[2])
    for name, mask in masks.items():  # permanent: pruned entries are exactly zero
        state[name].mul_(mask.to(state[name].dtype))  # in place: a tied tensor's other names share it
    plain_state, plain_masks = _strip(state, prefix), _strip(masks, prefix)
    save_tensors({"state_dict": plain_state, "masks": plain_masks}, out)
    report = sparsity_report(plain_masks)
    config = load_config(run)
    card = {
        "run_dir": str(run.root.resolve()),
        "round": number,
        "density": report.density,
        "alive": report.alive,
        "total": report.total,
        "layers": {t.name: {"alive": t.alive, "total": t.total, "density": t.density} for t in report.tensors},
        "metrics": RoundResult(**json.loads(needed[0].read_text())).flat(),
        "seed": run.seed,
        "config": config,
    }
    atomic_write_text(out.with_suffix(".json"), json.dumps(card, indent=2, default=str))
    return card


def load_ticket(path: str | Path) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """The ``(state_dict, masks)`` of an exported ticket, loaded with ``weights_only=True``."""
    data = load_tensors(path)
    return data["state_dict"], data["masks"]
