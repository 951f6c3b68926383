"""Every option (the callback's and the experiment's), declared once: type, defaults, allowed values, help, identity.

An option is a field of a settings dataclass declared with :func:`option`: the callback's in
:class:`~lth_lightning.callbacks.settings.LotterySettings`, the experiment's in
:class:`~lth_lightning.experiment.spec.ExperimentSpec`, the metric names' in :mod:`lth_lightning.metric_names`
(as :class:`Option` objects the spec's fields are :func:`declared` from). From that one declaration come
``lth fit``'s ``--lottery.*`` options and their ``--help``, the signatures ``run_lottery``, ``run_seeds`` and
the callback's constructor must have (:func:`signature_of`, checked by the tests), the validation
(:meth:`Option.check`), the experiment's identity (:attr:`Option.identity`, :attr:`Option.before`) and the
options page of the docs (``docs/options.md``). OpenLTH declares its hyperparameters the same way, once,
with their help.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import textwrap
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

__all__ = [
    "ENTRY_POINTS",
    "PYTHON",
    "REQUIRED",
    "EntryPoint",
    "Option",
    "a_name",
    "at_least",
    "declared",
    "fraction",
    "options_of",
    "option",
    "positive",
    "signature_of",
    "true_or_false",
]

EntryPoint = Literal["lth fit", "run_lottery", "run_seeds", "LotteryTicketCallback"]
ENTRY_POINTS: tuple[EntryPoint, ...] = ("lth fit", "run_lottery", "run_seeds")  # an experiment option's
PYTHON: tuple[EntryPoint, ...] = ("run_lottery", "run_seeds")
REQUIRED: Any = inspect.Parameter.empty  # a Python default meaning "no default: must be given"
_SAME: Any = object()


@dataclass(frozen=True)
class Option:
    """One option of an experiment.

    Attributes:
        name: Its keyword (``rounds``); ``lth fit``'s ``--lottery.<name>``.
        type: Its type, as Python callers pass it.
        default: Its default in Python (:data:`REQUIRED`: none).
        help: What it does, one paragraph.
        allowed: What values are allowed, in words (``"an integer >= 1"``); empty when its type says it.
        valid: Whether a value is allowed (None: any value of its type).
        cli_default: ``lth fit``'s default where it differs from Python's; ``null`` on the command line then
            stands for the Python default (unless the type itself allows None).
        entry_points: Where it is an argument.
        identity: Whether it changes results (it is then part of the experiment's identity and folder name).
        before: For an option added after experiments were recorded, the value that behaves as before it
            existed: at that value it is left out of the identity, so that older folders keep their names.
    """

    name: str
    type: Any
    default: Any
    help: str
    allowed: str = ""
    valid: Callable[[Any], bool] | None = None
    cli_default: Any = _SAME
    entry_points: tuple[EntryPoint, ...] = ENTRY_POINTS
    identity: bool = True
    before: Any = _SAME

    @property
    def added_later(self) -> bool:
        """Whether it has a :attr:`before` value."""
        return self.before is not _SAME

    def default_in(self, entry_point: EntryPoint) -> Any:
        """Its default at ``entry_point``."""
        return self.cli_default if entry_point == "lth fit" and self.cli_default is not _SAME else self.default

    def type_in(self, entry_point: EntryPoint) -> Any:
        """Its type at ``entry_point``: on the command line a path is text, and a ``null`` default is allowed."""
        kind = self.type
        if entry_point != "lth fit":
            return kind
        members = tuple(str if t is Path else t for t in (get_args(kind) if typing.get_origin(kind) in _UNIONS else ()))
        if members:
            kind = functools.reduce(lambda a, b: a | b, dict.fromkeys(members))
        if self.default_in(entry_point) is None and type(None) not in get_args(kind):
            kind = kind | None
        return kind

    def from_cli(self, value: Any) -> Any:
        """A value ``lth fit`` parsed, as Python takes it (``null`` for the Python default where None is no value)."""
        if value is None and type(None) not in get_args(self.type) and self.default is not REQUIRED:
            return self.default
        return value

    def check(self, value: Any, prefix: str = "") -> None:
        """Raise ValueError naming the option (``prefix`` + name), the value and what is allowed, if not allowed."""
        if typing.get_origin(self.type) is Literal and self.valid is None:
            if value not in get_args(self.type):
                allowed = " or ".join(map(repr, get_args(self.type)))
                raise ValueError(f"`{prefix}{self.name}` must be {allowed}, got {value!r}.")
        elif self.valid is not None and not self.valid(value):
            raise ValueError(f"`{prefix}{self.name}` must be {self.allowed}, got {value!r}.")

    def document(self) -> str:
        """Its Google-style ``Args:`` entry, wrapped."""
        return textwrap.fill(f"{self.name}: {self.help}", 110, subsequent_indent="    ", break_long_words=False)


_UNIONS = (typing.Union, type(int | str))


def option(
    default: Any,
    help: str,
    *,
    allowed: str = "",
    valid: Callable[[Any], bool] | None = None,
    cli_default: Any = _SAME,
    entry_points: tuple[EntryPoint, ...] = ENTRY_POINTS,
    identity: bool = True,
    before: Any = _SAME,
) -> Any:
    """A dataclass field declaring an option (``rounds: int = option(3, "Number of rounds...")``).

    ``default`` is the field's and the Python entry points' (:data:`REQUIRED`: none), ``cli_default`` ``lth fit``'s
    where it differs. The field's name and type complete the :class:`Option`.
    """
    declared = dict(help=help, allowed=allowed, valid=valid, cli_default=cli_default, entry_points=entry_points)
    declared.update(default=default, identity=identity, before=before)
    if default is REQUIRED:
        return dataclasses.field(metadata={"option": declared})
    return dataclasses.field(default=default, metadata={"option": declared})


@functools.cache
def options_of(cls: type) -> tuple[Option, ...]:
    """The options declared as fields of the dataclass ``cls``, in their order.

    Raises:
        TypeError: If a field :func:`declared` from an :class:`Option` has another name than the option's.
    """
    types = typing.get_type_hints(cls)
    found = []
    for f in dataclasses.fields(cls):
        if "option" not in f.metadata:
            continue
        declaration = f.metadata["option"]
        if isinstance(declaration, Option):
            if declaration.name != f.name:
                raise TypeError(f"{cls.__name__}.{f.name} is declared from the option {declaration.name!r}.")
            found.append(declaration)
        else:
            found.append(Option(name=f.name, type=types[f.name], **declaration))
    return tuple(found)


def declared(declaration: Option) -> Any:
    """A dataclass field for an option declared elsewhere as an :class:`Option` (``monitor: str | None =
    declared(MONITOR)``): the field's name must be the option's."""
    if declaration.default is REQUIRED:
        return dataclasses.field(metadata={"option": declaration})
    return dataclasses.field(default=declaration.default, metadata={"option": declaration})


def signature_of(entry_point: EntryPoint, options: Iterable[Option]) -> inspect.Signature:
    """The keyword-only parameters ``options`` give ``entry_point``: their names, ``entry_point``'s types and
    defaults, in their order with the required ones first. ``lth fit``'s options class is built from it, and the
    tests hold every Python entry point's written signature to it."""
    keyword = inspect.Parameter.KEYWORD_ONLY
    parameters = [
        inspect.Parameter(o.name, keyword, default=o.default_in(entry_point), annotation=o.type_in(entry_point))
        for o in options
        if entry_point in o.entry_points
    ]
    return inspect.Signature(sorted(parameters, key=lambda p: p.default is not REQUIRED))


def at_least(minimum: int) -> Callable[[Any], bool]:
    """Whether a value is an integer (not a bool) >= ``minimum``."""
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= minimum


def fraction(value: Any) -> bool:
    """Whether ``value`` is a number in the open interval (0, 1) (not a bool)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value < 1


def positive(value: Any) -> bool:
    """Whether ``value`` is a number > 0 (not a bool)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0


def true_or_false(value: Any) -> bool:
    """Whether ``value`` is a bool."""
    return isinstance(value, bool)


def a_name(value: Any) -> bool:
    """Whether ``value`` is None or a plain folder name."""
    plain = isinstance(value, str) and bool(value) and Path(value).name == value and value not in (".", "..")
    return value is None or plain
