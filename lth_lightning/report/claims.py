"""The papers' claims as data, and the one rule that gives each a verdict from the seeds' runs.

Each paper's claims are a YAML file in ``lth_lightning/report/claims/`` (``frankle2019.yaml``, ...):
what is compared (two series, a ratio of two series, or one series against a threshold), at which
density or rounds, the side and margin the paper claims, and the paper's own figure with where it
is. :func:`verdict` is the rule, applied to the per-seed values (a ticket and its controls share a
seed's initialization, so they are paired by seed):

* ``holds``: every seed's value is on the claimed side of the margin;
* ``contradicted``: every seed's value is on the other side;
* ``within spread``: the seeds disagree (or one sits on the margin);
* ``not measured``: the runs lack the series or the density, or have fewer than two seeds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import yaml

from lth_lightning.report.papers import CLAIMS_DIR, available_papers
from lth_lightning.report.table import DENSE, QUANTITIES, TICKET, ExperimentTable, paired

__all__ = [
    "Claim",
    "Finding",
    "Paper",
    "VERDICTS",
    "check_claim",
    "load_paper",
    "verdict",
]

HOLDS, CONTRADICTED, WITHIN_SPREAD, NOT_MEASURED = "holds", "contradicted", "within spread", "not measured"
VERDICTS = (HOLDS, CONTRADICTED, WITHIN_SPREAD, NOT_MEASURED)
DENSITY_TOLERANCE = 0.05  # a round is at a claim's density when within 5% of it (relative)
MIN_SEEDS = 2

Compare = Literal["difference", "ratio", "value"]
Side = Literal["above", "below", "within"]


def _on_side(value: float, claimed: Side, margin: float) -> bool | None:
    """True on the claimed side of the margin, False on the other, None exactly on it."""
    distance = abs(value) - margin if claimed == "within" else value - margin
    if distance == 0:
        return None
    return (distance > 0) == (claimed == "above")


def verdict(values: Mapping[int, float], claimed: Side, margin: float) -> str:
    """The verdict of per-seed values on a claim: see the module's docstring for the rule."""
    if len(values) < MIN_SEEDS:
        return NOT_MEASURED
    sides = [_on_side(v, claimed, margin) for v in values.values()]
    if all(side is True for side in sides):
        return HOLDS
    if all(side is False for side in sides):
        return CONTRADICTED
    return WITHIN_SPREAD


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
        margin: In the series' units: points of accuracy or error, steps, or a ratio.
        density: The percent of weights left the claim is about; or ``rounds`` instead.
        rounds: ``pruned`` (every round after the dense one), ``dense`` (round 0) or ``all``.
        a_where: Settings (dotted config keys) of the experiment ``a`` comes from, when the claim
            compares two experiments (``{lottery.retrain: lr_rewind}``); ``b_where`` likewise.
        note: How we restate it, where the paper gives no margin or its setting differs.
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

    def series(self) -> list[str]:
        """The series the claim reads."""
        return [self.a] if self.b is None else [self.a, self.b]


@dataclass(frozen=True)
class Paper:
    """A paper and its claims (one claims file)."""

    name: str
    title: str
    setting: str
    claims: list[Claim]


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
    return claim


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
    return Paper(name, str(raw.get("title", "")), str(raw.get("setting", "")), claims)


@dataclass(frozen=True)
class Finding:
    """A claim checked on one experiment (or pair of experiments) at one round.

    Attributes:
        claim: The claim.
        experiment: Which experiment (``a vs b`` when the claim compares two).
        round: The round, or None when not measured for want of one.
        weights: The round's percent of weights left.
        values: The per-seed values the verdict read.
        verdict: One of :data:`VERDICTS`.
        why: What was missing, when not measured.
    """

    claim: Claim
    experiment: str
    round: int | None
    weights: float | None
    values: dict[int, float]
    verdict: str
    why: str = ""


def _matches(table: ExperimentTable, where: Mapping[str, Any]) -> bool:
    return all(table.experiment.setting(key) == value for key, value in where.items())


def _pairs(claim: Claim, tables: Sequence[ExperimentTable]) -> list[tuple[ExperimentTable, ExperimentTable]]:
    if not claim.a_where and not claim.b_where:
        return [(t, t) for t in tables]
    firsts = [t for t in tables if _matches(t, claim.a_where)]
    seconds = [t for t in tables if _matches(t, claim.b_where)]
    return [(a, b) for a in firsts for b in seconds if a is not b]


def _rounds(claim: Claim, first: ExperimentTable, second: ExperimentTable) -> list[int]:
    shared = [r for r in first.rounds if r in second.rounds]
    if claim.rounds == "all":
        return shared
    if claim.rounds == "dense":
        return [r for r in shared if r == 0]
    if claim.rounds == "pruned":
        return [r for r in shared if r > 0]
    density = float(claim.density or 0.0)  # a claim without rounds has a density (checked when read)
    return [r for r in shared if abs(first.weights(r) - density) <= DENSITY_TOLERANCE * density]


def _label(first: ExperimentTable, second: ExperimentTable) -> str:
    one, other = first.experiment.name, second.experiment.name
    return one if first is second else f"{one} vs {other}"


def _sides(claim: Claim, first: ExperimentTable, second: ExperimentTable) -> list[tuple[str, ExperimentTable]]:
    """Each series the claim reads, with the experiment it is read from."""
    return [(claim.a, first)] if claim.b is None else [(claim.a, first), (claim.b, second)]


def _at_round(claim: Claim, first: ExperimentTable, second: ExperimentTable, round_: int) -> Finding:
    a = first.series(claim.a, round_)
    values = dict(a) if claim.b is None else paired(a, second.series(claim.b, round_), claim.compare)
    missing = [name for name, table in _sides(claim, first, second) if not table.series(name, round_)]
    why = f"{' and '.join(missing)} not measured at round {round_}" if missing else ""
    if not why and len(values) < MIN_SEEDS:
        why = f"{len(values)} seed{'s' * (len(values) != 1)}: the rule needs at least {MIN_SEEDS}"
    found = NOT_MEASURED if why else verdict(values, claim.claimed, claim.margin)
    return Finding(claim, _label(first, second), round_, first.weights(round_), values, found, why)


def check_claim(claim: Claim, tables: Sequence[ExperimentTable]) -> list[Finding]:
    """The claim's findings on the experiments: one per experiment (or pair) and round it is about.

    Where no experiment or no round covers it, one ``not measured`` finding says what is missing.
    """
    pairs = _pairs(claim, tables)
    if not pairs:
        wanted = ", ".join(f"{k}={v}" for k, v in {**claim.a_where, **claim.b_where}.items())
        return [Finding(claim, "-", None, None, {}, NOT_MEASURED, f"no pair of experiments with {wanted}")]
    findings: list[Finding] = []
    for first, second in pairs:
        missing = [name for name, table in _sides(claim, first, second) if not table.has(name)]
        if missing:
            why = f"{' and '.join(missing)} not in the runs"
            findings.append(Finding(claim, _label(first, second), None, None, {}, NOT_MEASURED, why))
            continue
        rounds = _rounds(claim, first, second)
        if not rounds:
            at = ", ".join(f"{first.weights(r):.1f}%" for r in first.rounds)
            wanted = f"{claim.rounds} round" if claim.density is None else f"round at {claim.density}% of the weights"
            why = f"no {wanted} (rounds at {at})"
            findings.append(Finding(claim, _label(first, second), None, None, {}, NOT_MEASURED, why))
            continue
        findings += [_at_round(claim, first, second, r) for r in rounds]
    return findings
