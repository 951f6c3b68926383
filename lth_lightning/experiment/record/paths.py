"""Every path of an experiment folder, in one place: the code that writes them and the tests that read them use this.

Layout::

    <out_dir>/<experiment>/                 one experiment: `--lottery.name`, or "<net>-<data>-<pruning>-<hash>"
      experiment.yaml                       what defines it (its identity), written when its first round starts
      results_seeds.csv, .json              mean, std, min and max per round over the seeds (several seeds)
      accuracy_vs_weights_remaining.png     ... and the other plots, with min-max bands (several seeds)
      dashboard/<series>/                   the across-seeds summary: ticket, random_reinit, random_prune
      stacked/round_<NN>-<members>/last.ckpt  a stacked round's checkpoint (all its members in one network),
                                            removed once the round is recorded unless `keep_checkpoints`
      seed_<s>/                             one run of the experiment, with seed s
        run.yaml                            what defines the run beyond the experiment: its initial weights' digest
        scoring_batch.pt                    the batch pruning at initialization scored (SNIP, GraSP; SynFlow its shape)
        .lock, .lock.owner                  held by the one process running in the folder (pid, host, since when)
        config.yaml                         the full config of the last invocation
        results.csv, results.json           one row per finished round
        accuracy_vs_weights_remaining.png, early_stop_vs_weights_remaining.png, first_layer_pixels.png
        round_<NN>/
          metrics.json                      the round's row (written last: the round is finished)
          masks.pt, weights.pt, lottery.pt  the masks it trained with, the trained network, the callback state
                                            (its snapshot: the weights the round rewound to)
          weights_at_best.pt                the network at its early-stopping iteration, where that came earlier
          control_<name>.json, control_<name>_masks.pt  a control's row and masks
          control_<name>_init.pt, _weights.pt, _weights_at_best.pt  its networks (`keep_weights="all"`)
          checkpoints/last.ckpt             where an interrupted round resumes (removed once the round is
                                            recorded, unless `keep_checkpoints`)
        tensorboard/training/               every training's curves, under round_<NN>[_<control>]/ (one run)
        dashboard/<series>/                 lottery/* across rounds, one run per series: ticket (with the
                                            plots, dashboard layout, hparams), random_reinit, random_prune
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

__all__ = ["ExperimentPaths", "RunPaths", "WeightsKind", "dashboard_logdir", "round_label"]

WeightsKind = Literal["init", "trained", "at_best"]

PLOTS = ("accuracy_vs_weights_remaining", "early_stop_vs_weights_remaining", "first_layer_pixels")
_SEED_DIR = re.compile(r"seed_(-?\d+)")


def round_label(round: int, control: str | None = None) -> str:
    """``round_03``, or ``round_03_random_reinit`` for a control: folder and TensorBoard run names."""
    return f"round_{round:02d}" + (f"_{control}" if control else "")


@dataclass(frozen=True)
class _Reports:
    """Files every folder with results has: the tables, the plots and the TensorBoard summary."""

    root: Path

    def plot(self, name: str) -> Path:
        """``<root>/<name>.png`` (one of :data:`PLOTS`)."""
        return self.root / f"{name}.png"

    @property
    def tensorboard(self) -> Path:
        """The TensorBoard logdir of this folder."""
        return self.root / "tensorboard"

    @property
    def training_run(self) -> Path:
        """The TensorBoard run of every training's curves, each under its label (``round_03/val/loss``,
        ``round_03_random_reinit/val/loss``): one run a seed, so that plain TensorBoard, which switches every run
        off past 40, shows an experiment folder whole."""
        return self.tensorboard / "training"

    @property
    def summary(self) -> Path:
        """The TensorBoard summary, the folder's story: one run per series (``ticket``, each control), ``lottery/*``
        across rounds. ``dashboard/`` sorts before ``seed_<s>/`` and ``tensorboard/``, so that plain TensorBoard on
        the folder shows its pages first (:mod:`~lth_lightning.experiment.dashboard.run_order`)."""
        return self.root / "dashboard"

    @property
    def earlier_summary(self) -> Path:
        """Where folders recorded before the summary moved to ``dashboard/`` keep it (read, never written)."""
        return self.tensorboard / "summary"

    def series(self, name: str) -> Path:
        """The summary's run of one series: ``ticket`` (with the plots, layout and hparams) or a control."""
        return self.summary / name


