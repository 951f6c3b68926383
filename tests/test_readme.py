"""The README's commands and example are the ones that work."""

import re
import subprocess
import sys

import pytest
from conftest import REPO

README = (REPO / "README.md").read_text()


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, flags=re.S)


def test_ci_runs_the_readmes_test_command():
    test_command = next(b for b in _blocks("bash") if "# 1. the tests" in b).strip().splitlines()[-1]
    ci = (REPO / ".ci" / "run").read_text().splitlines()
    assert test_command in ci


def _run_example(tmp_path, marker: str) -> subprocess.CompletedProcess:
    """Run the README's python block that holds ``marker`` as a script of its own."""
    example = next(b for b in _blocks("python") if marker in b)
    script = tmp_path / "example.py"
    script.write_text(example)
    result = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.mark.slow
def test_dropin_example_runs(tmp_path):
    result = _run_example(tmp_path, "from lth_lightning import MLP, LotteryClassifier, LotteryTicketCallback")
    rounds = re.findall(r"round (\d): density ([\d.]+), test/acc ([\d.]+)", result.stdout)
    assert [r[0] for r in rounds] == ["0", "1", "2"]
    assert [r[1] for r in rounds] == ["1.000", "0.800", "0.640"]
    assert "next round keeps 0.512" in result.stdout


@pytest.mark.slow
def test_gpt2_example_runs(tmp_path):
    pytest.importorskip("transformers")
    result = _run_example(tmp_path, "GPT2LMHeadModel")
    rounds = re.findall(r"gpt2 round (\d): (\d+) tensors, density ([\d.]+) next", result.stdout)
    assert rounds == [("0", "9", "0.800"), ("1", "9", "0.640"), ("2", "9", "0.512")]  # wte/lm_head + 8 Conv1D
    assert "transformers.pytorch_utils.Conv1D (8 layers)" in result.stdout + result.stderr


def test_the_readmes_folder_names_are_the_ones_lth_fit_gives(monkeypatch, tmp_path):
    """The hash in the README's paths is the one the shipped configs get (it changes when the identity gains keys)."""
    import yaml

    from lth_lightning.cli import LotteryCLI
    from lth_lightning.experiment.identity import folder_name
    from lth_lightning.experiment.observed import identity_of

    monkeypatch.chdir(tmp_path)
    for config in ("fashion_mnist_mlp", "quick"):
        cli = LotteryCLI(args=["-c", str(REPO / "configs" / f"{config}.yaml"), "--data.data_dir", "data"], run=False)
        parsed = yaml.safe_load(cli.parser.dump(cli.config, skip_none=False))
        for key in ("config", "ckpt_path"):
            parsed.pop(key, None)
        name = folder_name(parsed, identity_of(parsed, cli.model))  # as run_lottery names the folder
        assert re.search(rf"runs/{config}/{re.escape(name)}\b", README), name
