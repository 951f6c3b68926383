"""``ExperimentSpec``: an experiment's settings, validated in one place; ``RunContext``: one run of it (a seed).

``run_lottery``, ``run_seeds`` and ``lth fit`` all build an :class:`ExperimentSpec`; the round loop
and its executors read everything from it and from each run's :class:`RunContext`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import InitVar, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import torch
from torch import Tensor

from lth_lightning.experiment.controls import CONTROLS, TicketRound, control_masks_and_init, control_seed
from lth_lightning.experiment.scoring import ScoringBatch, draw_scoring_batch
from lth_lightning.metric_names import DEFAULT_METRICS, MetricNames
from lth_lightning.saliency import GRASP_TEMPERATURE

if TYPE_CHECKING:
    import lightning.pytorch as pl

    from lth_lightning.callback import LotteryTicketCallback
    from lth_lightning.experiment.store import RunStore

__all__ = ["DataOrder", "ExperimentSpec", "RunContext", "check_seeds"]

T = TypeVar("T")
DataOrder = Literal["seed", "fixed"]
_DATA_ORDERS = ("seed", "fixed")


@dataclass(frozen=True)
class ExperimentSpec:
    """What an experiment runs, the same for each of its seeds.

    Attributes:
        rounds: Number of rounds (>= 1), the dense round 0 included.
        controls: Controls trained at every round after the dense one, in the registry's order.
        names: The metrics the results read.
        trainer: Keyword arguments of every training's ``Trainer``.
        out_dir: Parent folder of the experiment's folder.
        name: The experiment folder's name, or None for ``<net>-<data>-<pruning>-<hash>``.
        stack: Train each round's members as one stacked network (None: where the module can).
        progress: Show a progress bar over rounds.
        report: Redraw the plots and the TensorBoard summary after every round.
        keep_checkpoints: Keep each round's ``last.ckpt`` once the round is recorded.
        instability: Measure every round's instability: a second copy of the ticket trained from the same
            point under another data order, and the error along the line between the two.
        instability_controls: Controls whose instability is measured too, each from its own start (Frankle et
            al. 2020's contrast: random subnetworks are unstable where tickets are not); needs ``instability``.
        scoring_per_class: Examples of each class in the batch that SNIP and GraSP score (:mod:`.scoring`).
        grasp_temperature: GraSP divides the logits by it before the cross-entropy (the references' 200).
        data_order: ``"seed"``: each run trains on its seed's data order (a DataModule's ``shuffle_seed`` set to
            the seed), as OpenLTH's replicates do; ``"fixed"``: every seed on the DataModule's own order.
        option: How messages name the options (``"lottery."`` for ``lth fit``'s ``--lottery.*``).

    Raises:
        ValueError: For a value out of range, naming the option and what is allowed.
    """

    rounds: int
    controls: tuple[str, ...] = ()
    names: MetricNames = DEFAULT_METRICS
    trainer: Mapping[str, Any] = field(default_factory=dict)
    out_dir: Path = Path("runs")
    name: str | None = None
    stack: bool | None = False
    progress: bool = True
    report: bool = True
    keep_checkpoints: bool = False
    instability: bool = False
    instability_controls: tuple[str, ...] = ()
    scoring_per_class: int = 10
    grasp_temperature: float = GRASP_TEMPERATURE
    data_order: DataOrder = "seed"
    option: InitVar[str] = ""

    def __post_init__(self, option: str) -> None:
        rounds, controls, name = self.rounds, list(self.controls), self.name
        if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
            raise ValueError(f"`{option}rounds` must be an integer >= 1, got {rounds!r}.")
        if any(c not in CONTROLS for c in controls) or len(set(controls)) != len(controls):
            raise ValueError(f"`{option}controls` must be distinct entries of {list(CONTROLS)}, got {controls}.")
        if not isinstance(self.instability, bool):
            raise ValueError(f"`{option}instability` must be true or false, got {self.instability!r}.")
        unstable = list(self.instability_controls)
        if any(c not in controls for c in unstable) or len(set(unstable)) != len(unstable):
            raise ValueError(
                f"`{option}instability_controls` must be distinct entries of `{option}controls` ({controls}), "
                f"got {unstable}."
            )
        if unstable and not self.instability:
            raise ValueError(
                f"`{option}instability_controls` ({unstable}) contrasts the controls' instability with the ticket's: "
                f"set `{option}instability` to true too."
            )
        per_class, temperature = self.scoring_per_class, self.grasp_temperature
        if isinstance(per_class, bool) or not isinstance(per_class, int) or per_class < 1:
            raise ValueError(f"`{option}scoring_per_class` must be an integer >= 1, got {per_class!r}.")
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not temperature > 0:
            raise ValueError(f"`{option}grasp_temperature` must be a number > 0, got {temperature!r}.")
        if self.data_order not in _DATA_ORDERS:
            raise ValueError(f"`{option}data_order` must be 'seed' or 'fixed', got {self.data_order!r}.")
        if name is not None and (not name or Path(name).name != name or name in (".", "..")):
            raise ValueError(f"`{option}name` must be a plain folder name, got {name!r}.")
        object.__setattr__(self, "controls", tuple(c for c in CONTROLS if c in controls))  # registry order
        object.__setattr__(self, "instability_controls", tuple(c for c in self.controls if c in unstable))
        object.__setattr__(self, "trainer", dict(self.trainer))
        object.__setattr__(self, "out_dir", Path(self.out_dir))


def check_seeds(seeds: Sequence[int], option: str = "") -> list[int]:
    """``seeds`` as a list, if it is a non-empty list of distinct integers.

    Raises:
        ValueError: Otherwise, naming the value.
    """
    if not seeds or len(set(seeds)) != len(seeds) or not all(isinstance(s, int) for s in seeds):
        raise ValueError(f"`{option}seeds` must be a non-empty list of distinct integers, got {list(seeds)!r}.")
    return list(seeds)


@dataclass(frozen=True)
class RunContext:
    """One run of an experiment: its seed, module, data, callback and folder.

    Attributes:
        spec: The experiment.
        seed: The run's seed.
        model: The LightningModule; its weights when the run starts are round 0's.
        datamodule: The data.
        lottery: The callback carried across the run's rounds.
        store: The run's folder: what it has recorded, and what it records.
    """

    spec: ExperimentSpec
    seed: int
    model: pl.LightningModule
    datamodule: pl.LightningDataModule
    lottery: LotteryTicketCallback
    store: RunStore

    def control(
        self, name: str, r: int, masks: Mapping[str, Tensor], init: Mapping[str, Tensor] | None
    ) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """Control ``name``'s masks and initial state in round ``r``, where the ticket trains ``masks`` from ``init``.

        Computed on every process from the same inputs; under DDP the first process's result is
        the one every process takes (a data-reading score may see another shard of the data on each).

        Raises:
            RuntimeError: If the ticket has no initial state yet.
            ValueError: For an unknown control, or one that cannot score this module.
        """
        if init is None:
            raise RuntimeError("The lottery callback has no snapshot yet: run a round first.")
        ticket = TicketRound(masks, init, self.model, lambda: self.scoring, self.spec.grasp_temperature)
        return _same_on_every_process(control_masks_and_init(name, ticket, control_seed(self.seed, r, name)))

    @cached_property
    def scoring(self) -> ScoringBatch:
        """The batch the run's pruning at initialization scores: drawn once, from the run's seed, and recorded."""
        drawn = draw_scoring_batch(self.model, self.datamodule, self.spec.scoring_per_class, self.seed)
        self.store.save_scoring_batch(drawn.cpu_batch(), drawn.describe(self.seed))
        return drawn


def _same_on_every_process(value: T) -> T:
    """The first process's ``value`` on every process of a running process group (``value`` itself otherwise)."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return value
    if torch.distributed.get_world_size() == 1:
        return value
    box = [value]
    torch.distributed.broadcast_object_list(box, src=0)
    return box[0]
