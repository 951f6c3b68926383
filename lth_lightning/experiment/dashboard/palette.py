"""One colour per series (the ticket, each control, the seeds' chance level) on every dashboard page and plot.

TensorBoard colours a run by its place in the runs list, which it sorts by the run's first event: the
summaries create their runs in :func:`series_order` (the ticket, the controls in the registry's order, then
``chance``), so a series has the same place, and the same colour, on a run's page and on its experiment's seeds
page. The PNG plots take the colour TensorBoard gives that place, from its default palette.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from lth_lightning.experiment.controls.registry import CONTROLS

__all__ = ["TENSORBOARD_PALETTE", "controls_in", "series_colours", "series_order"]

# TensorBoard's default run colours, in order ("tensorboardColorBlindAssist" in its web app); it cycles them.
TENSORBOARD_PALETTE = ("#ff7043", "#0077bb", "#cc3311", "#33bbee", "#ee3377", "#009988", "#bbbbbb")


def controls_in(rows: Iterable[Mapping[str, Any]]) -> list[str]:
    """The controls with columns in ``rows`` (a run's flat rows or aggregated ones), in the registry's order."""
    keys = {key for row in rows for key in row}
    return [c for c in CONTROLS if any(key.startswith(f"{c}_") for key in keys)]


def series_order(series: Iterable[str]) -> list[str]:
    """``series`` in the order their runs are created: ``ticket``, the controls in the registry's order, ``chance``.

    Raises:
        ValueError: If a name is none of these.
    """
    given = set(series)
    order = ["ticket", *CONTROLS, "chance"]
    unknown = sorted(given - set(order))
    if unknown:
        raise ValueError(f"Unknown series {unknown}; allowed: {', '.join(order)}.")
    return [name for name in order if name in given]


def series_colours(series: Iterable[str], extra: Sequence[str] = ()) -> dict[str, str]:
    """Each of ``series``'s colour: TensorBoard's for its place in :func:`series_order`.

    TensorBoard cycles its seven colours; a plot that must tell more series apart gives the places past the
    seventh the colours ``extra`` (in turn, cycling), and only these differ from the dashboard's.
    """
    palette = [*TENSORBOARD_PALETTE, *extra]
    return {name: palette[i % len(palette)] for i, name in enumerate(series_order(series))}