@dataclass(frozen=True)
class RunPaths(_Reports):
    """The folder of one run: one experiment with one seed."""

    @property
    def config(self) -> Path:
        """The full config of the last invocation."""
        return self.root / "config.yaml"

    @property
    def identity(self) -> Path:
        """What defines the run beyond its experiment: the digest of the initial weights its seed produced."""
        return self.root / "run.yaml"

    @property
    def scoring_batch(self) -> Path:
        """The batch the run's pruning-at-initialization controls scored, exactly as the scores saw it."""
        return self.root / "scoring_batch.pt"

    @property
    def lock(self) -> Path:
        """The lock the process running in the folder holds (:mod:`.lock`)."""
        return self.root / ".lock"

    @property
    def lock_owner(self) -> Path:
        """Who holds the lock: pid, host and since when (JSON)."""
        return self.root / ".lock.owner"

    @property
    def results(self) -> Path:
        """``results`` (``.csv`` and ``.json``), one row per finished round."""
        return self.root / "results"

    def round_dir(self, round: int) -> Path:
        """``round_<NN>/``."""
        return self.root / round_label(round)

    def metrics(self, round: int) -> Path:
        """The round's row; its presence marks the round finished."""
        return self.round_dir(round) / "metrics.json"

    def masks(self, round: int) -> Path:
        """The masks the round trained with."""
        return self.round_dir(round) / "masks.pt"

    def weights(self, round: int) -> Path:
        """The network the round trained."""
        return self.round_dir(round) / "weights.pt"

    def lottery_state(self, round: int) -> Path:
        """The callback's state after the round."""
        return self.round_dir(round) / "lottery.pt"

    def control(self, round: int, control: str) -> Path:
        """A control's columns for the round; its presence marks the control finished."""
        return self.round_dir(round) / f"control_{control}.json"

    def control_masks(self, round: int, control: str) -> Path:
        """The masks a control trained with."""
        return self.round_dir(round) / f"control_{control}_masks.pt"

    def weights_at_best(self, round: int) -> Path:
        """The ticket's weights at its early-stopping iteration (written where it came before the end)."""
        return self.round_dir(round) / "weights_at_best.pt"

    def control_weights(self, round: int, control: str, kind: WeightsKind) -> Path:
        """A control's initial (``init``), trained or early-stopping (``at_best``) weights (``keep_weights="all"``)."""
        suffix = {"init": "init", "trained": "weights", "at_best": "weights_at_best"}[kind]
        return self.round_dir(round) / f"control_{control}_{suffix}.pt"

    def checkpoints(self, round: int) -> Path:
        """Where the round's ``last.ckpt`` is replaced after every epoch."""
        return self.round_dir(round) / "checkpoints"

    def last_checkpoint(self, round: int) -> Path:
        """The checkpoint an interrupted round resumes from."""
        return self.checkpoints(round) / "last.ckpt"

    def finished_rounds(self) -> list[int]:
        """Rounds whose ``metrics.json`` exists, in order, stopping at the first missing one."""
        rounds: list[int] = []
        while self.metrics(len(rounds)).is_file():
            rounds.append(len(rounds))
        return rounds

    @property
    def seed(self) -> int | None:
        """The seed in the folder's name (``seed_<s>``), or None."""
        match = _SEED_DIR.fullmatch(self.root.name)
        return int(match.group(1)) if match else None


@dataclass(frozen=True)
class ExperimentPaths(_Reports):
    """The folder of one experiment: its identity, one run per seed, and the across-seeds results."""

    @property
    def identity(self) -> Path:
        """What defines the experiment."""
        return self.root / "experiment.yaml"

    @property
    def results_seeds(self) -> Path:
        """``results_seeds`` (``.csv`` and ``.json``): mean, std, min and max per round over the seeds."""
        return self.root / "results_seeds"

    def stacked_checkpoints(self, round: int, members: str) -> Path:
        """Where a stacked round (one fit for every member: the seeds' tickets and controls) keeps ``last.ckpt``.

        ``members`` names the member set (a digest), so that another set never resumes this checkpoint.
        """
        return self.root / "stacked" / f"{round_label(round)}-{members}"

    def run(self, seed: int) -> RunPaths:
        """The run with ``seed``."""
        return RunPaths(self.root / f"seed_{seed}")

    def runs(self) -> list[RunPaths]:
        """Every ``seed_<s>/`` run in the folder, by seed."""
        found = [RunPaths(p) for p in self.root.glob("seed_*") if p.is_dir() and _SEED_DIR.fullmatch(p.name)]
        return sorted(found, key=lambda run: run.seed or 0)


def dashboard_logdir(folder: Path) -> Path:
    """The TensorBoard logdir that tells a folder's story: its summary runs, without the rounds' training curves.

    An experiment folder of several seeds or a run folder has its own ``dashboard`` (``tensorboard/summary`` when
    recorded before); an
    experiment folder of one run, that run's; ``lth compare``'s ``--out``, its ``tensorboard``.

    Raises:
        FileNotFoundError: If ``folder`` has none of them.
    """
    folder = Path(folder)
    for summary in (_Reports(folder).summary, _Reports(folder).earlier_summary):
        if summary.is_dir():
            return summary
    runs = ExperimentPaths(folder).runs()
    for run in runs if len(runs) == 1 else ():
        for summary in (run.summary, run.earlier_summary):
            if summary.is_dir():
                return summary
    if (folder / "tensorboard").is_dir() and not runs:
        return folder / "tensorboard"
    several = f" It holds {len(runs)} runs and no across-seeds summary: run `lth aggregate {folder}`." if runs else ""
    raise FileNotFoundError(
        f"No TensorBoard summary in {folder}: give an experiment folder, a run folder (seed_<s>) or the --out "
        f"of lth compare.{several}"
    )
