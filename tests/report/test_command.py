"""`lth report` on a real multi-seed run: its numbers recomputed from the seeds' own results.csv."""

import csv
import io
import math
import shutil
import statistics
import subprocess
import sys

import pytest
import scipy.stats
from cli_helpers import lth_here, read_csv
from conftest import round_trainer, tiny_datamodule, two_seeds

from lth_lightning import MLP, LotteryClassifier, LotteryTicketCallback, run_seeds

pytestmark = pytest.mark.slow

SEEDS = (0, 1, 2)
CONTROLS = ["random_reinit", "random_prune", "random_prune:global", "snip", "snip:shuffled"]


@pytest.fixture(scope="module")
def experiment(tmp_path_factory, tiny_data):
    runs = run_seeds(
        lambda: LotteryClassifier(net=MLP((784, 24, 10)), lr=0.01),
        tiny_datamodule(tiny_data),
        seeds=list(SEEDS),
        rounds=3,
        lottery=LotteryTicketCallback(amount=0.5, verbose=False),
        trainer=round_trainer(max_epochs=2, val_check_interval=2),
        out_dir=tmp_path_factory.mktemp("report"),
        controls=CONTROLS,
        instability=True,
        progress=False,
    )
    return runs.experiment_dir


def _recomputed(folder, column, scale):
    """By round: (mean, min, max) of a results.csv column over the seeds, read with the csv module."""
    per_seed = [read_csv(folder / f"seed_{s}" / "results.csv") for s in SEEDS]
    out = {}
    for r in range(len(per_seed[0])):
        values = [scale * float(rows[r][column]) for rows in per_seed if rows[r].get(column, "") != ""]
        if values:
            out[r] = (statistics.fmean(values), min(values), max(values))
    return out


SERIES = {  # report series -> (results.csv column, scale)
    "ticket.final": ("test_acc", 100),
    "ticket.early": ("test_acc_at_best_val", 100),
    "ticket.early_step": ("best_val_step", 1),
    "ticket.instability": ("instability", 100),
    **{f"{c}.final": (f"{c}_test_acc", 100) for c in CONTROLS},
    **{f"{c}.early_step": (f"{c}_best_val_step", 1) for c in CONTROLS},
}


