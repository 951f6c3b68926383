"""Shipping a ticket: a plain state_dict with pruning made permanent, its masks and a JSON card."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from torch import Tensor

from lth_lightning.io import atomic_write_text, load_tensors, save_tensors
from lth_lightning.pruning import sparsity_report
from lth_lightning.results import MetricNames, RoundResult, column

__all__ = ["export_ticket", "load_ticket", "main"]


def _strip(state: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
    if prefix and any(k.startswith(prefix) for k in state):
        return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    return dict(state)


def export_ticket(run_dir: str | Path, round: int, out: str | Path, *, prefix: str = "net.") -> dict[str, Any]:
    """Export the network trained in ``round`` of a run folder as a ticket.

    Writes ``out`` (``torch.save`` of ``{"state_dict", "masks"}``: tensors only, loadable with
    ``weights_only=True`` into the plain network, e.g. ``MLP``, without this package) and
    ``out`` with the suffix ``.json``: the card, with the density per layer, the round's
    metrics, the run's config and seed.

    Args:
        run_dir: A run folder written by :func:`~lth_lightning.run_lottery` or ``lth fit``.
        round: The round whose trained network to export.
        out: Path of the ticket file.
        prefix: Prefix of the plain network's entries in the LightningModule's state (``"net."``
            for :class:`~lth_lightning.LotteryClassifier`); stripped from the exported names.
            Entries without it are dropped when any entry has it.

    Returns:
        The card.

    Raises:
        FileNotFoundError: If the round is not finished in ``run_dir`` (the message lists the
            finished rounds).
    """
    run_dir, out = Path(run_dir), Path(out)
    round_dir = run_dir / f"round_{round:02d}"
    needed = [round_dir / "metrics.json", round_dir / "masks.pt", round_dir / "weights.pt"]
    missing = [str(p) for p in needed if not p.is_file()]
    if missing:
        finished = sorted(int(p.parent.name[6:]) for p in run_dir.glob("round_*/metrics.json"))
        raise FileNotFoundError(
            f"Round {round} of {run_dir} is not finished (missing {', '.join(missing)}); finished rounds: {finished}."
        )
    masks: dict[str, Tensor] = load_tensors(needed[1])
    state: dict[str, Tensor] = load_tensors(needed[2])
    for name, mask in masks.items():  # permanent: pruned entries are exactly zero
        state[name].mul_(mask.to(state[name].dtype))  # in place: a tied tensor's other names share it
    plain_state, plain_masks = _strip(state, prefix), _strip(masks, prefix)
    save_tensors({"state_dict": plain_state, "masks": plain_masks}, out)
    report = sparsity_report(plain_masks)
    config_file = run_dir / "config.yaml"
    config = yaml.safe_load(config_file.read_text()) if config_file.is_file() else {}
    card = {
        "run_dir": str(run_dir.resolve()),
        "round": round,
        "density": report.density,
        "alive": report.alive,
        "total": report.total,
        "layers": {t.name: {"alive": t.alive, "total": t.total, "density": t.density} for t in report.tensors},
        "metrics": RoundResult(**json.loads(needed[0].read_text())).flat(),
        "seed": (config or {}).get("seed_everything"),
        "config": config,
    }
    atomic_write_text(out.with_suffix(".json"), json.dumps(card, indent=2, default=str))
    return card


def load_ticket(path: str | Path) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """The ``(state_dict, masks)`` of an exported ticket, loaded with ``weights_only=True``."""
    data = load_tensors(path)
    return data["state_dict"], data["masks"]


def main(argv: Sequence[str] | None = None) -> None:
    """``lth export RUN_DIR --round N --out ticket.pt``."""
    parser = argparse.ArgumentParser(prog="lth export", description="Export a finished round's ticket.")
    parser.add_argument("run_dir", type=Path, help="run folder (e.g. runs/fashion_mnist_mlp/lottery)")
    parser.add_argument("--round", type=int, required=True, help="round to export")
    parser.add_argument("--out", type=Path, required=True, help="ticket file to write (a .json card goes beside it)")
    parser.add_argument("--prefix", default="net.", help="prefix of the plain network's entries (default: net.)")
    args = parser.parse_args(argv)
    try:
        card = export_ticket(args.run_dir, args.round, args.out, prefix=args.prefix)
    except FileNotFoundError as err:
        parser.exit(2, f"lth export: error: {err}\n")
    test = (card["config"].get("lottery") or {}).get("test_metric") or MetricNames().test
    print(
        f"Exported round {args.round}: {100 * card['density']:.2f}% of weights ({card['alive']}/{card['total']}), "
        f"{test} {card['metrics'].get(column(test))} -> {args.out} (+ {args.out.with_suffix('.json').name})"
    )
