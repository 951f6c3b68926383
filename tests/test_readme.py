"""The README's commands and example are the ones that work."""

import re
import subprocess
import sys

from conftest import REPO

README = (REPO / "README.md").read_text()


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, flags=re.S)


def test_ci_runs_the_readmes_test_command():
    test_command = next(b for b in _blocks("bash") if "# 1. the tests" in b).strip().splitlines()[-1]
    ci = (REPO / ".ci" / "run").read_text().splitlines()
    assert test_command in ci


def test_dropin_example_runs(tmp_path):
    example = next(b for b in _blocks("python") if "for round_ in range" in b)
    script = tmp_path / "dropin.py"
    script.write_text(example)
    result = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    rounds = re.findall(r"round (\d): density ([\d.]+), test/acc ([\d.]+)", result.stdout)
    assert [r[0] for r in rounds] == ["0", "1", "2"]
    assert [r[1] for r in rounds] == ["1.000", "0.800", "0.640"]
    assert "next round keeps 0.512" in result.stdout
