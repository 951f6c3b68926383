"""``LotteryCLI``: LightningCLI whose ``fit`` runs a whole multi-round lottery experiment (``lth fit``)."""

from __future__ import annotations

import copy
import dataclasses
import difflib
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, NoReturn

import lightning.pytorch as pl
import yaml
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from lth_lightning.callback import LotteryTicketCallback, Retrain, SnapshotDevice
from lth_lightning.compat import cli_parser, cli_value
from lth_lightning.experiment.controls import ControlName
from lth_lightning.experiment.results import format_seed_table, format_table
from lth_lightning.experiment.rounds import is_global_zero, run_seeds_of
from lth_lightning.experiment.runner import SeedRun, run_experiment
from lth_lightning.experiment.spec import DataOrder, ExperimentSpec, check_seeds
from lth_lightning.metric_names import MetricNames

__all__ = ["LotteryCLI", "LotteryOptions"]


class LotteryOptions:
    """Options of a lottery-ticket experiment (the ``--lottery.*`` group of ``lth fit``).

    Args:
        rounds: Number of rounds, the dense round 0 included (>= 1). With 1, ``lth fit`` is a
            plain LightningCLI fit with the callback. Raising it continues a finished experiment.
        amount: Fraction of the alive prunable weights removed per round, in (0, 1).
        scope: Prune by global magnitude across layers or layer by layer.
        parameters: Names or glob patterns of the parameters to prune (default: the weight of
            every Linear, Conv and ConvTranspose layer).
        rates: Per-parameter pruning rates overriding ``amount`` (name or glob -> rate).
        rewind_step: Optimizer step of the first round to rewind to; 0 is the initialization; above 0 each
            later round trains from that step to the end (its schedule and data order continuing there).
        snapshot_device: Where the rewind snapshot is kept: ``cpu`` (pinned on a GPU run) or ``module``
            (the model's device). It does not change results, nor the experiment's folder.
        name: The experiment folder's name; by default ``<net>-<data>-<pruning>-<hash>``, from
            every setting that changes results, so that every variant gets its own folder.
        out_dir: Parent of the experiment folder; defaults to the Trainer's ``default_root_dir``.
        progress: Show a progress bar over rounds.
        controls: Controls trained at every round with the same recipe: ``random_reinit``
            (the ticket's masks, a fresh initialization), ``random_prune`` (random masks of
            the ticket's per-layer sizes, the original initialization), ``random_prune:global``
            (random masks at the ticket's density in every layer), and pruning the initial
            network once to the round's density, as published (one ranking over every pruned
            layer): ``snip`` (|g * w| of the cross-entropy on a class-balanced batch), ``grasp``
            (GraSP's -w * Hg at temperature 200), ``synflow`` (data-free, 100 iterations) and
            ``magnitude_init`` (|w| at initialization); each method's ablations (Frankle et al.
            2021) are ``<method>:layerwise`` (ranked within each layer at the ticket's counts),
            ``:shuffled`` (its layer counts, random positions), ``:reinit`` (its masks, a fresh
            initialization) and ``:inverted`` (the lowest scores kept).
        seeds: Run the experiment once per seed (``seed_everything``), each in
            ``<experiment>/seed_<s>/``, and aggregate mean, std, min and max per round in
            ``<experiment>/results_seeds.csv``, plots with bands and a TensorBoard summary.
        monitor: Validation metric, as the model logs it (``val/loss``, ``val_loss``), whose
            best value marks the early-stopping iteration; the weights there are tested too.
            null records no validation.
        mode: Which value of ``monitor`` is best: ``min`` or ``max``.
        test_metric: Test metric the results report, as the model logs it (``test/acc``, ``test_acc``).
        stack: Train each round's tickets and controls (of every seed) as members of one stacked
            network, in one fit per round: true, false, or null to stack wherever the model can
            (a LotteryClassifier whose network torch.func can vectorize, rewinding to the
            initialization) and say why not elsewhere. The results are those of sequential runs.
        keep_checkpoints: Keep each round's last.ckpt (the model and its optimizer state) once the
            round is recorded; by default it is removed then (its weights.pt, masks and state stay).
        retrain: How every round after the dense one retrains (Renda et al. 2020), for the same
            number of steps: ``rewind`` (the weights back to the rewind point: the lottery ticket),
            ``lr_rewind`` (the trained weights, the whole learning-rate schedule again) or
            ``finetune`` (the trained weights, at the schedule's final learning rate).
        instability: Measure every round's instability (Frankle et al. 2020): a second copy trained
            from the rewind point under another data order, and the test error along the line
            between the two copies (30 points) minus the mean of its ends; stable below 0.02.
        instability_controls: Controls whose instability is measured too (needs ``instability``): a
            second copy of each from its own start, and the barriers along the line between the two;
            Frankle et al. 2020 contrast random subnetworks, unstable, with tickets.
        scoring_per_class: Examples of each class in the batch SNIP and GraSP score (drawn from
            the training data with the run's seed; saved as ``seed_<s>/scoring_batch.pt``).
        grasp_temperature: GraSP divides the logits by it before the cross-entropy (the
            reference implementations' 200).
        data_order: ``seed``: each seed trains on its own data order too (the datamodule's
            shuffle_seed set to the seed, recorded in seed_<s>/run.yaml), as OpenLTH's replicates
            do; ``fixed``: every seed on the datamodule's own order (the min-max bands then cover
            the initialization only). Seeds of different orders are stacked one seed at a time.

    Raises:
        ValueError: If ``rounds`` < 1, a pruning option is out of range or a metric name is empty.
    """

    def __init__(
        self,
        rounds: int = 3,
        amount: float = 0.2,
        scope: Literal["global", "layerwise"] = "global",
        parameters: list[str] | None = None,
        rates: dict[str, float] | None = None,
        rewind_step: int = 0,
        snapshot_device: SnapshotDevice = "cpu",
        name: str | None = None,
        out_dir: str | None = None,
        progress: bool = True,
        controls: list[ControlName] | None = None,
        seeds: list[int] | None = None,
        monitor: str | None = "val/loss",
        mode: Literal["min", "max"] = "min",
        test_metric: str = "test/acc",
        stack: bool | None = None,
        keep_checkpoints: bool = False,
        retrain: Retrain = "rewind",
        instability: bool = False,
        instability_controls: list[ControlName] | None = None,
        scoring_per_class: int = 10,
        grasp_temperature: float = 200.0,
        data_order: DataOrder = "seed",
    ) -> None:
        self.spec = ExperimentSpec(  # the one validation of an experiment's settings
            rounds=rounds,
            controls=tuple(controls or ()),
            names=MetricNames(monitor, mode, test_metric),
            name=name,
            stack=stack,
            progress=progress,
            keep_checkpoints=keep_checkpoints,
            instability=instability,
            instability_controls=tuple(instability_controls or ()),
            scoring_per_class=scoring_per_class,
            grasp_temperature=grasp_temperature,
            data_order=data_order,
            option="lottery.",
        )
        self.seeds = None if seeds is None else check_seeds(seeds, "lottery.")
        self.out_dir = out_dir
        self.callback = LotteryTicketCallback(
            amount=amount,
            scope=scope,
            parameters=parameters,
            rates=rates,
            rewind_step=rewind_step,
            snapshot_device=snapshot_device,
            retrain=retrain,
        )


