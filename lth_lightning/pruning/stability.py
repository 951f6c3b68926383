"""Linear mode connectivity (Frankle, Dziugaite, Roy & Carbin, ICML 2020): pure math, Lightning-free.

Two copies of a network trained from the same point under different data orders are *stable*
when the error does not rise along the straight line between their weights. The instability of
the pair is the error barrier: the highest error along the line (evaluated at ``points`` evenly
spaced points, both ends included; the paper uses 30) minus the mean of the two ends' errors.
The paper calls a network stable when it is below 2%.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

__all__ = ["PATH_POINTS", "STABLE_BELOW", "error_barrier", "interpolate", "path_alphas"]

PATH_POINTS = 30  # Frankle et al. (2020): 30 evenly spaced points
STABLE_BELOW = 0.02  # ... and stable below an error barrier of 2%


def path_alphas(points: int = PATH_POINTS) -> list[float]:
    """``points`` evenly spaced weights of the second copy, from 0 to 1, both included.

    Raises:
        ValueError: For fewer than 2 points.
    """
    if isinstance(points, bool) or not isinstance(points, int) or points < 2:
        raise ValueError(f"`points` must be an integer >= 2 (both ends of the path), got {points!r}.")
    return [i / (points - 1) for i in range(points)]


def interpolate(a: Mapping[str, Tensor], b: Mapping[str, Tensor], alpha: float) -> dict[str, Tensor]:
    """The state ``(1 - alpha) * a + alpha * b``: floating entries interpolated, others (counters) taken from ``a``.

    Raises:
        ValueError: If the states name different entries or an entry's shapes differ.
    """
    if set(a) != set(b):
        raise ValueError(f"The two states differ in their entries: {sorted(set(a) ^ set(b))}.")
    out: dict[str, Tensor] = {}
    for name, x in a.items():
        y = b[name]
        if x.shape != y.shape:
            raise ValueError(f"{name!r} has shape {tuple(x.shape)} in one state and {tuple(y.shape)} in the other.")
        out[name] = torch.lerp(x, y.to(x.device, x.dtype), alpha) if x.is_floating_point() else x.clone()
    return out


def error_barrier(errors: Sequence[float]) -> float:
    """The instability of a pair: the highest error along the path minus the mean of its two ends' errors.

    Raises:
        ValueError: For fewer than 2 errors or a non-finite one.
    """
    values = [float(e) for e in errors]
    if len(values) < 2 or not all(v == v and abs(v) != float("inf") for v in values):
        raise ValueError(f"The errors along a path must be >= 2 finite numbers, got {values}.")
    return max(values) - (values[0] + values[-1]) / 2
