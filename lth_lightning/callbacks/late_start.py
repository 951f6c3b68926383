"""``LateStart``: where a training continued from step ``k`` stands, as late rewinding trains it.

Frankle, Dziugaite, Roy & Carbin 2020 and OpenLTH rewind a pruned network to its weights after
``k`` steps of the dense training and train it from step ``k`` to the end: ``T - k`` steps, under a
fresh optimizer whose learning-rate schedule is stepped as ``k`` steps of training step it, on the
data order of step ``k`` (epoch ``k // n`` of the order, from its batch ``k % n``; ``n`` batches an
epoch). This module is the arithmetic of that point, free of Lightning; the callback applies it.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["LateStart", "planned_steps"]


def planned_steps(max_steps: int, max_epochs: int | None, epoch_batches: int) -> int | None:
    """The number of optimizer steps a training runs (``T``), one per batch: the fewer of ``max_steps`` and
    ``max_epochs`` epochs of ``epoch_batches`` batches, or None when neither is set (-1 or None)."""
    limits = [max_steps] if max_steps is not None and max_steps >= 0 else []
    if max_epochs is not None and max_epochs >= 0:
        limits.append(max_epochs * epoch_batches)
    return min(limits) if limits else None


@dataclass(frozen=True)
class LateStart:
    """The point ``step`` of a training of ``epoch_batches`` batches an epoch, one optimizer step per batch.

    Attributes:
        step: The optimizer steps already behind the training (``k``).
        epoch_batches: The batches of one epoch (``n``).
    """

    step: int
    epoch_batches: int

    @property
    def epoch(self) -> int:
        """The epoch the training continues in (its sampler epoch): ``k // n``."""
        return self.step // self.epoch_batches

    @property
    def batch(self) -> int:
        """The batch of that epoch it continues at: ``k % n``."""
        return self.step % self.epoch_batches

    def scheduler_steps(self, interval: Literal["step", "epoch"], frequency: int) -> int:
        """How often the first ``k`` steps step a scheduler, as Lightning steps it: after every ``frequency``-th
        batch of an epoch (``interval="step"``) or at the end of every ``frequency``-th epoch (``"epoch"``)."""
        if interval == "epoch":
            return self.epoch // frequency
        return self.epoch * (self.epoch_batches // frequency) + self.batch // frequency

    def advance(self, configs: Iterable[Any]) -> list[str]:
        """Step each of Lightning's scheduler configs (``scheduler``, ``interval``, ``frequency``,
        ``reduce_on_plateau``) as the first ``k`` steps stepped it; the names of those left as they are (a
        ``ReduceLROnPlateau`` steps on metrics of a training that did not run)."""
        left = []
        for config in configs:
            if config.reduce_on_plateau:
                left.append(type(config.scheduler).__name__)
                continue
            with warnings.catch_warnings():  # torch warns of a scheduler step before any optimizer step
                warnings.simplefilter("ignore", UserWarning)
                for _ in range(self.scheduler_steps(config.interval, config.frequency)):
                    config.scheduler.step()
        return left
