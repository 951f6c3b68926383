"""``lth fit``'s errors for a wrong config key or control: one line, the nearest name, the allowed ones."""

from __future__ import annotations

import pytest
from cli_helpers import lth_here, tiny_config

TOTAL = 784 * 32 + 32 * 16 + 16 * 10


def test_unknown_config_key_gets_lightningclis_message(tmp_path, tiny_data, capsys):
    config = tiny_config(tmp_path, tiny_data)
    _, err = lth_here(capsys, "fit", "-c", str(config), "--lottery.amout", "0.3", code=2)
    # The error, then the nearest option: not a page of usage first.
    lines = err.strip().splitlines()
    assert lines[0] == "lth fit: error: unrecognized arguments: --lottery.amout 0.3" and len(lines) <= 3
    assert lines[1] == "--lottery.amout: did you mean --lottery.amount?"
    text = config.read_text().replace("amount: 0.5", "amount: 0.5\n  amout: 0.3")
    config.write_text(text)
    _, err = lth_here(capsys, "fit", "-c", str(config), code=2)
    assert "does not accept option 'lottery.amout'" in err
    assert "--lottery.amout: did you mean --lottery.amount?" in err
    assert not (tmp_path / "runs").exists()  # nothing was started


def test_a_mistyped_control_gets_the_nearest_name_and_the_allowed_ones_in_one_line(tmp_path, tiny_data, capsys):
    from lth_lightning.experiment.controls.registry import CONTROLS

    config = tiny_config(tmp_path, tiny_data)
    _, err = lth_here(capsys, "fit", "-c", str(config), "--lottery.controls", "[random_reinit, random_prun]", code=2)
    first, *rest = err.strip().splitlines()
    allowed = ", ".join(CONTROLS)
    said = "lth fit: error: --lottery.controls: random_prun is not allowed; did you mean random_prune?"
    assert first == f"{said} Allowed: {allowed}."
    assert rest == ["Every option, with its documentation: lth fit --help"]
    config.write_text(config.read_text().replace("progress: false", "progress: false\n  scope: globl"))
    _, err = lth_here(capsys, "fit", "-c", str(config), code=2)  # a config file's value, any Literal option
    assert (
        err.splitlines()[0]
        == "lth fit: error: --lottery.scope: globl is not allowed; did you mean global? Allowed: global, layerwise."
    )
    assert not (tmp_path / "runs").exists()  # nothing was started


@pytest.mark.parametrize("value", ["[0.5]", "head.weight"])
def test_a_malformed_mapping_option_gets_one_line_naming_it_and_its_form(capsys, value):
    _, err = lth_here(capsys, "fit", f"--lottery.rates={value}", code=2)
    first = err.splitlines()[0]
    assert first.startswith("lth fit: error: --lottery.rates: ") and value in first, err
    assert "a mapping of names or glob patterns to floats" in first and "collections.abc" not in err, err
