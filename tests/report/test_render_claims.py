"""The claims' text: one summary line per claim and experiment, the rule from the code's constants, bounds."""

import random

from report_folders import in_memory, row

from lth_lightning.experiment.controls.registry import CONTROLS
from lth_lightning.report.claims import load_paper
from lth_lightning.report.render_claims import claims_markdown, rule, summary_lines
from lth_lightning.report.stats import LEVEL
from lth_lightning.report.verdicts import check_paper


def test_a_claim_over_15_densities_gets_one_line_saying_where_each_verdict_came_up():
    rng = random.Random(2)
    rows = {s: [row(0, 1.0, 0.9)] for s in range(5)}
    for seed in range(5):  # no effect at the two densest rounds, one point from the third on
        for r in range(1, 16):
            gap = (0.0 if r <= 2 else 1.0) + rng.gauss(0, 0.1)
            rows[seed].append(row(r, 0.8**r, 0.9, {"random_prune": 0.9 - gap / 100}))
    paper = load_paper("frankle2019", list(CONTROLS))
    findings = [f for f in check_paper(paper, [in_memory(rows)]) if f.claim.id == "above-random-prune"]
    (line,) = summary_lines(findings)
    assert line == (
        "- `above-random-prune` on simulated: side: holds from 51.2% down (13 of 15); "
        "no difference detected at 80.0%, 64.0% (2 of 15)"
    )
    text = claims_markdown(paper, findings)
    assert line in text and text.count("Verdict rule:") == 1
    assert "`above-random-prune`: the paper shows random pruning below the ticket" in text  # why no figure


def test_the_rule_states_the_level_and_the_test_the_code_uses():
    assert f"at level {LEVEL:g}" in rule() and "paired t-test" in rule() and "Holm" in rule()
    assert "signed-rank" in rule("wilcoxon")
