"""A paper's claims and their verdicts as text: the rule (written from the code's constants), one summary line per
claim and experiment, and the table of every density (Markdown), or one row per finding (CSV)."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence

from lth_lightning.report.claims import Claim, Paper
from lth_lightning.report.render import markdown_table
from lth_lightning.report.stats import CONFIDENCE, LEVEL, TESTS, Estimate
from lth_lightning.report.verdicts import (
    CENSORED,
    CONTRADICTED,
    HOLDS,
    NO_DIFFERENCE,
    NOT_MEASURED,
    TOO_FEW,
    VERDICTS,
    Answer,
    Finding,
)

__all__ = ["claims_csv", "claims_markdown", "rule", "summary_lines"]


def rule(test: str = "t") -> str:
    """The verdict rule in words, from the constants the code uses (the page shows this, never its own words)."""
    half = f"{LEVEL / 2:g}"
    return (
        "Verdict rule: each claim asks two questions of its per-seed values (a - b, a / b, or a alone; a ticket "
        "and its controls share the seed's initialization, so they are paired by seed). **Side**: is the effect "
        "on the claimed side of the claim's margin? **Size**: is it as large as the paper's figure (only where "
        f"the paper gives a number)? Each question is a two-sided {TESTS[test].name} of its null value (the "
        f"margin, or the paper's figure) at level {LEVEL:g}, with Holm's correction over the densities the claim "
        f"is checked at; a `within` claim is inside its band when two one-sided tests at {half} each reject the "
        f"band's edges. **{HOLDS}**: rejected, the effect on the claimed side (for the size: beyond the paper's "
        f"figure); **{CONTRADICTED}**: rejected, on the other side (for the size: short of the paper's figure); "
        f"**{NO_DIFFERENCE}**: not rejected (for the size: consistent with the paper's figure); **{TOO_FEW}**: "
        "the test cannot reach the level with this many seeds (it says how many it needs); "
        f"**{CENSORED}**: a side read at its early-stopping step stopped at its round's last validation on some "
        "seed (still improving when the budget ended: a step is then a bound, printed with >= or <=, and an "
        f"accuracy no measurement); **{NOT_MEASURED}**: a series or the density (within 5% of it) is missing. "
        f"The estimate is the mean over the seeds with its {CONFIDENCE:.0%} t interval (for a ratio, geometric), "
        "not corrected for the family. `outside` marks a finding computed outside the paper's setting (what "
        "differs is listed under the table)."
    )


def _number(value: float, claim: Claim, signed: bool = True) -> str:
    if claim.compare == "ratio":
        return f"{value:.2f}x"
    text = f"{value:.0f}" if {s.partition(".")[2] for s in claim.series()} == {"early_step"} else f"{value:.2f}"
    return f"+{text}" if signed and claim.compare == "difference" and value >= 0 else text


def _compared(claim: Claim) -> str:
    operator = {"difference": " - ", "ratio": " / "}.get(claim.compare, "")
    value = claim.a if claim.b is None else f"{claim.a}{operator}{claim.b}"
    where = ""
    if claim.a_where:
        ones = ", ".join(f"{k}={v}" for k, v in claim.a_where.items())
        others = ", ".join(f"{k}={v}" for k, v in claim.b_where.items())
        where = f" ({ones} vs {others})"
    if claim.claimed == "within":
        return f"abs({value}) < {claim.margin:g}{where}"
    return f"{value} {'>' if claim.claimed == 'above' else '<'} {claim.margin:g}{where}"


def _figure(claim: Claim) -> str:
    if claim.figure is None:
        return "- (see below)" if claim.claimed != "within" else "- (the band)"
    return _number(claim.figure, claim)


def _estimate(finding: Finding) -> str:
    est: Estimate | None = finding.estimate
    if est is None:
        return "-"
    mean = _number(est.mean, finding.claim)
    if finding.side.verdict == CENSORED:
        return {"lower": f">= {mean}", "upper": f"<= {mean}"}.get(finding.bound, f"{mean} (not a measurement)")
    if math.isnan(est.low):
        return mean
    return f"{mean} [{_number(est.low, finding.claim, False)}, {_number(est.high, finding.claim, False)}]"


def _answer(answer: Answer | None, finding: Finding, why: bool = True) -> str:
    if answer is None:
        return "-"
    if answer.verdict == TOO_FEW:
        return f"{TOO_FEW} (needs {answer.needed or 'more'})"
    if answer.verdict in (CENSORED, NOT_MEASURED):
        return f"{answer.verdict} ({finding.why})" if finding.why and why else answer.verdict
    return f"{answer.verdict} (p = {answer.adjusted:.2g})"


def _range(weights: list[float], every: list[float]) -> str:
    """Where a verdict came up, among the densities a claim was checked at (sorted densest first)."""
    if len(weights) == len(every):
        return "at every density" if len(every) > 1 else f"at {every[0]:.1f}%"
    if len(weights) > 1 and weights == every[len(every) - len(weights) :]:
        return f"from {weights[0]:.1f}% down"
    return "at " + ", ".join(f"{w:.1f}%" for w in weights)


def _summary(findings: list[Finding], question: str) -> str:
    answers = [(f.weights or 0.0, getattr(f, question)) for f in findings]
    answers = [(w, a) for w, a in answers if a is not None]
    if not answers:
        return ""
    every = [w for w, _ in answers]
    parts = []
    for verdict in VERDICTS:
        weights = [w for w, a in answers if a.verdict == verdict]
        if weights:
            parts.append(
                f"{verdict} {_range(weights, every)}"
                + (f" ({len(weights)} of {len(every)})" if 1 < len(weights) < len(every) else "")
            )
    return f"{question}: " + "; ".join(parts)


def summary_lines(findings: Sequence[Finding]) -> list[str]:
    """One line per claim and experiment: where each verdict came up, for the side and the size questions."""
    groups: dict[tuple[str, str], list[Finding]] = {}
    for f in findings:
        groups.setdefault((f.claim.id, f.experiment), []).append(f)
    lines = []
    for (claim, experiment), group in groups.items():
        if group[0].round is None:
            lines.append(f"- `{claim}` on {experiment}: {group[0].verdict} ({group[0].why})")
            continue
        group = sorted(group, key=lambda f: -(f.weights or 0.0))
        said = [s for s in (_summary(group, "side"), _summary(group, "size")) if s]
        lines.append(f"- `{claim}` on {experiment}: " + "; ".join(said))
    return lines


def _outside_notes(findings: Sequence[Finding]) -> list[str]:
    notes = {f.experiment: f.outside for f in findings if f.outside}
    return [f"- `{experiment}`: " + "; ".join(outside) for experiment, outside in notes.items()]


def claims_markdown(paper: Paper, findings: Sequence[Finding], test: str = "t", with_rule: bool = True) -> str:
    """A paper's claims (each with the paper's figure), its setting, the rule (unless ``with_rule`` is false: a
    report prints it once), a summary line per claim and experiment, then every density's finding."""
    claims = [[f"`{c.id}`", c.says, c.paper, c.source, f"`{_compared(c)}`", _figure(c)] for c in paper.claims]
    notes = [f"- `{c.id}`: {c.note}" for c in paper.claims if c.note]
    parts = [f"### Claims of {paper.title}", "", f"The paper's setting: {paper.setting}", ""]
    if paper.protocol:
        setting = "; ".join(f"{c.what} (`{c.key}`)" for c in paper.protocol)
        parts += [f"Checked on each run's recorded config: {setting}.", ""]
    header = ["claim", "says", "the paper", "where", "side, per seed", "size: the paper's figure"]
    parts += [*markdown_table(header, claims), ""]
    if notes:
        parts += ["How we restate them:", "", *notes, ""]
    rows = [
        [
            f"`{f.claim.id}`",
            f.experiment,
            "-" if f.weights is None else f"{f.weights:.1f}%",
            str(len(f.values)),
            _estimate(f),
            _answer(f.side, f),
            _answer(f.size, f, why=False),
            "outside" if f.outside else "the paper's",
        ]
        for f in findings
    ]
    header = ["claim", "experiment", "weights left", "seeds", "estimate [95% CI]", "side", "size", "setting"]
    parts += [rule(test), ""] if with_rule else []
    parts += ["In short:", "", *summary_lines(findings), ""]
    parts += markdown_table(header, rows)
    outside = _outside_notes(findings)
    if outside:
        parts += ["", "Outside the paper's setting:", "", *outside]
    counts = {v: sum(f.verdict == v for f in findings) for v in VERDICTS}
    tally = ", ".join(f"{v} {n}" for v, n in counts.items() if n)
    return "\n".join([*parts, "", f"Side verdicts: {tally}."]) + "\n"


def claims_csv(paper: Paper, findings: Sequence[Finding]) -> str:
    """One row per finding: the claim, experiment and round, the estimate, and each question's answer."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    header = [
        "paper",
        "claim",
        "experiment",
        "round",
        "weights",
        "mean",
        "low",
        "high",
        "seeds",
        "verdict",
        "p",
        "p_holm",
        "size_verdict",
        "size_p_holm",
        "figure",
        "bound",
        "outside",
        "why",
    ]
    writer.writerow(header)
    for f in findings:
        est = f.estimate
        numbers = ["", "", "", len(f.values)] if est is None else [est.mean, est.low, est.high, est.n]
        size = f.size or Answer("", math.nan)
        writer.writerow(
            [
                paper.name,
                f.claim.id,
                f.experiment,
                f.round,
                f.weights,
                *numbers,
                f.verdict,
                f.side.p,
                f.side.adjusted,
                size.verdict,
                size.adjusted,
                f.claim.figure,
                f.bound,
                "; ".join(f.outside),
                f.why,
            ]
        )
    return buffer.getvalue()