def did_you_mean(message: str, options: list[str]) -> str:
    """``did you mean --lottery.rounds?`` for the option names in ``message`` that are not ``options`` (or "").

    Names are ``--options`` on the command line, or ``'dotted.keys'`` of a config file.
    """
    hints = []
    keys = re.findall(r"'([A-Za-z_]\w*(?:\.\w+)+)'", message)
    for name in dict.fromkeys([*re.findall(r"--[A-Za-z_][\w.\-]*", message), *(f"--{k}" for k in keys)]):
        close = difflib.get_close_matches(name, options, n=1, cutoff=0.75) if name not in options else []
        if close:
            hints.append(f"{name}: did you mean {' or '.join(close)}?")
        else:
            dotted = name.rsplit(".", 1)[0] + "." if "." in name else ""
            if dotted and not any(o.startswith(dotted) for o in options) and not name.startswith("--model"):
                hints.append(f"{name}: no option starts with {dotted}")
    return "".join(f"{hint}\n" for hint in hints)


class ConciseParser(LightningArgumentParser):
    """LightningCLI's parser, whose errors say what went wrong (and the nearest option) instead of a page of usage."""

    def error(self, message: str, ex: Exception | None = None) -> NoReturn:
        if not self.exit_on_error:  # parsing inside jsonargparse: it handles the error itself
            super().error(message, ex)
        parser = getattr(ex, "subcommand_parser", None) or self
        options = [s for action in parser._actions for s in action.option_strings if s.startswith("--")]
        prog = parser.prog.replace(" [options]", "")
        sys.stderr.write(f"{prog}: error: {message}\n{did_you_mean(message, options)}")
        sys.stderr.write(f"Every option, with its documentation: {prog} --help\n")
        self.exit(2)


