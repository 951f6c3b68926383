"""Where the papers' claims files live, and their names: what ``lth report --claims`` accepts (no imports but paths)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["CLAIMS_DIR", "available_papers"]

CLAIMS_DIR = Path(__file__).parent / "claims"


def available_papers() -> list[str]:
    """The names ``--claims`` accepts: the claims files, without ``.yaml``."""
    return sorted(p.stem for p in CLAIMS_DIR.glob("*.yaml"))
