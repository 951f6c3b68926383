"""``lth report``: read the folders, check everything, then print (and, with ``--save``, keep) the report.

Every input is checked before anything is written: unknown claims, a folder that is not an
experiment, an unfinished round or a ``--save`` folder holding another experiment stop the
command with nothing written.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from lth_lightning.experiment.controls.registry import CONTROLS
from lth_lightning.experiment.record.paths import RunPaths
from lth_lightning.report.claims import Paper, load_paper
from lth_lightning.report.papers import available_papers
from lth_lightning.report.readout import read_experiment, read_runs
from lth_lightning.report.render import (
    experiment_markdown,
    report_csv,
    report_markdown,
    side_by_side,
)
from lth_lightning.report.render_claims import claims_csv, claims_markdown
from lth_lightning.report.save import check_destination, save_results
from lth_lightning.report.stats import TESTS
from lth_lightning.report.table import ExperimentTable, build_table
from lth_lightning.report.verdicts import Finding, check_paper

__all__ = ["check_papers", "claims_list", "closing_summary", "comparison_table", "report", "report_tables"]


def claims_list() -> str:
    """Every paper ``--claims`` knows, with its claims: what ``lth report --claims list`` prints."""
    lines = []
    for name in available_papers():
        paper = load_paper(name, list(CONTROLS))
        lines += [f"{name}: {paper.title}", f"  setting: {paper.setting}"]
        lines += [f"  - {c.id} ({c.source}): {c.says}; the paper: {c.paper}" for c in paper.claims]
    return "\n".join(lines) + "\n"


def check_papers(names: Sequence[str]) -> list[Paper]:
    """The papers named, each read and checked.

    Raises:
        ValueError: If a name is not a claims file (the message lists them).
    """
    return [load_paper(name, list(CONTROLS)) for name in dict.fromkeys(names)]


def report_tables(folders: Sequence[str | Path]) -> list[ExperimentTable]:
    """Each folder's experiment, read and tabulated (see :func:`~.readout.read_experiment` for what is refused)."""
    return [build_table(read_experiment(folder)) for folder in folders]


def closing_summary(folder: str | Path, runs: Sequence[RunPaths] | None = None) -> str:
    """What ``lth fit``, ``run_lottery``, ``run_seeds`` and ``lth aggregate`` print when they finish: ``lth report``'s
    tables of the experiment (or run) in ``folder``, or of its seeds' ``runs`` where they are elsewhere, from the
    same code."""
    experiment = read_experiment(folder) if runs is None else read_runs(runs, folder)
    return experiment_markdown(build_table(experiment))


def comparison_table(folders: Sequence[str | Path], labels: Sequence[str]) -> str:
    """What ``lth compare`` prints: the report's side-by-side table of the experiments' tickets, by label."""
    return side_by_side(report_tables(folders), labels) + "\n"


def _findings(
    papers: Sequence[Paper], tables: Sequence[ExperimentTable], test: str
) -> list[tuple[Paper, list[Finding]]]:
    return [(paper, check_paper(paper, tables, test)) for paper in papers]


def report(
    folders: Sequence[str | Path],
    format: str = "md",
    claims: Sequence[str] = (),
    save: Sequence[str | Path] | None = None,
    test: str = "t",
    rule: bool = True,
) -> str:
    """The report of the experiments in ``folders``: tables, then each paper's claims checked on them.

    Args:
        folders: Experiment folders (or single runs).
        format: ``md`` (Markdown tables) or ``csv`` (the series' CSV; with claims, their findings' CSV after a
            blank line).
        claims: Names of the papers whose claims to check.
        save: One folder per experiment where to keep what the report needs (``results/<name>``).
        test: The test behind the verdicts (:data:`~.stats.TESTS`): ``t`` (paired t-test) or ``wilcoxon``.
        rule: Whether the Markdown states the verdict rule (once, before the first paper's verdicts); a page that
            states it once for several reports leaves it out.

    Raises:
        ValueError: On unknown claims, a folder that is not a finished experiment, a ``save`` folder
            holding another experiment, a ``format`` other than md and csv, or an unknown ``test``; nothing is
            written then.
    """
    if format not in ("md", "csv"):
        raise ValueError(f"`format` must be 'md' or 'csv', got {format!r}.")
    if test not in TESTS:
        raise ValueError(f"`test` must be one of {', '.join(TESTS)}, got {test!r}.")
    papers = check_papers(claims)
    tables = report_tables(folders)
    if save is not None:
        if len(save) != len(folders):
            raise ValueError(f"`save` takes one folder per experiment: {len(save)} for {len(folders)} folders.")
        for table, destination in zip(tables, save, strict=True):
            check_destination(table.experiment, Path(destination))
        for table, destination in zip(tables, save, strict=True):
            save_results(table.experiment, destination)
    found = _findings(papers, tables, test)
    if format == "csv":
        parts = [report_csv(tables), *(claims_csv(paper, findings) for paper, findings in found)]
        return "\n".join(parts)
    return "\n".join(
        [
            report_markdown(tables),
            *(
                claims_markdown(paper, findings, test, with_rule=rule and i == 0)
                for i, (paper, findings) in enumerate(found)
            ),
        ]
    )
