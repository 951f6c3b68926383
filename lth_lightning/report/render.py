"""The report as text: Markdown tables (mean [min, max] over the seeds) or CSV (one column per number)."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Sequence

from lth_lightning.report.readout import Experiment
from lth_lightning.report.table import (
    TICKET,
    ExperimentTable,
    Summary,
    apart,
    is_percent,
    summarize,
)

__all__ = [
    "budget",
    "cell",
    "experiment_markdown",
    "markdown_table",
    "report_csv",
    "report_markdown",
    "side_by_side",
]


def _number(value: float, quantity: str) -> str:
    return f"{value:.0f}" if quantity == "early_step" else f"{value:.2f}"


def cell(summary: Summary | None, quantity: str, *, signed: bool = False, bold: bool = False) -> str:
    """``mean [min, max]``, ``-`` when not measured; signed for a difference; bold where marked."""
    if summary is None:
        return "-"
    mean = _number(summary.mean, quantity)
    if signed and summary.mean >= 0:
        mean = f"+{mean}"
    text = (
        mean if summary.seeds == 1 else f"{mean} [{_number(summary.low, quantity)}, {_number(summary.high, quantity)}]"
    )
    return f"**{text}**" if bold else text


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """A Markdown table's lines: the header, its rule, then one line per row."""
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def _round_label(round: int) -> str:
    return "0 (dense)" if round == 0 else str(round)


def _round_rows(table: ExperimentTable, cells: Callable[[int], list[str]]) -> list[list[str]]:
    """A row per round: its label, its weights left, then ``cells(round)``."""
    return [[_round_label(r), f"{table.weights(r):.1f}%", *cells(r)] for r in table.rounds]


def _series_cells(table: ExperimentTable, columns: Sequence[tuple[str, str]]) -> Callable[[int], list[str]]:
    """The cells of ``(series, quantity)`` columns at a round: mean [min, max] over the seeds."""
    return lambda r: [cell(summarize(table.series(name, r)), quantity) for name, quantity in columns]


def _series_table(table: ExperimentTable, sources: Sequence[str], quantity: str, titles: Sequence[str]) -> list[str]:
    columns = [(f"{source}.{quantity}", quantity) for source in sources]
    if not any(table.has(name) for name, _ in columns):
        return []
    return markdown_table(["round", "weights left", *titles], _round_rows(table, _series_cells(table, columns)))


TICKET_TITLES = {
    "final": "ticket: final",
    "early": "ticket: at early stop",
    "early_step": "early-stop step",
    "instability": "instability",
    "instability_train": "instability (train)",
}


def _ticket_table(table: ExperimentTable) -> list[str]:
    columns = [(f"{TICKET}.{q}", q) for q in TICKET_TITLES if table.has(f"{TICKET}.{q}")]
    titles = [TICKET_TITLES[q] for _, q in columns]
    return markdown_table(["round", "weights left", *titles], _round_rows(table, _series_cells(table, columns)))


def _gap_table(table: ExperimentTable) -> list[str]:
    """Each control's gap to the ticket (ticket - control, final), paired by seed; bold where the ranges are apart."""

    def cells(r: int) -> list[str]:
        ticket = summarize(table.series(f"{TICKET}.final", r))
        return [
            cell(
                summarize(table.gap(c, r)),
                "final",
                signed=True,
                bold=apart(ticket, summarize(table.series(f"{c}.final", r))),
            )
            for c in table.controls
        ]

    return markdown_table(["round", "weights left", *table.controls], _round_rows(table, cells))


def budget(experiment: Experiment) -> str:
    """A round's budget and its validation interval, as the run's config recorded them."""
    steps, epochs = experiment.setting("trainer.max_steps"), experiment.setting("trainer.max_epochs")
    if isinstance(steps, int) and steps > 0:
        length = f"{steps:,} steps a round"
    elif isinstance(epochs, int) and epochs > 0:
        length = f"{epochs} epoch{'s' * (epochs != 1)} a round"
    else:
        length = "budget not recorded"
    interval = experiment.setting("trainer.val_check_interval")
    if isinstance(interval, int) and not isinstance(interval, bool):
        every = f"validated every {interval:,} steps"
    elif isinstance(interval, float) and interval < 1:
        every = f"validated every {interval:g} of an epoch"
    else:
        every = "validated once an epoch"
    return f"{length}, {every}"


