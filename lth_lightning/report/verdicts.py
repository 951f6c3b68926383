"""Each claim checked on the experiments: two questions answered by a named test at a stated level.

For every experiment (or pair of experiments) and density a claim is about, the per-seed values
(``a - b``, ``a / b`` or ``a``; paired by seed) answer two questions, each with :mod:`.stats`' test
at :data:`~.stats.LEVEL`, Holm-corrected over the densities the claim is checked at:

* **side**: is the effect on the claimed side of the claim's ``margin``? (a ``within`` claim: is it
  inside ``[-margin, margin]``, by two one-sided tests at half the level each);
* **size**: is it as large as the paper's ``figure``? (only where the paper gives a number).

Each answer is one of :data:`VERDICTS`: ``holds`` (the test rejects its null on the claimed side;
for the size question: beyond the paper's figure), ``contradicted`` (it rejects on the other side;
for the size: short of the figure), ``no difference detected`` (it does not reject: for the size,
the effect is consistent with the paper's figure), ``too few seeds`` (the test cannot reach the
level with this many seeds; the answer says how many it needs), ``censored`` (a side of a
comparison that reads early stopping stopped at its last validation on some seed, so the value is
a bound, not a measurement) or ``not measured``. A finding computed outside the paper's setting
(its ``protocol``) says which settings differ.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from lth_lightning.report.claims import Claim, Condition, Paper
from lth_lightning.report.readout import Experiment
from lth_lightning.report.stats import LEVEL, TESTS, Estimate, Scale, SeedTest, estimate, holm, seeds_needed
from lth_lightning.report.table import ExperimentTable, paired

__all__ = [
    "CENSORED",
    "CONTRADICTED",
    "HOLDS",
    "NOT_MEASURED",
    "NO_DIFFERENCE",
    "TOO_FEW",
    "VERDICTS",
    "Answer",
    "Finding",
    "check_claim",
    "check_paper",
    "outside_setting",
]

HOLDS, CONTRADICTED, NO_DIFFERENCE = "holds", "contradicted", "no difference detected"
TOO_FEW, CENSORED, NOT_MEASURED = "too few seeds", "censored", "not measured"
VERDICTS = (HOLDS, CONTRADICTED, NO_DIFFERENCE, TOO_FEW, CENSORED, NOT_MEASURED)
DENSITY_TOLERANCE = 0.05  # a round is at a claim's density when within 5% of it (relative)
EARLY = ("early", "early_step")  # the quantities read at the early-stopping step


@dataclass(frozen=True)
class Answer:
    """One question's answer at one density.

    Attributes:
        verdict: One of :data:`VERDICTS`.
        null: The value tested against (the claim's margin, or the paper's figure).
        p: The test's p-value (two-sided; a ``within`` claim's: twice the deciding one-sided p-value).
        adjusted: The p-value after Holm's correction over the claim's densities, compared with the level.
        needed: With ``too few seeds``, the fewest seeds with which the test could reach the level.
    """

    verdict: str
    null: float
    p: float | None = None
    adjusted: float | None = None
    needed: int | None = None


@dataclass(frozen=True)
class Finding:
    """A claim checked on one experiment (or pair of experiments) at one round.

    Attributes:
        claim: The claim.
        experiment: Which experiment (``a vs b`` when the claim compares two).
        round: The round, or None when not measured for want of one.
        weights: The round's percent of weights left.
        values: The per-seed values.
        estimate: Their mean and 95% interval over the seeds (geometric for a ratio).
        side: The answer to "is the effect on the claimed side?".
        size: The answer to "is it as large as the paper's figure?"; None where the paper gives none.
        bound: For a censored finding, ``lower`` or ``upper`` where its value bounds the measurement, else empty.
        outside: The settings of the experiments that differ from the paper's (empty: inside it).
        why: What was missing (not measured), or which side stopped at its last validation (censored).
    """

    claim: Claim
    experiment: str
    round: int | None
    weights: float | None
    values: dict[int, float]
    estimate: Estimate | None
    side: Answer
    size: Answer | None = None
    bound: str = ""
    outside: tuple[str, ...] = field(default_factory=tuple)
    why: str = ""

    @property
    def verdict(self) -> str:
        """The side question's verdict (the claim's own)."""
        return self.side.verdict


def outside_setting(protocol: Sequence[Condition], experiment: Experiment) -> list[str]:
    """The experiment's recorded settings that the paper's setting does not allow, in words."""
    out = []
    for condition in protocol:
        value = experiment.setting(condition.key)
        if not condition.holds_for(value):
            allowed = " or ".join(str(v) for v in condition.one_of)
            out.append(f"{condition.key} = {value} (the paper's {condition.what}: {allowed})")
    return out


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


def _censoring(claim: Claim, first: ExperimentTable, second: ExperimentTable, round_: int) -> tuple[str, str]:
    """Why the finding is censored (empty if not), and which bound its value is (``lower``, ``upper`` or none)."""
    stopped = []
    for position, (name, table) in enumerate(_sides(claim, first, second)):
        if name.partition(".")[2] in EARLY and (seeds := table.censored(name, round_)):
            stopped.append(
                (position, f"{name.partition('.')[0]} on seed{'s' * (len(seeds) > 1)} {', '.join(map(str, seeds))}")
            )
    if not stopped:
        return "", ""
    why = "stopped at its last validation: " + "; ".join(text for _, text in stopped)
    steps = {name.partition(".")[2] for name in claim.series()} == {"early_step"}
    if not steps or len(stopped) == 2:
        return why, ""  # an accuracy at a step still improving, or both sides bounded: no bound either way
    # a step stopped at the budget's end would come later with a longer budget: a ratio or difference is bounded
    return why, "lower" if stopped[0][0] == 0 else "upper"


def _one_sided(test: SeedTest, values: list[float], mean: float, null: float, scale: Scale, greater: bool) -> float:
    """The one-sided p-value that the effect (whose estimate is ``mean``) is above (``greater``) or below ``null``,
    from the two-sided test."""
    p = test.p(values, null, scale)
    on_side = (mean > null) if greater else (mean < null)
    return p / 2 if on_side else 1 - p / 2


def _p_and_side(claim: Claim, values: list[float], mean: float, null: float, test: SeedTest) -> tuple[float, bool]:
    """The question's p-value and whether the estimate ``mean`` lies on the claimed side of ``null``."""
    if claim.claimed != "within":
        return test.p(values, null, claim.compare), (mean > null) == (claim.claimed == "above")
    if abs(mean) < null:  # inside the band: both one-sided tests must reject the edges (TOST)
        low = _one_sided(test, values, mean, -null, claim.compare, greater=True)
        high = _one_sided(test, values, mean, null, claim.compare, greater=False)
        return min(1.0, 2 * max(low, high)), True
    edge = null if mean >= null else -null
    return min(1.0, 2 * _one_sided(test, values, mean, edge, claim.compare, greater=mean >= null)), False


