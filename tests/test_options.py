"""Every option declared once (lth_lightning/options.py): the entry points' written signatures, ``lth fit``'s
options and help, the checks and the identity all follow the declarations."""

from __future__ import annotations

import dataclasses
import inspect
import json
import typing
from pathlib import Path

import pytest
from cli_helpers import lottery_options_in_help, lth_here
from conftest import REPO

from lth_lightning import LotteryTicketCallback, MetricNames, run_lottery, run_seeds
from lth_lightning.api import CALLER_OBJECTS
from lth_lightning.callbacks.settings import CALLBACK_OPTIONS, LotterySettings
from lth_lightning.experiment.record.identity import experiment_identity
from lth_lightning.experiment.spec import EXPERIMENT_OPTIONS, ExperimentSpec
from lth_lightning.options import REQUIRED, Option, declared, option, options_of, signature_of

PYTHON_ENTRY_POINTS = {"run_lottery": run_lottery, "run_seeds": run_seeds}


def _written(function, skip: int) -> list[tuple[str, object, object]]:
    """A function's parameters after the first ``skip``: name, default, type (annotations evaluated)."""
    hints = typing.get_type_hints(function)
    parameters = list(inspect.signature(function).parameters.values())[skip:]
    return [(p.name, p.default, hints[p.name]) for p in parameters]


def _declared(entry_point, options) -> list[tuple[str, object, object]]:
    return [(p.name, p.default, p.annotation) for p in signature_of(entry_point, options).parameters.values()]


@pytest.mark.parametrize("entry_point", sorted(PYTHON_ENTRY_POINTS))
def test_the_python_entry_points_signatures_are_the_declarations(entry_point):
    function = PYTHON_ENTRY_POINTS[entry_point]
    assert _written(function, 2) == _declared(entry_point, (*CALLER_OBJECTS, *EXPERIMENT_OPTIONS))
    keyword_only = list(inspect.signature(function).parameters.values())[2:]
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in keyword_only)
    documented = " ".join((inspect.getdoc(function) or "").split())
    assert all(f"{p.name}," in documented or f"{p.name}:" in documented for p in keyword_only)


def test_the_callbacks_constructor_is_its_declarations():
    assert _written(LotteryTicketCallback.__init__, 1) == _declared("LotteryTicketCallback", CALLBACK_OPTIONS)
    documented = " ".join((LotteryTicketCallback.__doc__ or "").split())
    assert all(o.name in documented for o in CALLBACK_OPTIONS)


def test_lth_fit_lists_the_recorded_options_defaults_and_allowed_values(capsys):
    recorded = json.loads((REPO / "tests" / "golden" / "lth_fit_options.json").read_text())
    out, _ = lth_here(capsys, "fit", "--help")
    assert lottery_options_in_help(out) == recorded
    assert "--lottery.verbose" not in out  # the callback's one option that lth fit does not offer


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
    declared_names = {o.name for o in options_of(ExperimentSpec)}
    fields = {f.name for f in dataclasses.fields(ExperimentSpec)}
    assert fields - declared_names == {"trainer", "names"}  # the Trainer's settings (their own group), derived names


@pytest.mark.parametrize(
    ("key", "value", "changes_results"),
    [
        ("amount", 0.5, True),
        ("retrain", "finetune", True),
        ("snapshot_device", "module", False),
        ("grasp_temperature", 100.0, True),
        ("keep_checkpoints", True, False),
        ("rounds", 9, False),
        ("monitor", "val/acc", True),
    ],
)
def test_an_option_changes_the_identity_as_declared(key, value, changes_results):
    base = {"model": {"class_path": "M"}, "lottery": {"amount": 0.2, "retrain": "rewind", "rounds": 3}}
    changed = {**base, "lottery": {**base["lottery"], key: value}}
    assert (experiment_identity(base) != experiment_identity(changed)) is changes_results
    (declaration,) = [o for o in (*CALLBACK_OPTIONS, *EXPERIMENT_OPTIONS) if o.name == key]
    assert declaration.identity is changes_results


def test_an_option_added_later_is_left_out_of_the_identity_at_its_earlier_value():
    base = {"model": {"class_path": "M"}, "lottery": {"amount": 0.2}}
    assert experiment_identity({**base, "lottery": {"amount": 0.2, "retrain": "rewind"}}) == experiment_identity(base)
    assert experiment_identity({**base, "lottery": {"amount": 0.2, "data_order": "fixed"}}) == experiment_identity(base)
    assert experiment_identity({**base, "lottery": {"amount": 0.2, "data_order": "seed"}}) != experiment_identity(base)


def test_validation_comes_from_the_declaration():
    with pytest.raises(ValueError, match=r"`lottery.scoring_per_class` must be an integer >= 1, got 0"):
        ExperimentSpec(rounds=2, scoring_per_class=0, prefix="lottery.")
    with pytest.raises(ValueError, match=r"`mode` must be 'min' or 'max', got 'best'"):
        ExperimentSpec(rounds=2, mode="best")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"`rounds` must be an integer >= 1, got 0"):
        run_lottery(None, None, rounds=0)
    with pytest.raises(ValueError, match=r"`test_metric` must be a logged metric's name, got '/'"):
        MetricNames(test="/")
    with pytest.raises(ValueError, match=r"`amount` must be a float in the open interval \(0, 1\), got 1.5"):
        LotterySettings(amount=1.5)


def test_a_new_declaration_reaches_the_signature_the_check_and_the_help():
    """A field declared once gives the entry points' signature, its documentation and its check."""
    declaration = Option("warmup", int, 0, "Warm-up steps.", allowed="an integer >= 0", valid=lambda v: v >= 0)

    @dataclasses.dataclass(frozen=True)
    class Spec:
        rounds: int = option(REQUIRED, "Rounds.", cli_default=3)
        warmup: int = declared(declaration)

    rounds, found = options_of(Spec)
    assert found is declaration and rounds.name == "rounds" and rounds.type is int
    signature = signature_of("run_lottery", options_of(Spec))
    assert list(signature.parameters) == ["rounds", "warmup"]
    assert signature.parameters["rounds"].default is REQUIRED
    assert signature_of("lth fit", options_of(Spec)).parameters["rounds"].default == 3
    assert declaration.document() == "warmup: Warm-up steps."
    with pytest.raises(ValueError, match=r"`warmup` must be an integer >= 0, got -1"):
        declaration.check(-1)

    @dataclasses.dataclass(frozen=True)
    class Misnamed:
        cooldown: int = declared(declaration)

    with pytest.raises(TypeError, match="Misnamed.cooldown is declared from the option 'warmup'"):
        options_of(Misnamed)


def test_a_path_option_takes_text_on_the_command_line():
    (out_dir,) = [o for o in EXPERIMENT_OPTIONS if o.name == "out_dir"]
    assert out_dir.type_in("lth fit") == str | None and out_dir.type_in("run_lottery") == str | Path