def _intro(table: ExperimentTable) -> str:
    experiment = table.experiment
    seeds = sorted(experiment.seeds)
    unit = "in percent" if is_percent(experiment.names) else "as logged"
    return (
        f"`{experiment.name}`: {len(seeds)} seed{'s' if len(seeds) > 1 else ''} ({', '.join(map(str, seeds))}); "
        f"{budget(experiment)}; {experiment.names.test} {unit}, instability in points of error; "
        "mean [min, max] over the seeds."
    )


def experiment_markdown(table: ExperimentTable) -> str:
    """One experiment's tables: the ticket, then each control's series, then each control's gap to the ticket."""
    test = table.experiment.names.test
    parts = [f"### {table.experiment.name}", "", _intro(table), "", *_ticket_table(table)]
    if table.controls:
        for quantity, title in (
            ("final", f"Controls, {test} at the end of training:"),
            ("early", f"Controls, {test} at their early-stopping step:"),
            ("early_step", "Controls, early-stopping step:"),
            ("instability", "Controls, instability:"),
            ("instability_train", "Controls, instability on the training data:"),
        ):
            lines = _series_table(table, table.controls, quantity, table.controls)
            if lines:
                parts += ["", title, "", *lines]
        parts += [
            "",
            f"Gap to the ticket ({test} at the end, ticket minus control, paired by seed; **bold** where the seeds' "
            "ranges of the two are apart):",
            "",
            *_gap_table(table),
        ]
    return "\n".join(parts)


def side_by_side(tables: Sequence[ExperimentTable], labels: Sequence[str] | None = None) -> str:
    """The tickets of several experiments side by side, round by round: weights left and the test metric at the end
    (what ``lth compare`` plots), each experiment under its label (by default its folder's name; one per table)."""
    if labels is not None and len(labels) != len(tables):
        raise ValueError(f"Give one label per experiment: {len(labels)} labels for {len(tables)} experiments.")
    test = tables[0].experiment.names.test
    header = ["round"]
    for label in labels or [t.experiment.name for t in tables]:
        header += [f"{label}: weights left", f"{label}: ticket"]
    rows = []
    for round_ in sorted({r for table in tables for r in table.rounds}):
        cells = [_round_label(round_)]
        for table in tables:
            if round_ in table.rounds:
                cells += [
                    f"{table.weights(round_):.1f}%",
                    cell(summarize(table.series(f"{TICKET}.final", round_)), "final"),
                ]
            else:
                cells += ["-", "-"]
        rows.append(cells)
    return "\n".join([f"### Side by side: the ticket's {test} at the end", "", *markdown_table(header, rows)])


def report_markdown(tables: Sequence[ExperimentTable]) -> str:
    """Every experiment's tables, then (several experiments) the tickets side by side."""
    parts = [experiment_markdown(table) for table in tables]
    if len(tables) > 1:
        parts.append(side_by_side(tables))
    return "\n\n".join(parts) + "\n"


def report_csv(tables: Sequence[ExperimentTable]) -> str:
    """One row per experiment and round; for every series ``<series>_mean``, ``_min``, ``_max`` and ``_seeds``.

    The numbers are the report's (accuracy in percent, instability in points), unrounded; a
    control's gap to the ticket is the series ``gap.<control>`` (ticket minus control, paired by seed).
    """
    rows: list[dict[str, object]] = []
    for table in tables:
        for round_ in table.rounds:
            row: dict[str, object] = {"experiment": table.experiment.name, "round": round_}
            summaries = {"weights": summarize({s: 100.0 * d for s, d in table.density[round_].items()})}
            summaries |= {name: summarize(table.series(name, round_)) for name in table.values}
            summaries |= {f"gap.{c}": summarize(table.gap(c, round_)) for c in table.controls}
            for name, summary in summaries.items():
                if summary is not None:
                    row |= {
                        f"{name}_mean": summary.mean,
                        f"{name}_min": summary.low,
                        f"{name}_max": summary.high,
                        f"{name}_seeds": summary.seeds,
                    }
            rows.append(row)
    fields = list(dict.fromkeys(key for row in rows for key in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()
