"""``RunStore``: one run's folder, what it has recorded and what it records, once.

A store holds the folder's lock (:mod:`.lock`), refuses a folder that holds another experiment
or a run from other initial weights (:mod:`.identity`), reads finished rounds back, writes a
round once (its row last: the row marks it finished), and after a failed start removes what this
invocation created. Every write is rank zero's.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import torch
import yaml
from lightning.pytorch.utilities import rank_zero_info

from lth_lightning.compat import global_rank
from lth_lightning.experiment.record.identity import check_same, check_same_experiment, plain
from lth_lightning.experiment.record.lock import RunLock
from lth_lightning.experiment.record.paths import ExperimentPaths, WeightsKind
from lth_lightning.experiment.record.round_result import RoundResult, write_table
from lth_lightning.io import atomic_write_text, load_tensors, save_tensors
from lth_lightning.metric_names import MetricNames

__all__ = ["RunStore", "is_global_zero"]


class Clock(Protocol):
    """What the store reads of a training's clock (:class:`~lth_lightning.experiment.training.callbacks.RoundClock`):
    the epoch whose end its last checkpoint saved, or None."""

    checkpoint_epoch: int | None


def _cpu(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu() for k, v in state.items()}


def is_global_zero() -> bool:
    """Whether this process is rank zero (from the launcher's environment, before any Trainer exists)."""
    return global_rank() == 0


class RunStore:
    """The folder of one run (``<experiment>/seed_<s>``).

    Args:
        experiment: The experiment's folder.
        seed: The run's seed.
        config: The run's full config (written as ``config.yaml``).
        identity: What defines the experiment (``experiment.yaml``).
        run_identity: What defines the run beyond it: its initial weights' digest (``run.yaml``).
        names: The metrics the results read.
        keep_checkpoints: Keep a round's ``last.ckpt`` once the round is recorded.
    """

    def __init__(
        self,
        experiment: ExperimentPaths,
        seed: int,
        config: Mapping[str, Any],
        identity: Mapping[str, Any],
        run_identity: Mapping[str, Any],
        names: MetricNames,
        keep_checkpoints: bool,
    ) -> None:
        self.experiment, self.paths, self.seed = experiment, experiment.run(seed), seed
        self.config, self.identity, self.run_identity = dict(config), dict(identity), dict(run_identity)
        self.names, self.keep_checkpoints = names, keep_checkpoints
        self.is_zero = is_global_zero()
        self.lock = RunLock(self.paths.root) if self.is_zero else None  # one process per run folder
        self.recorded = self.announced = False
        self.current: int | None = None  # the round in training
        self.clock: Clock | None = None  # that training's clock
        self.checkpoint: Path | None = None  # and the checkpoint it would resume from

    # ------------------------------------------------------------------ before the rounds
    def hold(self) -> None:
        """Take the folder's lock (rank zero; created with the folder).

        Raises:
            RunFolderInUse: If another process holds it.
        """
        if self.lock is not None:
            self.lock.acquire()

    def let_go(self) -> None:
        """Give the folder's lock back."""
        if self.lock is not None:
            self.lock.release()

    def check(self) -> None:
        """Refuse a folder that holds another experiment, or a run folder whose run started from other weights.

        Raises:
            ValueError: Naming the keys that differ.
        """
        check_same_experiment(self.experiment.identity, self.identity)
        check_same(
            self.paths.identity,
            self.run_identity,
            "run",
            "a run that started from other initial weights",
            f"Build the module after seeding as that run did (seed_everything({self.seed}), then the constructor, "
            "as lth fit and run_seeds do), or give this run another seed (its own seed_<s> folder).",
        )

    def finished(self) -> tuple[list[RoundResult], dict[str, Any] | None]:
        """The finished rounds' rows, and the callback's state after the last of them (None if none)."""
        rows = [RoundResult(**json.loads(self.paths.metrics(r).read_text())) for r in self.paths.finished_rounds()]
        if not rows:
            return rows, None
        self.announce()
        finished = "round 0 is" if rows[-1].round == 0 else f"rounds 0-{rows[-1].round} are"
        rank_zero_info(f"Resuming {self.paths.root}: {finished} finished and will not be recomputed.")
        return rows, load_tensors(self.paths.lottery_state(rows[-1].round))

    def announce(self) -> None:
        """Say where the run is, once it has a folder."""
        if not self.announced:
            self.announced = True
            rank_zero_info(f"Run folder: {self.paths.root.resolve()}")

    def record_start(self, is_zero: bool) -> None:
        """The first round of this invocation starts training: record the experiment, the run and its config."""
        if self.recorded:
            return
        self.recorded = True
        if is_zero:
            if not self.experiment.identity.is_file():
                atomic_write_text(self.experiment.identity, yaml.safe_dump(self.identity, sort_keys=True))
            if not self.paths.identity.is_file():
                atomic_write_text(self.paths.identity, yaml.safe_dump(self.run_identity, sort_keys=True))
            atomic_write_text(self.paths.config, yaml.safe_dump(plain(self.config), sort_keys=False))
        self.announce()

    # ------------------------------------------------------------------ a round
    def training(self, r: int, clock: Clock, checkpoint: Path) -> None:
        """Round ``r`` trains, timed by ``clock``, resuming from ``checkpoint`` if interrupted."""
        self.current, self.clock, self.checkpoint = r, clock, checkpoint

    def save_ticket(
        self,
        r: int,
        masks: Mapping[str, torch.Tensor],
        weights: Mapping[str, torch.Tensor],
        at_best: Mapping[str, torch.Tensor] | None,
    ) -> None:
        """The masks round ``r`` trained with, the network it trained and, where its early stop came before the end,
        the network there."""
        if self.is_zero:
            save_tensors(dict(masks), self.paths.masks(r))
            save_tensors(_cpu(weights), self.paths.weights(r))
            if at_best is not None:
                save_tensors(_cpu(at_best), self.paths.weights_at_best(r))

    def save_control_weights(
        self, r: int, control: str, weights: Mapping[WeightsKind, Mapping[str, torch.Tensor]]
    ) -> None:
        """A control's networks of round ``r`` (``keep_weights="all"``), before its columns mark it finished."""
        if self.is_zero:
            for kind, state in weights.items():
                save_tensors(_cpu(state), self.paths.control_weights(r, control, kind))

    def save_scoring_batch(self, batch: Any, description: str) -> None:
        """Record the batch pruning at initialization scores (once per run; it is drawn from the seed alike on
        every invocation), and say what the scores read."""
        if self.is_zero and not self.paths.scoring_batch.is_file():
            save_tensors(batch, self.paths.scoring_batch)
            rank_zero_info(f"{description} Saved in {self.paths.scoring_batch}.")

    def trained_weights(self, r: int) -> dict[str, torch.Tensor]:
        """The network round ``r`` trained (as :meth:`save_ticket` saved it)."""
        return dict(load_tensors(self.paths.weights(r)))

    def finished_control(self, r: int, control: str) -> dict[str, float | None] | None:
        """A control's columns if it already finished in round ``r``."""
        done = self.paths.control(r, control)
        return dict(json.loads(done.read_text())) if done.is_file() else None

    def save_control(self, r: int, control: str, columns: Mapping[str, Any], masks: Mapping[str, torch.Tensor]) -> None:
        """A control's masks, then its columns (which mark it finished)."""
        if self.is_zero:
            save_tensors(dict(masks), self.paths.control_masks(r, control))
            atomic_write_text(self.paths.control(r, control), json.dumps(dict(columns), indent=2))

    def finish_round(self, row: RoundResult, lottery_state: Mapping[str, Any]) -> None:
        """The callback's state after the round, then its row (which marks the round finished).

        Then the round's checkpoint is removed, unless ``keep_checkpoints``: nothing reads it once the round
        is recorded.
        """
        if self.is_zero:
            save_tensors(dict(lottery_state), self.paths.lottery_state(row.round))
            atomic_write_text(self.paths.metrics(row.round), json.dumps(row.as_dict(), indent=2))  # written last
            if not self.keep_checkpoints:
                shutil.rmtree(self.paths.checkpoints(row.round), ignore_errors=True)

    def save_results(self, rows: Sequence[RoundResult]) -> None:
        """``results.csv``/``.json``: the run's rows so far (its dashboard is drawn from them by the round loop)."""
        if self.is_zero:
            write_table(self.paths.results, [x.flat() for x in rows], [x.as_dict() for x in rows])

    # ------------------------------------------------------------------ after a failure
    def remove_failed_start(self, created: Sequence[Path]) -> None:
        """After a failure before anything was recorded, remove the folders this invocation created."""
        if self.recorded or not self.is_zero:
            return
        for folder in reversed(created):
            shutil.rmtree(folder, ignore_errors=True)

    def say_interrupted(self, error: BaseException) -> None:
        """After Ctrl-C (Lightning turns it into SystemExit) in a recorded run: what rerunning will resume."""
        if not isinstance(error, (KeyboardInterrupt, SystemExit)) or not self.recorded or self.current is None:
            return
        r, clock, checkpoint = self.current, self.clock, self.checkpoint
        if clock is not None and clock.checkpoint_epoch is not None and checkpoint is not None and checkpoint.is_file():
            where = f"from its checkpoint after epoch {clock.checkpoint_epoch + 1} ({checkpoint})"  # counted from 1
        else:
            where = "from its start (no epoch of it had finished)"
        kept = {0: "", 1: "round 0 is kept; "}.get(r, f"rounds 0-{r - 1} are kept; ")
        rank_zero_info(
            f"Interrupted in round {r} of seed {self.seed}: {kept}rerunning the same command resumes round {r} {where}."
        )
