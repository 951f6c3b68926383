"""``ExperimentSpec``: an experiment's settings, each option declared once and validated in one place.

``run_lottery``, ``run_seeds`` and ``lth fit`` all build an :class:`ExperimentSpec` (their arguments come from
its declarations: :mod:`lth_lightning.options`); the round loop and its executors read everything from it and from each
run's :class:`~.rounds.context.RunContext`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import InitVar, dataclass, field
from pathlib import Path
from typing import Any, Literal

from lth_lightning.experiment.controls.registry import CONTROLS, ControlName
from lth_lightning.metric_names import MODE, MONITOR, TEST_METRIC, MetricNames
from lth_lightning.options import (
    PYTHON,
    REQUIRED,
    Option,
    a_name,
    at_least,
    declared,
    option,
    options_of,
    positive,
    true_or_false,
)
from lth_lightning.pruning.saliency import GRASP_TEMPERATURE

__all__ = ["EXPERIMENT_OPTIONS", "SEED", "SEEDS", "DataOrder", "ExperimentSpec", "KeepWeights", "check_seeds"]

DataOrder = Literal["seed", "fixed"]
KeepWeights = Literal["ticket", "all"]


@dataclass(frozen=True)
class ExperimentSpec:
    """What an experiment runs, the same for each of its seeds: every option of ``lth fit``'s ``--lottery`` group and
    of ``run_lottery``/``run_seeds`` that is not the callback's, each declared here once (:mod:`lth_lightning.options`).

    Attributes:
        names: The metrics the results read (``monitor``, ``mode`` and ``test_metric``).
        trainer: Keyword arguments of every training's ``Trainer`` (None: none).
        prefix: How messages name the options (``"lottery."`` for ``lth fit``'s ``--lottery.*``).

    Raises:
        ValueError: For a value out of range, naming the option and what is allowed.
    """

    rounds: int = option(
        REQUIRED,
        "Number of rounds, the dense round 0 included (>= 1). With 1, ``lth fit`` is a plain LightningCLI fit with "
        "the callback. Raising it continues a finished experiment.",
        allowed="an integer >= 1",
        valid=at_least(1),
        cli_default=3,
        identity=False,
    )
    controls: Sequence[ControlName] = option(
        (),
        "Controls trained at every round with the same recipe: ``random_reinit`` (the ticket's masks, a fresh "
        "initialization), ``random_prune`` (random masks of the ticket's per-layer sizes, the original "
        "initialization), ``random_prune:global`` (random masks at the ticket's density in every layer), and "
        "pruning the initial network once to the round's density, as published (one ranking over every pruned "
        "layer): ``snip`` (|g * w| of the cross-entropy on a class-balanced batch), ``grasp`` (GraSP's -w * Hg at "
        "temperature 200), ``synflow`` (data-free, 100 iterations) and ``magnitude_init`` (|w| at "
        "initialization); each method's ablations (Frankle et al. 2021) are ``<method>:layerwise`` (ranked within "
        "each layer at the ticket's counts), ``:shuffled`` (its layer counts, random positions), ``:reinit`` (its "
        "masks, a fresh initialization) and ``:inverted`` (the lowest scores kept).",
        allowed="distinct control names",
        cli_default=None,
    )
    monitor: str | None = declared(MONITOR)
    mode: Literal["min", "max"] = declared(MODE)
    test_metric: str = declared(TEST_METRIC)
    out_dir: str | Path = option(
        "runs",
        "Parent of the experiment folder; on ``lth fit`` it defaults to the Trainer's ``default_root_dir``.",
        cli_default=None,
        identity=False,
    )
    name: str | None = option(
        None,
        "The experiment folder's name; by default ``<net>-<data>-<pruning>-<hash>``, from every setting that "
        "changes results, so that every variant gets its own folder.",
        allowed="a plain folder name",
        valid=a_name,
        identity=False,
    )
    stack: bool | None = option(
        False,
        "Train each round's tickets and controls (of every seed) as members of one stacked network, in one fit "
        "per round: true, false, or null (None) to stack wherever the model can (a LotteryClassifier whose "
        "network torch.func can vectorize, rewinding to the initialization) and say why not elsewhere. The "
        "results are those of sequential runs.",
        cli_default=None,
        identity=False,
    )
    progress: bool = option(True, "Show a progress bar over rounds.", identity=False)
    report: bool = option(
        True,
        "Redraw the plots and the TensorBoard summary after every round (``results.csv`` and ``.json`` are "
        "written regardless).",
        entry_points=PYTHON,
        identity=False,
    )
    keep_checkpoints: bool = option(
        False,
        "Keep each round's last.ckpt (the model and its optimizer state) once the round is recorded; by default "
        "it is removed then (its weights.pt, masks and state stay).",
        identity=False,
    )
    keep_weights: KeepWeights = option(
        "ticket",
        "The networks each round keeps beside its masks: ``ticket``, the ticket's trained weights and, where its "
        "early stop came before the end, its weights there (one or two copies of the network per round; its "
        "initial weights are in the round's callback state); ``all``, the same for every control too, with each "
        "control's initial weights (up to three more copies per control and round), so that ``load_round`` "
        "returns every member's networks.",
        identity=False,
    )
    instability: bool = option(
        False,
        "Measure every round's instability (Frankle et al. 2020): a second copy trained from the rewind point "
        "under another data order, and the test error along the line between the two copies (30 points) minus "
        "the mean of its ends; stable below 0.02.",
        allowed="true or false",
        valid=true_or_false,
        before=False,
    )
    instability_controls: Sequence[ControlName] = option(
        (),
        "Controls whose instability is measured too (needs ``instability``): a second copy of each from its own "
        "start, and the barriers along the line between the two; Frankle et al. 2020 contrast random "
        "subnetworks, unstable, with tickets.",
        allowed="distinct entries of ``controls``",
        cli_default=None,
        before=None,
    )
    scoring_per_class: int = option(
        10,
        "Examples of each class in the batch SNIP and GraSP score (drawn from the training data with the run's "
        "seed; saved as ``seed_<s>/scoring_batch.pt``).",
        allowed="an integer >= 1",
        valid=at_least(1),
        before=10,
    )
    grasp_temperature: float = option(
        GRASP_TEMPERATURE,
        "GraSP divides the logits by it before the cross-entropy (the reference implementations' 200).",
        allowed="a number > 0",
        valid=positive,
        before=GRASP_TEMPERATURE,
    )
    data_order: DataOrder = option(
        "seed",
        "``seed``: each seed trains on its own data order too (the datamodule's shuffle_seed set to the seed, "
        "recorded in seed_<s>/run.yaml), as OpenLTH's replicates do; ``fixed``: every seed on the datamodule's "
        "own order (the min-max bands then cover the initialization only). Seeds of different orders are "
        "stacked one seed at a time.",
        before="fixed",
    )
    trainer: Mapping[str, Any] = field(default_factory=dict)
    names: MetricNames = field(init=False)
    prefix: InitVar[str] = ""

    def __post_init__(self, prefix: str) -> None:
        option = prefix
        for declaration in options_of(ExperimentSpec):
            declaration.check(getattr(self, declaration.name), option)
        controls, unstable = list(self.controls), list(self.instability_controls)
        if any(c not in CONTROLS for c in controls) or len(set(controls)) != len(controls):
            raise ValueError(f"`{option}controls` must be distinct entries of {list(CONTROLS)}, got {controls}.")
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
        object.__setattr__(self, "names", MetricNames(self.monitor, self.mode, self.test_metric))
        object.__setattr__(self, "controls", tuple(c for c in CONTROLS if c in controls))  # registry order
        object.__setattr__(self, "instability_controls", tuple(c for c in self.controls if c in unstable))
        object.__setattr__(self, "trainer", dict(self.trainer or {}))
        object.__setattr__(self, "out_dir", Path(self.out_dir))

    @classmethod
    def from_arguments(cls, arguments: Mapping[str, Any]) -> ExperimentSpec:
        """The spec of an entry point's ``arguments`` (its ``locals()``): every option declared here, and ``trainer``.

        Raises:
            ValueError: For a value out of range, naming the option and what is allowed.
        """
        declared = {o.name: arguments[o.name] for o in options_of(ExperimentSpec)}
        return cls(**declared, trainer=arguments.get("trainer") or {})

    def settings(self) -> dict[str, Any]:
        """The options ``lth fit`` has, as its config records them (sequences as lists)."""
        return {
            o.name: list(value) if isinstance(value := getattr(self, o.name), tuple) else value
            for o in options_of(ExperimentSpec)
            if "lth fit" in o.entry_points
        }

    @property
    def out_path(self) -> Path:
        """:attr:`out_dir` as a path."""
        return Path(self.out_dir)


SEEDS = Option(
    "seeds",
    Sequence[int],
    REQUIRED,
    "Run the experiment once per seed (``seed_everything``), each in ``<experiment>/seed_<s>/``, and aggregate "
    "mean, std, min and max per round in ``<experiment>/results_seeds.csv``, plots with bands and a TensorBoard "
    "summary.",
    allowed="a non-empty list of distinct integers",
    valid=lambda seeds: bool(seeds) and len(set(seeds)) == len(seeds) and all(isinstance(s, int) for s in seeds),
    cli_default=None,
    entry_points=("lth fit", "run_seeds"),
    identity=False,
)
SEED = Option(
    "seed",
    int,
    0,
    "The run's seed: its folder ``seed_<seed>`` and the controls' random draws. The module's initialization is "
    "the caller's (seed it before building the module; ``run_seeds`` does).",
    entry_points=("run_lottery",),
)  # part of a run's identity; the experiment's leaves it out (:data:`~.record.identity.SEED_KEYS`)
# Every option of the experiment layer, in the order the entry points list them.
EXPERIMENT_OPTIONS: tuple[Option, ...] = (*options_of(ExperimentSpec), SEEDS, SEED)


def check_seeds(seeds: Sequence[int], option: str = "") -> list[int]:
    """``seeds`` as a list, if it is a non-empty list of distinct integers.

    Raises:
        ValueError: Otherwise, naming the value.
    """
    SEEDS.check(list(seeds), option)
    return list(seeds)