def _answers(
    claim: Claim, cases: list[tuple[dict[int, float], Estimate] | None], null: float, test: SeedTest
) -> list[Answer]:
    """One question's answers over a family of densities (each its values and their estimate; None: a density
    not tested), Holm-corrected."""
    tested = [i for i, values in enumerate(cases) if values is not None]
    threshold = LEVEL / max(1, len(tested))  # what the smallest p-value must reach for Holm to reject anything
    raw: dict[int, tuple[float, bool]] = {}
    too_few: dict[int, int | None] = {}
    for i, case in enumerate(cases):
        if case is None:
            continue
        seeds = list(case[0].values())
        if test.min_p(len(seeds)) > threshold:
            too_few[i] = seeds_needed(test, threshold)
            raw[i] = (1.0, True)
        else:
            raw[i] = _p_and_side(claim, seeds, case[1].mean, null, test)
    adjusted = dict(zip(tested, holm([raw[i][0] for i in tested]), strict=True))
    answers = []
    for i, values in enumerate(cases):
        if values is None:
            answers.append(Answer(CENSORED, null))
        elif i in too_few:
            answers.append(Answer(TOO_FEW, null, needed=too_few[i]))
        else:
            p, on_side = raw[i]
            verdict = NO_DIFFERENCE if adjusted[i] > LEVEL else HOLDS if on_side else CONTRADICTED
            answers.append(Answer(verdict, null, p, adjusted[i]))
    return answers


