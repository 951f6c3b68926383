"""The verdict rule, on hand-made experiment folders: each of the four outcomes, and the refusals."""

import pytest
from cli_helpers import lth_here
from report_folders import CONFIG, gap_experiment, row, write_experiment

from lth_lightning.experiment.controls import CONTROLS
from lth_lightning.report.claims import VERDICTS, check_claim, load_paper, verdict
from lth_lightning.report.command import report_tables
from lth_lightning.report.papers import available_papers
from lth_lightning.report.table import QUANTITIES


def _finding(folder, paper="frankle2019", claim="above-random-prune"):
    (found,) = [c for c in load_paper(paper, list(CONTROLS)).claims if c.id == claim]
    return check_claim(found, report_tables([folder]))


@pytest.mark.parametrize(
    ("gaps", "expected"),
    [
        ([1.0, 2.0, 0.5], "holds"),  # every seed's ticket above its random pruning
        ([-1.0, -0.5, -2.0], "contradicted"),  # every seed's below
        ([1.0, -0.5, 0.3], "within spread"),  # the seeds disagree
        ([0.0, 1.0, 2.0], "within spread"),  # one seed exactly on the margin is on neither side
    ],
)
def test_each_verdict_follows_from_the_seeds_differences(tmp_path, gaps, expected):
    (finding,) = _finding(gap_experiment(tmp_path / "experiment", gaps))
    assert finding.verdict == expected and finding.round == 1 and finding.weights == pytest.approx(50.0)
    assert list(finding.values.values()) == pytest.approx(gaps)  # points, paired by seed


def test_not_measured_without_the_series_the_density_or_a_second_seed(tmp_path):
    (missing,) = _finding(gap_experiment(tmp_path / "other_control", [1.0, 2.0], control="random_reinit"))
    assert missing.verdict == "not measured" and missing.why == "random_prune.early not in the runs"
    (one_seed,) = _finding(gap_experiment(tmp_path / "one_seed", [1.0]))
    assert one_seed.verdict == "not measured" and "the rule needs at least 2" in one_seed.why
    (density,) = _finding(gap_experiment(tmp_path / "half", [1.0, 2.0]), claim="above-dense")
    assert density.verdict == "not measured"
    assert density.why == "no round at 13.5% of the weights (rounds at 100.0%, 50.0%)"


def test_the_rule_by_hand():
    assert verdict({0: 0.1, 1: 0.2}, "above", 0.0) == "holds"
    assert verdict({0: 0.1, 1: 0.2}, "above", 0.15) == "within spread"
    assert verdict({0: 0.1, 1: 0.2}, "below", 0.0) == "contradicted"
    assert verdict({0: 0.4, 1: -0.4}, "within", 0.5) == "holds"
    assert verdict({0: 0.6, 1: -0.7}, "within", 0.5) == "contradicted"
    assert verdict({0: 1.0}, "above", 0.0) == "not measured"
    assert set(VERDICTS) == {"holds", "contradicted", "within spread", "not measured"}


def test_a_claim_across_experiments_pairs_them_by_setting_and_seed(tmp_path):
    seeds = {s: [row(0, 1.0, 0.9), row(1, 0.5, 0.85 + s / 100)] for s in (0, 1)}
    config = {**CONFIG, "lottery": {**CONFIG["lottery"], "retrain": "finetune"}}
    finetune = write_experiment(tmp_path / "finetune", seeds, config)
    better = {s: [row(0, 1.0, 0.9), row(1, 0.5, 0.87 + s / 100)] for s in (0, 1)}
    rewind = write_experiment(tmp_path / "rewind", better)
    (finding,) = check_claim(
        next(c for c in load_paper("renda2020", list(CONTROLS)).claims if c.id == "rewind-vs-finetune"),
        report_tables([finetune, rewind]),
    )
    assert finding.experiment == "rewind vs finetune" and finding.verdict == "holds"
    assert finding.values == pytest.approx({0: 2.0, 1: 2.0})


@pytest.mark.parametrize("name", available_papers())
def test_every_claims_file_parses_names_existing_series_and_its_source(name):
    paper = load_paper(name, list(CONTROLS))
    assert paper.title and paper.setting and paper.claims
    for claim in paper.claims:
        assert any(word in claim.source for word in ("Section", "Figure", "Table", "Abstract")), claim.id
        assert claim.paper and claim.says
        for series in claim.series():
            source, _, quantity = series.partition(".")
            assert source in ("ticket", "dense", *CONTROLS) and quantity in QUANTITIES, series


def test_frankle2021_checks_each_method_against_its_layerwise_shuffle():
    claims = {c.id: c for c in load_paper("frankle2021", list(CONTROLS)).claims}
    for method in ("snip", "grasp", "synflow", "magnitude_init"):
        shuffle = claims[f"{method}-shuffle-as-good"]
        assert (shuffle.a, shuffle.b) == (f"{method}:shuffled.final", f"{method}.final")


def test_bad_input_exits_2_with_nothing_written(tmp_path, capsys):
    finished = gap_experiment(tmp_path / "finished", [1.0, 2.0])
    save = tmp_path / "saved"
    _, err = lth_here(capsys, "report", str(tmp_path / "missing"), "--save", str(save), code=2)
    assert "does not exist or is not a folder" in err
    _, err = lth_here(capsys, "report", str(tmp_path), "--save", str(save), code=2)
    assert f"{tmp_path} is not an experiment folder" in err
    _, err = lth_here(capsys, "report", str(finished), "--claims", "frankle2018", "--save", str(save), code=2)
    assert "Unknown claims 'frankle2018'; choose from frankle2019, frankle2020, frankle2021, renda2020" in err
    (finished / "seed_1" / "round_02").mkdir()  # a round that started and did not finish
    out, err = lth_here(capsys, "report", str(finished), "--save", str(save), code=2)
    assert "Round 2 of" in err and "is unfinished (round_02/ has no metrics.json)" in err and out == ""
    assert not save.exists()
    (finished / "seed_1" / "round_02").rmdir()
    rows = {0: [row(0, 1.0, 0.8), row(1, 0.5, 0.8)], 1: [row(0, 1.0, 0.8)]}
    uneven = write_experiment(tmp_path / "uneven", rows)
    _, err = lth_here(capsys, "report", str(uneven), code=2)
    assert "Round 1 of seed 1 in" in err and "is unfinished" in err
    _, err = lth_here(capsys, "report", str(finished), "--save", str(save), str(tmp_path / "two"), code=2)
    assert "--save takes one folder per experiment: 2 for 1 folders" in err
    other = write_experiment(tmp_path / "other", {0: [row(0, 1.0, 0.8)]}, {**CONFIG, "lottery": {"amount": 0.2}})
    lth_here(capsys, "report", str(other), "--save", str(save))
    _, err = lth_here(capsys, "report", str(finished), "--save", str(save), code=2)
    assert f"{save} holds another experiment than {finished}" in err and "lottery.amount" in err
    assert sorted(p.name for p in save.iterdir()) == ["seed_0"]  # the earlier copy is whole
