"""The experiment layer decides and measures exactly what it did when the golden file was recorded."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from golden_runs import GOLDEN, record


def _differences(got: Any, want: Any, where: str = "") -> list[str]:
    """Where ``got`` and ``want`` differ: floats to 1e-6 relative (another CPU's kernels), all else exactly."""
    if isinstance(want, dict) and isinstance(got, dict):
        keys = sorted(set(want) | set(got))
        missing = "<missing>"
        return [d for k in keys for d in _differences(got.get(k, missing), want.get(k, missing), f"{where}/{k}")]
    if isinstance(want, list) and isinstance(got, list) and len(got) == len(want):
        return [d for i, (g, w) in enumerate(zip(got, want, strict=True)) for d in _differences(g, w, f"{where}[{i}]")]
    if isinstance(want, float) and isinstance(got, (int, float)) and not isinstance(got, bool):
        return [] if math.isclose(got, want, rel_tol=1e-6, abs_tol=1e-9) else [f"{where}: {got!r} != {want!r}"]
    return [] if got == want else [f"{where}: {got!r} != {want!r}"]


@pytest.mark.slow
def test_the_experiment_layer_reproduces_its_golden_runs():
    want = json.loads(GOLDEN.read_text())
    differences = _differences(record(), want)
    assert not differences, "\n".join(differences[:20])
