"""The papers' claims as data: what each compares, the side it claims, the paper's figure, and the paper's setting.

Each paper's claims are a YAML file in ``lth_lightning/report/claims/`` (``frankle2019.yaml``, ...):
what is compared (two series, a ratio of two series, or one series against a threshold), at which
density or rounds, the side the paper claims (against ``margin``) and, where the paper gives one,
its figure as a number (``figure``); and the paper's setting, as text and as conditions on the
recorded config (``protocol``), so that a verdict computed outside it is marked. The verdicts are
:mod:`.verdicts`'.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import yaml

from lth_lightning.report.papers import CLAIMS_DIR, available_papers
from lth_lightning.report.table import DENSE, QUANTITIES, TICKET

__all__ = ["Claim", "Condition", "Paper", "load_paper"]

Compare = Literal["difference", "ratio", "value"]
Side = Literal["above", "below", "within"]


@dataclass(frozen=True)
class Claim:
    """One claim of a paper, restated as data.

    Attributes:
        id: Short name, unique in its paper.
        says: The claim in words.
        source: Where the paper makes it (section, figure or table).
        paper: The paper's own figure.
        compare: ``difference`` (a - b), ``ratio`` (a / b) or ``value`` (a alone).
        a: The first series (``<source>.<quantity>``); ``b`` the second (not for ``value``).
        claimed: ``above``, ``below`` or ``within`` (``|value| < margin``) the margin.
        margin: The value the side is claimed against (the direction question's null), in the series'
            units: points of accuracy or error, steps, or a ratio.
        density: The percent of weights left the claim is about; or ``rounds`` instead.
        rounds: ``pruned`` (every round after the dense one), ``dense`` (round 0) or ``all``.
        a_where: Settings (dotted config keys) of the experiment ``a`` comes from, when the claim
            compares two experiments (``{lottery.retrain: lr_rewind}``); ``b_where`` likewise.
        note: How we restate it: what we chose where the paper gives no number, and why.
        figure: The paper's figure as a number in the claim's units (points, a ratio, a value), which the
            size question tests against; None where the paper gives none (``note`` then says so).
    """

    id: str
    says: str
    source: str
    paper: str
    compare: Compare
    a: str
    claimed: Side
    margin: float
    b: str | None = None
    density: float | None = None
    rounds: Literal["pruned", "dense", "all"] | None = None
    a_where: Mapping[str, Any] = field(default_factory=dict)
    b_where: Mapping[str, Any] = field(default_factory=dict)
    note: str = ""
    figure: float | None = None

    def series(self) -> list[str]:
        """The series the claim reads."""
        return [self.a] if self.b is None else [self.a, self.b]


@dataclass(frozen=True)
class Condition:
    """One condition of a paper's setting on a run's recorded config.

    Attributes:
        key: The dotted config key (``trainer.max_steps``, ``model.init_args.net.init_args.sizes``).
        what: The condition in words (``50,000 iterations a round``).
        one_of: The values the paper's setting allows.
    """

    key: str
    what: str
    one_of: list[Any]

    def holds_for(self, value: Any) -> bool:
        """Whether a recorded value is one the paper's setting allows."""
        return value in self.one_of


@dataclass(frozen=True)
class Paper:
    """A paper and its claims (one claims file).

    Attributes:
        name: The file's name.
        title: The paper.
        setting: The paper's setting in words.
        claims: Its claims.
        protocol: Its setting as conditions on a run's recorded config.
    """

    name: str
    title: str
    setting: str
    claims: list[Claim]
    protocol: list[Condition] = field(default_factory=list)


def _fail(where: str, message: str) -> ValueError:
    return ValueError(f"{where}: {message}")


def _check_series(name: str, controls: Sequence[str], where: str) -> None:
    source, _, quantity = name.partition(".")
    if source not in (TICKET, DENSE, *controls) or quantity not in QUANTITIES:
        raise _fail(
            where,
            f"series {name!r} is not <source>.<quantity> with source ticket, dense or a control "
            f"and quantity one of {', '.join(QUANTITIES)}.",
        )


def _claim(raw: Mapping[str, Any], controls: Sequence[str], where: str) -> Claim:
    try:
        claim = Claim(**raw)
    except TypeError as err:
        raise _fail(where, str(err).replace("__init__()", "a claim")) from None
    if claim.compare not in ("difference", "ratio", "value"):
        raise _fail(where, f"compare {claim.compare!r} is not difference, ratio or value.")
    if claim.claimed not in ("above", "below", "within"):
        raise _fail(where, f"claimed {claim.claimed!r} is not above, below or within.")
    if (claim.b is None) != (claim.compare == "value"):
        raise _fail(where, "a `value` claim reads one series (a); a difference or ratio two (a and b).")
    if (claim.density is None) == (claim.rounds is None):
        raise _fail(where, "give either `density` (percent of weights left) or `rounds` (pruned, dense, all).")
    if claim.rounds not in (None, "pruned", "dense", "all"):
        raise _fail(where, f"rounds {claim.rounds!r} is not pruned, dense or all.")
    for name in claim.series():
        _check_series(name, controls, where)
    if claim.figure is None and claim.claimed != "within" and not claim.note:
        raise _fail(where, "the paper gives no `figure`: say in `note` what the claim is checked against, and why.")
    if claim.claimed == "within" and claim.compare == "ratio":
        raise _fail(where, "a `within` claim is a band around 0: compare a difference or a value, not a ratio.")
    if claim.figure is not None and claim.claimed == "within":
        raise _fail(where, "a `within` claim is checked against its margin only; give no `figure`.")
    if claim.compare == "ratio" and min(claim.margin, claim.figure or 1.0) <= 0:
        raise _fail(where, "a ratio's margin and figure must be positive.")
    return claim


def _conditions(raw: Any, where: str) -> list[Condition]:
    if not isinstance(raw, list):
        raise _fail(where, "`protocol` is a list of {key, what, one_of} conditions.")
    out = []
    for i, entry in enumerate(raw):
        if not isinstance(entry, Mapping) or set(entry) != {"key", "what", "one_of"}:
            raise _fail(f"{where}, protocol {i}", "a condition has exactly key, what and one_of.")
        if not isinstance(entry["one_of"], list) or not entry["one_of"]:
            raise _fail(f"{where}, protocol {i}", "`one_of` lists the values the paper's setting allows.")
        out.append(Condition(str(entry["key"]), str(entry["what"]), list(entry["one_of"])))
    return out


def load_paper(name: str, controls: Sequence[str]) -> Paper:
    """Read and check one paper's claims file.

    Args:
        name: The file's name without ``.yaml`` (see :func:`available_papers`).
        controls: The control names a series may name.

    Raises:
        ValueError: If ``name`` is not a claims file, or the file does not parse into claims
            whose series exist.
    """
    papers = available_papers()
    if name not in papers:
        raise ValueError(f"Unknown claims {name!r}; choose from {', '.join(papers)} (or `list`).")
    path = CLAIMS_DIR / f"{name}.yaml"
    raw = yaml.safe_load(path.read_text())
    if not isinstance(raw, Mapping) or not isinstance(raw.get("claims"), list):
        raise _fail(str(path), "expected a mapping with title, setting and a list of claims.")
    claims = [_claim(c, controls, f"{path}, claim {i}") for i, c in enumerate(raw["claims"])]
    ids = [c.id for c in claims]
    if len(set(ids)) != len(ids):
        raise _fail(str(path), f"claim ids repeat: {ids}.")
    protocol = _conditions(raw.get("protocol", []), str(path))
    return Paper(name, str(raw.get("title", "")), str(raw.get("setting", "")), claims, protocol)
