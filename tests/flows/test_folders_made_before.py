"""A folder recorded before the experiment layer was reorganized (issue 39) is the same experiment today: found
under its name, its finished rounds read back (never retrained), and continued in place.

``tests/golden/made_before_issue_39/`` was written by commit 2314624 (before the reorganization) with the
call below: the MLP 784-8-10 on the tiny data, two rounds with the random-reinit control (its TensorBoard runs
left out of the copy)."""

from __future__ import annotations

import json
import shutil

from conftest import REPO, tiny_experiment

from lth_lightning.experiment.record.paths import ExperimentPaths

BEFORE = REPO / "tests" / "golden" / "made_before_issue_39"


def _run(tiny_data, out, rounds):
    return tiny_experiment(tiny_data, out, rounds=rounds, sizes=(784, 8, 10), controls=["random_reinit"], report=False)


def test_a_folder_recorded_before_the_reorganization_is_found_read_back_and_continued(tiny_data, tmp_path):
    (recorded,) = [p for p in BEFORE.iterdir() if p.is_dir()]
    shutil.copytree(recorded, tmp_path / recorded.name)
    run = ExperimentPaths(tmp_path / recorded.name).run(0)
    stamps = {p: p.stat().st_mtime_ns for p in run.root.rglob("*") if p.is_file()}
    before = json.loads(run.results.with_suffix(".json").read_text())

    rows = _run(tiny_data, tmp_path, rounds=2)
    assert rows.experiment_dir == tmp_path / recorded.name  # the same name: the same experiment
    assert [r.as_dict() for r in rows] == before  # read back as recorded
    assert all(p.stat().st_mtime_ns == stamp for p, stamp in stamps.items() if "round_" in p.parent.name)

    more = _run(tiny_data, tmp_path, rounds=3)
    assert more.experiment_dir == rows.experiment_dir and [r.round for r in more] == [0, 1, 2]
    assert [r.as_dict() for r in more][:2] == before and run.metrics(2).is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == [recorded.name]  # no second folder
