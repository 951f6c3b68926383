"""docs/options.md is what the options' declarations give now (tests/project/options_page.py writes it)."""

from __future__ import annotations

from options_page import PAGE, page

from lth_lightning.callbacks.settings import CALLBACK_OPTIONS
from lth_lightning.experiment.spec import EXPERIMENT_OPTIONS


def test_the_options_page_is_current():
    assert PAGE.read_text() == page(), "docs/options.md is stale: run python tests/project/options_page.py"


def test_the_page_has_a_row_per_option_with_its_help():
    text = page()
    for option in (*CALLBACK_OPTIONS, *EXPERIMENT_OPTIONS):
        (row,) = [line for line in text.splitlines() if line.startswith(f"| `{option.name}` |")]
        assert " ".join(option.help.split()[:8]) in row
        assert row.split(" | ")[3] == ("yes" if option.identity else "no")
