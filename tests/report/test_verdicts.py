"""The verdicts, on hand-made experiment folders: every outcome, both questions, censoring, the setting, the error
rate of a null effect (simulated), and the refusals."""

import math
import random
import statistics

import pytest
import scipy.stats
import yaml
from cli_helpers import lth_here
from report_folders import CONFIG, gap_experiment, in_memory, row, write_experiment

from lth_lightning.experiment.controls.registry import CONTROLS
from lth_lightning.experiment.record.paths import RunPaths
from lth_lightning.report.claims import load_paper
from lth_lightning.report.command import report_tables
from lth_lightning.report.papers import available_papers
from lth_lightning.report.stats import LEVEL
from lth_lightning.report.table import QUANTITIES
from lth_lightning.report.verdicts import check_claim, outside_setting

LENET = {  # a run of Frankle & Carbin's setting, as its config.yaml records it
    **CONFIG,
    "trainer": {"max_steps": 50000, "val_check_interval": 100},
    "model": {
        "class_path": "lth_lightning.LotteryClassifier",
        "init_args": {
            "lr": 0.0012,
            "optimizer": "adam",
            "net": {"init_args": {"sizes": [784, 300, 100, 10], "init": "glorot_normal"}},
        },
    },
    "data": {"class_path": "lth_lightning.MNISTDataModule", "init_args": {"batch_size": 60}},
    "lottery": {"amount": 0.2, "scope": "layerwise", "rates": {"net.layers.2.weight": 0.1}, "rewind_step": 0},
}


def _claim(paper, claim):
    return next(c for c in load_paper(paper, list(CONTROLS)).claims if c.id == claim)


def _finding(folder, paper="frankle2019", claim="above-random-prune", test="t"):
    return check_claim(_claim(paper, claim), report_tables([folder]), test=test)


def _at_density(percent, seeds):
    """Seeds' rows with a dense round and one round at ``percent`` of the weights: ``seeds[s]`` is a dict of that
    round's row keyword arguments (the ticket's early accuracy and step, controls' values)."""
    out = {}
    for seed, given in seeds.items():
        kw = dict(given)
        controls = kw.pop("controls", {})
        round_1 = row(1, percent / 100, 0.9, **kw)
        round_1["controls"] = controls
        dense = row(0, 1.0, 0.9, early=kw.get("dense", 0.9), step=kw.get("dense_step", 10), steps=kw.get("steps", 20))
        out[seed] = [dense, round_1]
        out[seed][1].pop("dense", None), out[seed][1].pop("dense_step", None)
    return out


@pytest.mark.parametrize(
    ("gaps", "expected"),
    [
        ([1.0, 2.0, 0.5, 1.5, 1.2], "holds"),  # every seed's ticket well above its random pruning
        ([-1.0, -0.5, -2.0, -1.5, -1.1], "contradicted"),  # well below
        ([1.0, -0.5, 0.3, -0.2, 0.1], "no difference detected"),  # the seeds disagree
        ([0.1, 0.1, 0.1, 0.1, 0.12], "holds"),  # small but consistent: the test, not the size, decides
    ],
)
def test_each_firm_and_null_verdict_follows_from_the_paired_t_test(tmp_path, gaps, expected):
    (finding,) = _finding(gap_experiment(tmp_path / "experiment", gaps))
    assert finding.verdict == expected and finding.round == 1 and finding.weights == pytest.approx(50.0)
    assert list(finding.values.values()) == pytest.approx(gaps)  # points, paired by seed
    t = statistics.fmean(gaps) / (statistics.stdev(gaps) / math.sqrt(len(gaps)))  # restated: Student's t
    assert finding.side.p == pytest.approx(2 * scipy.stats.t.sf(abs(t), len(gaps) - 1))
    assert finding.size is None  # the paper gives random pruning's gap no number


def test_too_few_seeds_says_how_many_the_test_needs_and_not_measured_says_what_is_missing(tmp_path):
    (one,) = _finding(gap_experiment(tmp_path / "one_seed", [1.0]))
    assert one.verdict == "too few seeds" and one.side.needed == 2
    (exact,) = _finding(gap_experiment(tmp_path / "five", [1.0, 2.0, 0.5, 1.5, 1.2]), test="wilcoxon")
    assert exact.verdict == "too few seeds" and exact.side.needed == 6  # 2 / 2^5 = 0.0625 > 0.05
    (missing,) = _finding(gap_experiment(tmp_path / "other_control", [1.0, 2.0], control="random_reinit"))
    assert missing.verdict == "not measured" and missing.why == "random_prune.early not in the runs"
    (density,) = _finding(gap_experiment(tmp_path / "half", [1.0, 2.0]), claim="above-dense")
    assert density.verdict == "not measured"
    assert density.why == "no round at 13.5% of the weights (rounds at 100.0%, 50.0%)"


