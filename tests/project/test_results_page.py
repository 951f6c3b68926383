"""The results page is `lth report`'s output for the folders in results/: a changed number or verdict shows."""

import pytest
from results_page import PAGE, REPO, blocks, printed, rule_block, rule_now


def test_every_results_folder_is_reported_on_the_page():
    saved = sorted(p.name for p in (REPO / "results").iterdir() if p.is_dir())
    reported = {folder.removeprefix("results/") for args, _ in blocks(PAGE.read_text()) for folder in args}
    assert saved and set(saved) <= reported


@pytest.mark.parametrize(
    "args, body", blocks(PAGE.read_text()), ids=lambda v: " ".join(v) if isinstance(v, list) else ""
)
def test_each_block_is_what_lth_report_prints_now(args, body):
    assert body == printed(args), (
        f"docs/results.md is stale for `lth report {' '.join(args)}`: run tests/project/results_page.py"
    )


def test_the_page_states_the_rule_the_code_applies_once():
    text = PAGE.read_text()
    assert rule_block(text) == rule_now(), "docs/results.md's rule is stale: run tests/project/results_page.py"
    assert text.count("Verdict rule:") == 1  # the report blocks leave it out


def test_the_notebooks_experiment_is_among_the_results_with_five_seeds_and_both_controls():
    from lth_lightning.report.readout import read_experiment

    experiment = read_experiment(REPO / "results" / "fashion_mnist_mlp")
    assert sorted(experiment.seeds) == [0, 1, 2, 3, 4]
    assert experiment.setting("model.init_args.net.init_args.sizes") == [784, 256, 128, 32, 10]
    assert experiment.setting("data.class_path") == "lth_lightning.FashionMNISTDataModule"
    assert experiment.setting("lottery.controls") == ["random_reinit", "random_prune"]
    assert len([p for p in (REPO / "results").iterdir() if p.is_dir()]) >= 4
