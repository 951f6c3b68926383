"""Every option declared once, and reachable from every entry point it names (docs/development.md, Options)."""

from __future__ import annotations

import dataclasses
import inspect
import json
import re
from pathlib import Path

import pytest
from cli_helpers import lottery_options_in_help, lth_here
from conftest import REPO

from lth_lightning import LotteryTicketCallback, run_lottery, run_seeds
from lth_lightning.cli.lottery_cli import LotteryOptions, callback_options
from lth_lightning.experiment.identity import LATER_DEFAULTS, NOT_IDENTITY
from lth_lightning.experiment.options import REQUIRED, Option, option, options_of, takes_options
from lth_lightning.experiment.rounds import CALLER_OBJECTS
from lth_lightning.experiment.spec import EXPERIMENT_OPTIONS, ExperimentSpec

ENTRY_POINTS = {"lth fit": LotteryOptions.__init__, "run_lottery": run_lottery, "run_seeds": run_seeds}
SOURCE = REPO / "lth_lightning"


def _help(capsys) -> str:
    out, _ = lth_here(capsys, "fit", "--help")
    return out


def test_lth_fit_lists_the_recorded_options_defaults_and_allowed_values(capsys):
    recorded = json.loads((REPO / "tests" / "golden" / "lth_fit_options.json").read_text())
    assert lottery_options_in_help(_help(capsys)) == recorded


@pytest.mark.parametrize("entry_point", sorted(ENTRY_POINTS))
def test_every_declared_option_is_an_argument_where_it_is_declared(entry_point):
    declared = [*EXPERIMENT_OPTIONS, *CALLER_OBJECTS, *(callback_options() if entry_point == "lth fit" else ())]
    own = {o.name: o for o in declared if entry_point in o.entry_points}
    parameters = inspect.signature(ENTRY_POINTS[entry_point]).parameters
    given = {n: p for n, p in parameters.items() if p.kind is inspect.Parameter.KEYWORD_ONLY}
    assert set(given) == set(own)
    for name, declaration in own.items():
        assert given[name].default == declaration.default_in(entry_point), name
    documented = inspect.getdoc(ENTRY_POINTS[entry_point]) or ""
    for declaration in own.values():
        assert " ".join(declaration.help.split()[:6]) in " ".join(documented.split()), declaration.name


def test_the_python_defaults_are_todays():
    lottery = inspect.signature(run_lottery).parameters
    assert lottery["rounds"].default is inspect.Parameter.empty and lottery["stack"].default is False
    assert lottery["out_dir"].default == "runs" and lottery["controls"].default == () and lottery["seed"].default == 0
    assert inspect.signature(run_seeds).parameters["seeds"].default is inspect.Parameter.empty
    with pytest.raises(TypeError, match="rounds"):
        run_lottery(None, None)
    with pytest.raises(TypeError, match="round"):
        run_lottery(None, None, round=3)


def test_every_spec_field_is_a_declared_option_or_the_runs_own():
    declared = {o.name for o in options_of(ExperimentSpec)}
    fields = {f.name for f in dataclasses.fields(ExperimentSpec)}
    assert fields - declared == {"trainer", "names"}  # the Trainer's settings (their own group), derived names


def test_the_callbacks_options_are_its_constructors():
    parameters = inspect.signature(LotteryTicketCallback.__init__).parameters
    assert [o.name for o in callback_options()] == [n for n in parameters if n not in ("self", "verbose")]
    for declared in callback_options():
        assert declared.default == parameters[declared.name].default


def test_identity_comes_from_the_declarations():
    for declared in EXPERIMENT_OPTIONS:
        if declared.name == "seed":
            continue  # a run's identity, left out of the experiment's by SEED_KEYS
        assert (f"lottery.{declared.name}" in NOT_IDENTITY) is (not declared.identity), declared.name
        assert (f"lottery.{declared.name}" in LATER_DEFAULTS) is declared.added_later, declared.name


def test_validation_comes_from_the_declaration():
    with pytest.raises(ValueError, match=r"`lottery.scoring_per_class` must be an integer >= 1, got 0"):
        ExperimentSpec(rounds=2, scoring_per_class=0, prefix="lottery.")
    with pytest.raises(ValueError, match=r"`mode` must be 'min' or 'max', got 'best'"):
        ExperimentSpec(rounds=2, mode="best")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"`rounds` must be an integer >= 1, got 0"):
        run_lottery(None, None, rounds=0)


def test_a_new_declaration_reaches_every_entry_point(capsys):
    """A field declared once becomes an argument, its documentation and its check, with nothing else written."""

    @dataclasses.dataclass(frozen=True)
    class Spec:
        rounds: int = option(REQUIRED, "Rounds.", cli_default=3)
        warmup: int = option(0, "Warm-up steps before pruning.", allowed="an integer >= 0", valid=lambda v: v >= 0)

    @takes_options("run_lottery", options_of(Spec))
    def entry(model: object, **options: object) -> dict:
        """Run it.

        Args:
            model: A model.
            {options}
        """
        return options

    assert entry(None, rounds=2) == {"rounds": 2, "warmup": 0}
    assert "warmup: Warm-up steps before pruning." in (entry.__doc__ or "")
    assert inspect.signature(entry).parameters["warmup"].annotation is int
    with pytest.raises(ValueError, match=r"`warmup` must be an integer >= 0, got -1"):
        Option("warmup", int, 0, "", allowed="an integer >= 0", valid=lambda v: v >= 0).check(-1)


def test_the_entry_points_write_no_option_of_their_own():
    """``lth fit``'s options and ``run_lottery``/``run_seeds``' arguments are the declarations, not rewritten there."""
    names = [o.name for o in (*EXPERIMENT_OPTIONS, *callback_options()) if o.name not in ("lottery", "config")]
    for module in ("cli/lottery_cli.py", "experiment/rounds.py"):
        text = (SOURCE / module).read_text()
        written = [n for n in names if re.search(rf"^\s+{n}: .+ = ", text, flags=re.M)]
        assert not written, (module, written)


def test_a_path_option_takes_text_on_the_command_line():
    (out_dir,) = [o for o in EXPERIMENT_OPTIONS if o.name == "out_dir"]
    assert out_dir.type_in("lth fit") == str | None and out_dir.type_in("run_lottery") == str | Path