def _null_family(rng, seeds=5, densities=15):
    """An experiment where the ticket and random pruning differ by noise alone at every one of 15 densities."""
    rows = {}
    for seed in range(seeds):
        rows[seed] = [row(0, 1.0, 0.9)]
        for r in range(1, densities + 1):
            gap = rng.gauss(0.0, 0.5) / 100
            rows[seed].append(row(r, 0.8**r, 0.9, {"random_prune": 0.9 - gap}))
    return in_memory(rows)


@pytest.mark.slow
def test_a_null_effect_over_15_densities_gives_firm_verdicts_at_most_at_the_stated_level():
    rng, families = random.Random(0), 600
    claim = _claim("frankle2019", "above-random-prune")
    firm = every_seed_rule = 0
    for _ in range(families):
        findings = check_claim(claim, [_null_family(rng)])
        assert len(findings) == 15
        firm += any(f.verdict in ("holds", "contradicted") for f in findings)
        # the rule before this one: firm where every seed is on one side (a sign test at 1/16 per density)
        every_seed_rule += any(len({v > 0 for v in f.values.values()}) == 1 for f in findings)
    assert firm / families <= LEVEL + 3 * math.sqrt(LEVEL * (1 - LEVEL) / families)  # 0.077
    assert every_seed_rule / families > 0.4  # 1 - (15/16)^15 = 0.62: what the page showed as verdicts


def test_a_real_effect_over_15_densities_holds_at_most_of_them():
    rng = random.Random(1)
    rows = {s: [row(0, 1.0, 0.9)] for s in range(5)}
    for seed in range(5):
        rows[seed] += [
            row(r, 0.8**r, 0.9, {"random_prune": 0.9 - (1.0 + rng.gauss(0, 0.2)) / 100}) for r in range(1, 16)
        ]
    findings = check_claim(_claim("frankle2019", "above-random-prune"), [in_memory(rows)])
    assert sum(f.verdict == "holds" for f in findings) >= 14


def test_two_questions_the_side_and_the_papers_figure(tmp_path):
    # the per-seed values: above-dense at 13.5% (paper: more than +0.3), faster-than-reinit at 21.1% (2.51x)
    above_dense = [0.27, 0.27, 0.36, 0.62, 0.54]
    seeds = {
        s: {
            "early": (0.95 + gap / 100),
            "dense": 0.95,
            "step": 1000,
            "steps": 5000,
            "controls": {"random_reinit": {"test_acc": 0.9, "test_acc_at_best_val": 0.9, "best_val_step": steps}},
        }
        for s, (gap, steps) in enumerate(zip(above_dense, [1670, 2000, 2200, 2500, 1800], strict=True))
    }
    folder = write_experiment(tmp_path / "lenet", _at_density(13.5, seeds), LENET)
    (dense,) = _finding(folder, claim="above-dense")
    assert dense.side.verdict == "holds"  # above the dense network
    assert dense.size is not None and dense.size.null == 0.3
    assert dense.size.verdict == "no difference detected"  # consistent with the paper's +0.3, not shown beyond it
    assert dense.estimate.mean == pytest.approx(statistics.fmean(above_dense))
    folder = write_experiment(tmp_path / "lenet_21", _at_density(21.1, seeds), LENET)
    (faster,) = _finding(folder, claim="faster-than-reinit")
    assert faster.side.verdict == "holds"  # the ticket stops earlier than its reinitialization on every seed
    assert faster.size.verdict == "contradicted"  # 1.67x to 2.5x: short of the paper's 2.51x
    logs = [math.log(s / 1000) for s in (1670, 2000, 2200, 2500, 1800)]  # restated on the logarithm
    t = (statistics.fmean(logs) - math.log(2.51)) / (statistics.stdev(logs) / math.sqrt(5))
    assert faster.size.p == pytest.approx(2 * scipy.stats.t.sf(abs(t), 4))
    assert faster.estimate.mean == pytest.approx(math.exp(statistics.fmean(logs)))
    assert not dense.outside and not faster.outside  # the paper's setting, as recorded