def test_the_reports_numbers_are_the_seeds_own(experiment, capsys):
    out, _ = lth_here(capsys, "report", str(experiment), "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [int(r["round"]) for r in rows] == [0, 1, 2] and {r["experiment"] for r in rows} == {experiment.name}
    for series, (column, scale) in SERIES.items():
        expected = _recomputed(experiment, column, scale)
        assert expected, series
        for r, (mean, low, high) in expected.items():
            got = [float(rows[r][f"{series}_{k}"]) for k in ("mean", "min", "max")]
            assert got == pytest.approx([mean, low, high], abs=1e-9), (series, r)
            assert rows[r][f"{series}_seeds"] == str(len(SEEDS))
        assert all(rows[r].get(f"{series}_mean", "") == "" for r in range(3) if r not in expected)
    per_seed = [read_csv(experiment / f"seed_{s}" / "results.csv") for s in SEEDS]
    gaps = [100 * (float(p[2]["test_acc"]) - float(p[2]["snip_test_acc"])) for p in per_seed]  # paired by seed
    assert float(rows[2]["gap.snip_mean"]) == pytest.approx(statistics.fmean(gaps))
    assert float(rows[2]["gap.snip_min"]) == pytest.approx(min(gaps))


def test_the_markdown_table_shows_each_round_as_mean_min_max(experiment, capsys):
    out, _ = lth_here(capsys, "report", str(experiment))
    mean, low, high = _recomputed(experiment, "test_acc", 100)[1]
    weights = 100 * float(read_csv(experiment / "seed_0" / "results.csv")[1]["density"])
    assert f"| 1 | {weights:.1f}% | {mean:.2f} [{low:.2f}, {high:.2f}] |" in out
    for title in ("| instability |", "Controls, early-stopping step:", "Gap to the ticket"):
        assert title in out
    assert out.count("| 0 (dense) |") >= 2 and "snip:shuffled" in out


def test_lth_aggregate_of_seeds_run_as_separate_jobs_prints_the_reports_tables(experiment, tmp_path, capsys):
    jobs = []
    for s in SEEDS:  # each seed's run where its own job left it
        job = tmp_path / f"job_{s}" / experiment.name / f"seed_{s}"
        shutil.copytree(experiment / f"seed_{s}", job)
        jobs.append(str(job))
    out, _ = lth_here(capsys, "aggregate", *jobs, "--out", str(tmp_path / "together"))
    mean, low, high = _recomputed(experiment, "test_acc", 100)[2]  # the seeds' own results.csv
    weights = 100 * float(read_csv(experiment / "seed_0" / "results.csv")[2]["density"])
    assert f"| 2 | {weights:.1f}% | {mean:.2f} [{low:.2f}, {high:.2f}] |" in out
    assert "Gap to the ticket" in out and out.strip().endswith(f"into {(tmp_path / 'together').resolve()}")
    report, _ = lth_here(capsys, "report", str(experiment))
    tables = out[out.index("| round |") : out.index("\nAggregated")]  # the same tables, under the --out folder's name
    assert tables.strip() == report[report.index("| round |") :].strip()


def test_claims_are_checked_on_the_seeds_paired_values(experiment, capsys):
    out, _ = lth_here(capsys, "report", str(experiment), "--claims", "frankle2021", "--format", "csv")
    claims = list(csv.DictReader(io.StringIO(out.split("\n\n")[1])))
    per_seed = [read_csv(experiment / f"seed_{s}" / "results.csv") for s in SEEDS]
    shuffle = [c for c in claims if c["claim"] == "snip-shuffle-as-good"]
    assert [int(c["round"]) for c in shuffle] == [1, 2]
    raw = []
    for finding in shuffle:
        r = int(finding["round"])
        values = [100 * (float(p[r]["snip:shuffled_test_acc"]) - float(p[r]["snip_test_acc"])) for p in per_seed]
        assert float(finding["mean"]) == pytest.approx(statistics.fmean(values))
        spread = statistics.stdev(values)  # restated: a two-sided t-test of the loss against the half-point margin
        t = (statistics.fmean(values) + 0.5) / (spread / math.sqrt(len(values))) if spread else math.inf
        raw.append(2 * scipy.stats.t.sf(abs(t), len(values) - 1))
        assert float(finding["p"]) == pytest.approx(raw[-1])
    holm = sorted(raw)[0] * 2, max(sorted(raw)[0] * 2, sorted(raw)[1])  # Holm over the claim's two densities
    for finding, p in zip(shuffle, raw, strict=True):
        adjusted = min(1.0, holm[0] if p == min(raw) else holm[1])
        assert float(finding["p_holm"]) == pytest.approx(adjusted)
        expected = (
            "no difference detected"
            if adjusted > 0.05
            else "holds"
            if float(finding["mean"]) > -0.5
            else "contradicted"
        )
        assert finding["verdict"] == expected
    grasp = [c for c in claims if c["claim"].startswith("grasp")]
    assert {c["verdict"] for c in grasp} == {"not measured"} and "grasp.final not in the runs" in grasp[0]["why"]


def test_report_imports_no_lightning(experiment):
    code = (
        "import sys; from lth_lightning.cli.commands import main; "
        f"main(['report', {str(experiment)!r}, '--claims', 'frankle2019', 'frankle2020']); "
        "assert not [m for m in sys.modules if m.startswith(('lightning', 'pytorch_lightning'))], 'Lightning imported'"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "### Claims of Frankle & Carbin 2019" in result.stdout


def test_a_saved_copy_reports_the_same_and_keeps_no_weights(experiment, tmp_path, capsys):
    saved = tmp_path / "results" / experiment.name
    original, _ = lth_here(capsys, "report", str(experiment), "--save", str(saved), "--claims", "frankle2020")
    copy, _ = lth_here(capsys, "report", str(saved), "--claims", "frankle2020")
    assert copy == original
    files = sorted(str(p.relative_to(saved)) for p in saved.rglob("*") if p.is_file())
    kept = ("config.yaml", "run.yaml", "results.json", "results.csv")
    assert files == ["experiment.yaml", *sorted(f"seed_{s}/{name}" for s in SEEDS for name in kept)]
    assert sum((saved / f).stat().st_size for f in files) < 200_000
    lth_here(capsys, "report", str(experiment), "--save", str(saved))  # saving again replaces the copy
    assert sorted(str(p.relative_to(saved)) for p in saved.rglob("*") if p.is_file()) == files


def test_run_seeds_ends_with_the_reports_table_and_rows_print_short(tmp_path, tiny_data, capsys):
    runs = two_seeds(tiny_data, tmp_path, progress=True)
    out = capsys.readouterr().out
    report, _ = lth_here(capsys, "report", str(runs.experiment_dir))
    assert report.strip() in out and f"Run folder: {runs.experiment_dir.resolve()}" in out  # one code path
    row = runs.runs[0][1]
    assert repr(row).startswith("RoundResult(round=1, weights=50.00%, ") and "controls=[random_prune])" in repr(row)
    assert f"test_acc={row.metrics['test_acc']:.4f}" in repr(row) and "val_loss" not in repr(row)
    assert len(repr(row)) < 200
