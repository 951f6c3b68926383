"""Every option of an experiment, declared once: type, defaults, allowed values, help, whether it changes results.

An option is a field of :class:`~.spec.ExperimentSpec` declared with :func:`option` (or, for the few that
are not the spec's, an :class:`Option` of its own). From that one declaration come ``lth fit``'s
``--lottery.*`` options and their ``--help``, the keyword arguments of ``run_lottery`` and ``run_seeds``
(their signatures, defaults and documentation: :func:`takes_options`), the validation (:meth:`Option.check`)
and the experiment's identity (:attr:`Option.identity`, :attr:`Option.before`). OpenLTH declares its
hyperparameters the same way, once, with their help.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import textwrap
import typing
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args

__all__ = [
    "ENTRY_POINTS",
    "PYTHON",
    "REQUIRED",
    "EntryPoint",
    "Option",
    "a_name",
    "at_least",
    "options_of",
    "option",
    "positive",
    "takes_options",
    "true_or_false",
]

EntryPoint = Literal["lth fit", "run_lottery", "run_seeds"]
ENTRY_POINTS: tuple[EntryPoint, ...] = ("lth fit", "run_lottery", "run_seeds")
PYTHON: tuple[EntryPoint, ...] = ("run_lottery", "run_seeds")
REQUIRED: Any = inspect.Parameter.empty  # a Python default meaning "no default: must be given"
_SAME: Any = object()
_F = TypeVar("_F", bound=Callable[..., Any])


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
    """The options declared as fields of the dataclass ``cls``, in their order."""
    types = typing.get_type_hints(cls)
    return tuple(
        Option(name=f.name, type=types[f.name], **f.metadata["option"])
        for f in dataclasses.fields(cls)
        if "option" in f.metadata
    )


def takes_options(entry_point: EntryPoint, options: Iterable[Option]) -> Callable[[_F], _F]:
    """Give a function taking ``**options`` the declared ``options`` of ``entry_point`` as keyword arguments.

    The function's signature (what ``help()``, ``inspect`` and jsonargparse read) lists them with their types
    and defaults, ``{options}`` in its docstring becomes their ``Args:`` entries, and a call is checked against
    the signature (an unknown or missing argument is a TypeError) with the defaults filled in.
    """
    own = [o for o in options if entry_point in o.entry_points]

    def decorate(function: _F) -> _F:
        signature = inspect.signature(function)
        fixed = [p for p in signature.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
        keyword = inspect.Parameter.KEYWORD_ONLY
        added = [
            inspect.Parameter(o.name, keyword, default=o.default_in(entry_point), annotation=o.type_in(entry_point))
            for o in own
        ]
        full = signature.replace(parameters=[*fixed, *sorted(added, key=lambda p: p.default is not REQUIRED)])

        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                bound = full.bind(*args, **kwargs)
            except TypeError as error:
                raise TypeError(f"{function.__name__}() {error}") from None
            bound.apply_defaults()
            return function(*bound.args, **bound.kwargs)

        wrapper.__signature__ = full  # type: ignore[attr-defined]
        wrapper.__annotations__ = {p.name: p.annotation for p in full.parameters.values() if p.name != "self"}
        wrapper.__doc__ = _with_arguments(function.__doc__ or "", own)
        return wrapper  # type: ignore[return-value]

    return decorate


def _with_arguments(doc: str, options: Sequence[Option]) -> str:
    """``doc`` with its ``{options}`` line replaced by the options' ``Args:`` entries, indented as that line."""
    lines = doc.splitlines()
    for i, line in enumerate(lines):
        if line.strip() == "{options}":
            indent = line[: len(line) - len(line.lstrip())]
            entries = [textwrap.indent(o.document(), indent) for o in options]
            return "\n".join([*lines[:i], *entries, *lines[i + 1 :]]) + "\n"
    raise ValueError("The docstring has no `{options}` line to list the options in.")


def at_least(minimum: int) -> Callable[[Any], bool]:
    """Whether a value is an integer (not a bool) >= ``minimum``."""
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= minimum


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