def _not_measured(claim: Claim, experiment: str, why: str, outside: Sequence[str] = ()) -> Finding:
    return Finding(
        claim,
        experiment,
        None,
        None,
        {},
        None,
        Answer(NOT_MEASURED, claim.margin),
        None,
        outside=tuple(outside),
        why=why,
    )


def _family(
    claim: Claim, first: ExperimentTable, second: ExperimentTable, outside: Sequence[str], test: SeedTest
) -> list[Finding]:
    """The claim's findings on one experiment (or pair) at every round it is about, answered as one family."""
    label, rounds = _label(first, second), _rounds(claim, first, second)
    if not rounds:
        at = ", ".join(f"{first.weights(r):.1f}%" for r in first.rounds)
        wanted = f"{claim.rounds} round" if claim.density is None else f"round at {claim.density}% of the weights"
        return [_not_measured(claim, label, f"no {wanted} (rounds at {at})", outside)]
    measured: list[tuple[int, dict[int, float], Estimate, str, str]] = []
    found: dict[int, Finding] = {}
    for r in rounds:
        a = first.series(claim.a, r)
        values = dict(a) if claim.b is None else paired(a, second.series(claim.b, r), claim.compare)
        missing = [name for name, table in _sides(claim, first, second) if not table.series(name, r)]
        est = estimate(list(values.values()), claim.compare)  # None without values
        if missing or est is None:
            why = f"{' and '.join(missing) or 'no seed with both series'} not measured at round {r}"
            found[r] = Finding(
                claim,
                label,
                r,
                first.weights(r),
                values,
                None,
                Answer(NOT_MEASURED, claim.margin),
                outside=tuple(outside),
                why=why,
            )
        else:
            why, bound = _censoring(claim, first, second, r)
            measured.append((r, values, est, why, bound))
    cases = [None if why else (values, est) for _, values, est, why, _ in measured]
    sides = _answers(claim, cases, claim.margin, test)
    sizes = _answers(claim, cases, claim.figure, test) if claim.figure is not None else [None] * len(measured)
    for (r, values, est, why, bound), side, size in zip(measured, sides, sizes, strict=True):
        found[r] = Finding(
            claim,
            label,
            r,
            first.weights(r),
            values,
            est,
            side,
            size,
            bound,
            tuple(outside),
            why,
        )
    return [found[r] for r in rounds]


def check_claim(
    claim: Claim,
    tables: Sequence[ExperimentTable],
    protocol: Sequence[Condition] = (),
    test: str = "t",
) -> list[Finding]:
    """The claim's findings on the experiments: one per experiment (or pair) and round it is about.

    Where no experiment or no round covers it, one ``not measured`` finding says what is missing.

    Args:
        claim: The claim.
        tables: The experiments.
        protocol: The paper's setting as conditions; findings on experiments outside it say how.
        test: The name of the test in :data:`~.stats.TESTS`.
    """
    if test not in TESTS:
        raise ValueError(f"Unknown test {test!r}; choose from {', '.join(TESTS)}.")
    pairs = _pairs(claim, tables)
    if not pairs:
        wanted = ", ".join(f"{k}={v}" for k, v in {**claim.a_where, **claim.b_where}.items())
        return [_not_measured(claim, "-", f"no pair of experiments with {wanted}")]
    findings: list[Finding] = []
    for first, second in pairs:
        outside = list(
            dict.fromkeys([*outside_setting(protocol, first.experiment), *outside_setting(protocol, second.experiment)])
        )
        missing = [name for name, table in _sides(claim, first, second) if not table.has(name)]
        if missing:
            findings.append(
                _not_measured(claim, _label(first, second), f"{' and '.join(missing)} not in the runs", outside)
            )
            continue
        findings += _family(claim, first, second, outside, TESTS[test])
    return findings


def check_paper(paper: Paper, tables: Sequence[ExperimentTable], test: str = "t") -> list[Finding]:
    """Every claim of the paper checked on the experiments, against the paper's setting."""
    return [f for claim in paper.claims for f in check_claim(claim, tables, paper.protocol, test)]
