"""Aggregating per-seed results: mean and standard deviation per round."""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["aggregate"]


def _number(value: Any) -> float | None:
    if value is None or value == "" or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def aggregate(runs: Sequence[Sequence[Mapping[str, Any]]]) -> list[dict[str, Any]]:
    """Mean and sample standard deviation of every numeric column, round by round, over seeds.

    Args:
        runs: One list of flat rows (``RoundResult.flat()``) per seed. Rounds are matched by
            position; only rounds every seed finished are aggregated.

    Returns:
        One row per round with ``round``, ``seeds`` (how many values were averaged) and, for
        each numeric column ``k``, ``k_mean`` and ``k_std`` (0.0 with a single value). Missing
        values (a control not run at round 0, say) are left out of their column.

    Raises:
        ValueError: If ``runs`` is empty or the seeds disagree on a round's index.
    """
    if not runs:
        raise ValueError("`runs` must hold the rows of at least one seed.")
    out: list[dict[str, Any]] = []
    for index in range(min(len(run) for run in runs)):
        rows = [run[index] for run in runs]
        rounds = {int(row["round"]) for row in rows}
        if len(rounds) != 1:
            raise ValueError(f"Seeds disagree on the round at position {index}: {sorted(rounds)}.")
        merged: dict[str, Any] = {"round": rounds.pop(), "seeds": len(rows)}
        keys = [k for k in rows[0] if k != "round"]
        for key in keys:
            values = [v for v in (_number(row.get(key)) for row in rows) if v is not None]
            if not values:
                continue
            merged[f"{key}_mean"] = statistics.fmean(values)
            merged[f"{key}_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
        out.append(merged)
    return out
