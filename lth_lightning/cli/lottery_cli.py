"""``LotteryCLI``: LightningCLI whose ``fit`` runs a whole multi-round lottery experiment (``lth fit``)."""

from __future__ import annotations

import copy
import dataclasses
import difflib
import functools
import inspect
import re
import sys
import textwrap
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NoReturn

import lightning.pytorch as pl
import yaml
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from lth_lightning.callbacks.lottery_ticket import LotteryTicketCallback
from lth_lightning.callbacks.settings import CALLBACK_OPTIONS
from lth_lightning.compat import cli_parser, cli_value
from lth_lightning.experiment.record.store import is_global_zero
from lth_lightning.experiment.rounds.seeds import SeedRun, run_experiment, run_seeds_of
from lth_lightning.experiment.spec import EXPERIMENT_OPTIONS, ExperimentSpec, check_seeds
from lth_lightning.options import Option, signature_of
from lth_lightning.report.command import closing_summary

__all__ = ["LTH_FIT_OPTIONS", "LotteryCLI", "LotteryOptions"]


# ``lth fit``'s ``--lottery.*`` options: the callback's and the experiment's, as declared.
LTH_FIT_OPTIONS: tuple[Option, ...] = tuple(
    o for o in (*CALLBACK_OPTIONS, *EXPERIMENT_OPTIONS) if "lth fit" in o.entry_points
)


def _with_declared_options(init: Callable[..., None]) -> Callable[..., None]:
    """``init`` (taking ``**options``) as jsonargparse reads a class's options: with the signature and the ``Args:``
    of :data:`LTH_FIT_OPTIONS` (:func:`~lth_lightning.options.signature_of`, :meth:`~lth_lightning.options.Option.
    document`). The ``--lottery`` group of ``lth fit`` and its ``--help`` come from here; a call is bound to the
    signature, its defaults filled in."""
    signature = signature_of("lth fit", LTH_FIT_OPTIONS)
    self = inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)
    full = signature.replace(parameters=[self, *signature.parameters.values()])
    arguments = "\n".join(textwrap.indent(o.document(), " " * 12) for o in LTH_FIT_OPTIONS)

    @functools.wraps(init)
    def wrapper(self: Any, **options: Any) -> None:
        bound = full.bind(self, **options)
        bound.apply_defaults()
        init(*bound.args, **bound.kwargs)

    wrapper.__signature__ = full  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in signature.parameters.values()}
    wrapper.__doc__ = f"{init.__doc__}\n        Args:\n{arguments}\n"
    return wrapper


class LotteryOptions:
    """Options of a lottery-ticket experiment (the ``--lottery.*`` group of ``lth fit``)."""

    @_with_declared_options
    def __init__(self, **options: Any) -> None:
        """The callback's options (:mod:`lth_lightning.callbacks.settings`) and the experiment's
        (:mod:`lth_lightning.experiment.spec`).

        Raises:
            ValueError: If an option is out of range (the message names it).
        """
        callback = {o.name: options.pop(o.name) for o in CALLBACK_OPTIONS if "lth fit" in o.entry_points}
        seeds, self.out_dir = options.pop("seeds"), options.pop("out_dir")
        self.seeds = None if seeds is None else check_seeds(seeds, "lottery.")
        declared = {o.name: o for o in EXPERIMENT_OPTIONS}
        settings = {name: declared[name].from_cli(value) for name, value in options.items()}
        self.spec = ExperimentSpec(**settings, prefix="lottery.")  # the one validation of an experiment's settings
        self.callback = LotteryTicketCallback(**callback)


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


def literal_error(message: str) -> str | None:
    """jsonargparse's page on a value outside an option's ``Literal`` (a control's name, a scope), as one line:
    the option, the value, the nearest allowed one and every allowed one; None for any other message."""
    key = re.search(r'Parser key "([^"]+)"', message)
    wrong = re.search(r"Expected a typing\.Literal\[(.*?)\]\. Got value: (.*)", message)
    if key is None or wrong is None:
        return None
    allowed, value = re.findall(r"'([^']*)'", wrong.group(1)), wrong.group(2).strip()
    close = difflib.get_close_matches(value, allowed, n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]}?" if close else "."
    return f"--{key.group(1)}: {value} is not allowed{hint} Allowed: {', '.join(allowed)}."


def union_error(message: str) -> str | None:
    """jsonargparse's page on a value that fits none of an option's types (a list for ``--lottery.rates``), as one
    line: the option, the value and what it must be (its declaration's words); None for any other message."""
    key = re.search(r'Parser key "([^"]+)"', message)
    given = re.search(r"Given value: (.*)", message)
    if key is None or given is None or "Does not validate against any of the Union subtypes" not in message:
        return None
    declared = {f"lottery.{o.name}": o for o in LTH_FIT_OPTIONS}.get(key.group(1))
    if declared is None or not declared.allowed:
        return None
    return f"--{key.group(1)}: {given.group(1).strip()} is not allowed; it must be {declared.allowed}."


class ConciseParser(LightningArgumentParser):
    """LightningCLI's parser, whose errors say what went wrong (and the nearest option) instead of a page of usage."""

    def error(self, message: str, ex: Exception | None = None) -> NoReturn:
        if not self.exit_on_error:  # parsing inside jsonargparse: it handles the error itself
            super().error(message, ex)
        parser = getattr(ex, "subcommand_parser", None) or self
        options = [s for action in parser._actions for s in action.option_strings if s.startswith("--")]
        prog = parser.prog.replace(" [options]", "")
        one_line = literal_error(message) or union_error(message)
        if one_line is not None:
            sys.stderr.write(f"{prog}: error: {one_line}\n")
        else:
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
            folder = rows.run_dir
        else:

            def make_model() -> pl.LightningModule:
                return cli_parser(self, self.subcommand).instantiate_classes(self.config[self.subcommand])["model"]

            runs = run_seeds_of(spec, options.seeds, make_model, datamodule, options.callback, config)
            folder = runs.experiment_dir
        if is_global_zero():
            dashboard, table = f"lth dashboard {folder.resolve()}", closing_summary(folder)
            print(f"\n{table}\n\nRun folder: {folder.resolve()}\nDashboard: {dashboard}", flush=True)