class LotteryCLI(LightningCLI):
    """LightningCLI with a ``--lottery`` group; ``fit`` runs :func:`~lth_lightning.run_lottery` (or ``run_seeds``).

    The model may be any LightningModule and the data any LightningDataModule (``class_path``
    in the config); the defaults are the seed's MLP in a ``LotteryClassifier`` and
    Fashion-MNIST. The full config is saved as ``config.yaml`` in the run folder. Options are
    never abbreviated: ``--lottery.round`` is an error, not ``--lottery.rounds``.
    """

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("save_config_callback", None)  # the driver writes config.yaml in the run folder
        kwargs.setdefault("seed_everything_default", 0)
        kwargs.setdefault("subclass_mode_model", True)
        kwargs.setdefault("subclass_mode_data", True)
        kwargs.setdefault("auto_configure_optimizers", False)
        kwargs.setdefault("parser_class", ConciseParser)
        no_abbreviations = {"allow_abbrev": False}
        parser_kwargs = {
            **no_abbreviations,
            **{c: dict(no_abbreviations) for c in ("fit", "validate", "test", "predict")},
        }
        kwargs.setdefault("parser_kwargs", parser_kwargs)
        super().__init__(pl.LightningModule, pl.LightningDataModule, **kwargs)

    def add_arguments_to_parser(self, parser: Any) -> None:
        parser.add_class_arguments(LotteryOptions, "lottery", instantiate=True)
        parser.set_defaults(
            {
                "model": {"class_path": "lth_lightning.LotteryClassifier"},
                "data": {"class_path": "lth_lightning.FashionMNISTDataModule"},
            }
        )

    def instantiate_trainer(self, **kwargs: Any) -> pl.Trainer:
        # Keep pristine trainer settings for the rounds: creating a Trainer mutates its callbacks list.
        self._round_trainer_kwargs = copy.deepcopy(cli_value(self, self.config_init, "trainer", default={}))
        return super().instantiate_trainer(**kwargs)

    def _run_config(self) -> dict[str, Any]:
        text = cli_parser(self, self.subcommand).dump(self.config[self.subcommand], skip_none=False)
        config = yaml.safe_load(text) or {}
        for key in ("config", "ckpt_path"):
            config.pop(key, None)
        return config

    def fit(
        self,
        model: pl.LightningModule,
        datamodule: pl.LightningDataModule | None = None,
        ckpt_path: str | None = None,
        **kwargs: Any,
    ) -> None:
        """Run the experiment (``--lottery.rounds`` > 1) or one plain fit with the callback (== 1)."""
        options: LotteryOptions = self.config_init[self.subcommand]["lottery"]
        if options.spec.rounds == 1 and options.seeds is not None:
            raise ValueError("`lottery.seeds` runs the multi-round experiment per seed: use --lottery.rounds >= 2.")
        if options.spec.rounds == 1:
            self.trainer.callbacks.append(options.callback)  # type: ignore[attr-defined]
            self.trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path, **kwargs)
            return
        if ckpt_path is not None:
            raise ValueError(
                f"--ckpt_path {ckpt_path!r} is only for --lottery.rounds 1: a multi-round run resumes from its "
                "run folder by itself (rerun the same command)."
            )
        if datamodule is None:
            raise ValueError("`lth fit` needs a datamodule (--data).")
        trainer_kwargs: Mapping[str, Any] = self._round_trainer_kwargs
        config = self._run_config()
        out_dir = Path(options.out_dir or trainer_kwargs.get("default_root_dir") or Path.cwd())
        spec = dataclasses.replace(options.spec, trainer=trainer_kwargs, out_dir=out_dir)
        if options.seeds is None:
            seed = int(config.get("seed_everything") or 0)
            rows = run_experiment(spec, datamodule, {seed: SeedRun(model, options.callback, config)})[seed]
            table, folder = format_table(rows, spec.names), rows.run_dir
        else:

            def make_model() -> pl.LightningModule:
                return cli_parser(self, self.subcommand).instantiate_classes(self.config[self.subcommand])["model"]

            runs = run_seeds_of(spec, options.seeds, make_model, datamodule, options.callback, config)
            table, folder = format_seed_table(runs.aggregated, spec.names), runs.experiment_dir
        if is_global_zero():
            dashboard = f"lth dashboard {folder.resolve()}"
            print(f"\n{table}\n\nRun folder: {folder.resolve()}\nDashboard: {dashboard}", flush=True)