def test_a_side_stopped_at_its_last_validation_is_censored_and_its_ratio_a_bound(tmp_path):
    def seeds(reinit_steps):
        return {
            s: {
                "early": 0.96,
                "step": 4,
                "controls": {"random_reinit": {"test_acc": 0.95, "test_acc_at_best_val": 0.95, "best_val_step": st}},
            }
            for s, st in enumerate(reinit_steps)
        }

    config = {**LENET, "trainer": {"max_steps": 20, "val_check_interval": 5}}  # rows train 20 steps
    folder = write_experiment(tmp_path / "censored", _at_density(21.1, seeds([10, 20, 15])), config)
    (faster,) = _finding(folder, claim="faster-than-reinit")
    assert faster.verdict == "censored" and faster.size.verdict == "censored"
    assert faster.bound == "lower" and "random_reinit on seed 1" in faster.why  # reinit's step would come later
    (above,) = _finding(folder, claim="above-reinit")  # an accuracy at a step still improving: no bound
    assert above.verdict == "censored" and above.bound == ""
    config = {**config, "trainer": {"max_steps": 20, "val_check_interval": 8}}  # last validation at 16
    folder = write_experiment(tmp_path / "every_8", _at_density(21.1, seeds([8, 16, 8])), config)
    (faster,) = _finding(folder, claim="faster-than-reinit")
    assert faster.verdict == "censored" and "seed 1" in faster.why
    folder = write_experiment(tmp_path / "measured", _at_density(21.1, seeds([10, 12, 15])), config)
    (faster,) = _finding(folder, claim="faster-than-reinit")
    assert faster.verdict != "censored" and faster.bound == ""


def test_a_verdict_outside_the_papers_setting_says_what_differs(tmp_path):
    mlp = {**LENET, "data": {"class_path": "lth_lightning.FashionMNISTDataModule", "init_args": {"batch_size": 128}}}
    folder = write_experiment(tmp_path / "mlp", {s: [row(0, 1.0, 0.9), row(1, 0.5, 0.9)] for s in (0, 1)}, mlp)
    (finding,) = check_claim(
        _claim("frankle2019", "above-random-prune"),
        report_tables([folder]),
        load_paper("frankle2019", list(CONTROLS)).protocol,
    )
    assert finding.outside == (
        "data.class_path = lth_lightning.FashionMNISTDataModule (the paper's data set MNIST: "
        "lth_lightning.MNISTDataModule)",
        "data.init_args.batch_size = 128 (the paper's batch 60: 60)",
    )


def test_a_claim_across_experiments_pairs_them_by_setting_and_seed(tmp_path):
    seeds = {s: [row(0, 1.0, 0.9), row(1, 0.5, 0.85 + s / 100)] for s in (0, 1, 2)}
    config = {**CONFIG, "lottery": {**CONFIG["lottery"], "retrain": "finetune"}}
    finetune = write_experiment(tmp_path / "finetune", seeds, config)
    better = {s: [row(0, 1.0, 0.9), row(1, 0.5, 0.87 + s / 100 + s / 10000)] for s in (0, 1, 2)}
    rewind = write_experiment(tmp_path / "rewind", better)
    (finding,) = check_claim(_claim("renda2020", "rewind-vs-finetune"), report_tables([finetune, rewind]))
    assert finding.experiment == "rewind vs finetune" and finding.verdict == "holds"
    assert finding.values == pytest.approx({0: 2.0, 1: 2.01, 2: 2.02})


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
    RunPaths(finished / "seed_1").round_dir(2).mkdir()  # a round that started and did not finish
    out, err = lth_here(capsys, "report", str(finished), "--save", str(save), code=2)
    assert "Round 2 of" in err and "is unfinished (round_02/ has no metrics.json)" in err and out == ""
    assert not save.exists()
    RunPaths(finished / "seed_1").round_dir(2).rmdir()
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


def test_the_shipped_lenet_config_is_inside_frankle_and_carbins_setting_and_the_mlp_is_not():
    from conftest import REPO

    from lth_lightning.report.readout import Experiment

    protocol = load_paper("frankle2019", list(CONTROLS)).protocol
    for name, outside in (("mnist_lenet300.yaml", 0), ("fashion_mnist_mlp.yaml", 8)):
        config = yaml.safe_load((REPO / "configs" / name).read_text())
        experiment = Experiment(name, REPO, config, None, {}, [])  # only its settings are read
        assert len(outside_setting(protocol, experiment)) == outside, outside_setting(protocol, experiment)
