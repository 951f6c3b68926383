"""The README and the manual in docs/: every relative link resolves, and every code block is checked.

Python blocks are compiled, and every call of this package's API they make is bound to its signature
(a renamed or removed argument fails here); the short examples run as scripts. Bash blocks name real
`lth` commands and real options of them. The README's test command is the one CI runs.
"""

from __future__ import annotations

import ast
import inspect
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from cli_helpers import lth_here
from conftest import REPO

import lth_lightning

DATA = ("FashionMNISTDataModule", "MNISTDataModule")
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def _blocks(lang: str, pages: list[Path] = PAGES) -> list[tuple[Path, str]]:
    return [(page, b) for page in pages for b in re.findall(rf"```{lang}\n(.*?)```", page.read_text(), flags=re.S)]


def _example(marker: str) -> str:
    return next(code for _, code in _blocks("python") if marker in code)


def test_the_manual_has_a_page_per_task_and_a_short_front_page():
    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) <= 200
    linked = set(re.findall(r"\]\(docs/([\w-]+\.md)\)", readme))
    assert linked == {p.name for p in PAGES[1:]}, "every docs page is linked from the README's manual"


def _slug(heading: str) -> str:
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_relative_link_resolves(page):
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+://|mailto:", target):
            continue
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path) if path else page
        if not resolved.exists():
            broken.append(target)
        elif anchor and resolved.suffix == ".md":
            headings = re.findall(r"^#+ (.+)$", re.sub(r"```.*?```", "", resolved.read_text(), flags=re.S), re.M)
            if anchor not in {_slug(h) for h in headings}:
                broken.append(target)
    assert not broken, broken


def _api_calls(code: str) -> list[tuple[str, ast.Call]]:
    tree = ast.parse(code)
    imported = {
        a.asname or a.name: a.name
        for n in ast.walk(tree)
        if isinstance(n, ast.ImportFrom) and n.module == "lth_lightning"
        for a in n.names
    }
    return [
        (imported[n.func.id], n)
        for n in ast.walk(tree)
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id in imported
    ]


@pytest.mark.parametrize("page, code", _blocks("python"), ids=lambda v: v.name if isinstance(v, Path) else "")
def test_python_blocks_call_the_api_as_it_is(page, code):
    compile(code, str(page), "exec")
    calls = _api_calls(code)
    for name, call in calls:
        assert name in lth_lightning.__all__, f"{page.name}: lth_lightning has no {name}"
        signature = inspect.signature(getattr(lth_lightning, name))
        args = [None] * len([a for a in call.args if not isinstance(a, ast.Starred)])
        signature.bind_partial(*args, **{k.arg: None for k in call.keywords if k.arg})  # TypeError when stale


def test_a_stale_argument_in_a_block_is_caught():
    (name, _call), *_ = _api_calls("from lth_lightning import run_lottery\nrun_lottery(m, d, round=3)\n")
    with pytest.raises(TypeError, match="round"):
        inspect.signature(getattr(lth_lightning, name)).bind_partial(None, None, round=None)


def _commands() -> list[tuple[Path, list[str]]]:
    commands = []
    for page, code in _blocks("bash"):
        for line in code.replace("\\\n", " ").splitlines():
            for part in re.split(r"&&|;", line):
                words = shlex.split(part, comments=True)
                if words[:1] == ["lth"] and len(words) > 1 and not words[1].startswith("-"):
                    commands.append((page, words[1:]))
    return commands


def test_bash_blocks_name_real_commands_and_options(capsys):
    helps: dict[str, str] = {}
    for page, (command, *args) in _commands():
        if command not in helps:
            out, err = lth_here(capsys, command, "--help")
            helps[command] = out + err
            if command == "fit":  # the model's and data's own options, of the classes the docs use
                for group, cls in (("model", "LotteryClassifier"), *(("data", d) for d in DATA)):
                    out, err = lth_here(capsys, command, f"--{group}.help", f"lth_lightning.{cls}")
                    helps[command] += out.replace("--init_args.", f"--{group}.")
        options = {a.split("=", 1)[0].removesuffix("+") for a in args if a.startswith("--")}
        missing = [o for o in options if not re.search(rf"{re.escape(o)}[\s,+=\]]", helps[command])]
        assert not missing, f"{page.name}: lth {command} has no {missing}"
    assert {"fit", "export", "aggregate", "compare", "dashboard"} <= set(helps)


def test_yaml_blocks_parse():
    for _page, code in _blocks("yaml"):
        yaml.safe_load(code)


def test_ci_runs_the_readmes_test_command():
    test_command = next(b for _, b in _blocks("bash", PAGES[:1]) if "# 1. the tests" in b).strip().splitlines()[-1]
    assert test_command in (REPO / ".ci" / "run").read_text().splitlines()


def _run(tmp_path: Path, code: str) -> subprocess.CompletedProcess:
    script = tmp_path / "example.py"
    script.write_text(code)
    result = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.mark.slow
def test_dropin_example_runs(tmp_path):
    result = _run(tmp_path, _example("from lth_lightning import MLP, LotteryClassifier, LotteryTicketCallback"))
    rounds = re.findall(r"round (\d): density ([\d.]+), test/acc ([\d.]+)", result.stdout)
    assert [r[0] for r in rounds] == ["0", "1", "2"]
    assert [r[1] for r in rounds] == ["1.000", "0.800", "0.640"]
    assert "next round keeps 0.512" in result.stdout


@pytest.mark.slow
def test_gpt2_example_runs(tmp_path):
    pytest.importorskip("transformers")
    result = _run(tmp_path, _example("GPT2LMHeadModel"))
    rounds = re.findall(r"gpt2 round (\d): (\d+) tensors, density ([\d.]+) next", result.stdout)
    assert rounds == [("0", "9", "0.800"), ("1", "9", "0.640"), ("2", "9", "0.512")]  # wte/lm_head + 8 Conv1D
    assert "transformers.pytorch_utils.Conv1D (8 layers)" in result.stdout + result.stderr


def test_the_docs_folder_names_are_the_ones_lth_fit_gives(monkeypatch, tmp_path):
    """The hash in the docs' paths is the one the shipped configs get (it changes when the identity gains keys)."""
    from lth_lightning.cli.lottery_cli import LotteryCLI
    from lth_lightning.experiment.record.identity import folder_name
    from lth_lightning.experiment.record.module_identity import identity_of

    text = "\n".join(p.read_text() for p in PAGES)
    monkeypatch.chdir(tmp_path)
    for config in ("fashion_mnist_mlp", "quick"):
        cli = LotteryCLI(args=["-c", str(REPO / "configs" / f"{config}.yaml"), "--data.data_dir", "data"], run=False)
        parsed = yaml.safe_load(cli.parser.dump(cli.config, skip_none=False))
        for key in ("config", "ckpt_path"):
            parsed.pop(key, None)
        name = folder_name(parsed, identity_of(parsed, cli.model))  # as run_lottery names the folder
        assert re.search(rf"runs/{config}/{re.escape(name)}\b", text), name


def test_the_refused_combinations_are_listed_with_the_package_s_own_messages():
    page = (REPO / "docs" / "lth-fit.md").read_text()
    section = page.split("### Refused combinations", 1)[1].split("\n### ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `") or line.startswith("| pruning")]
    said = [re.findall(r'"([^"]+)" \|$', row) for row in rows]
    assert len(rows) >= 10 and all(len(s) == 1 for s in said), rows
    source = " ".join(p.read_text() for p in (REPO / "lth_lightning").rglob("*.py"))
    for row, (message,) in zip(rows, said, strict=True):
        assert message in source, row  # words of a message the package gives
    assert any("`--lottery.instability true` with `--lottery.retrain lr_rewind`" in row for row in rows)


_TENTHS = {10: "a tenth", 5: "a fifth", 2: "half", 1: "the paper's"}


@pytest.mark.parametrize("name", ["lenet300", "lenet300_at_init", "lenet300_10k"])
def test_the_deviations_page_states_the_committed_lenet_runs_budget_and_interval(name):
    """The budget and the validation interval of each committed LeNet run, read from its recorded config, are the
    ones docs/deviations.md states (the paper: 50,000 iterations, validation every 100)."""
    trainer = yaml.safe_load((REPO / "results" / name / "seed_0" / "config.yaml").read_text())["trainer"]
    page = " ".join((REPO / "docs" / "deviations.md").read_text().split())
    steps, interval = trainer["max_steps"], trainer["val_check_interval"]
    assert f"{steps:,} iterations a round, {_TENTHS[50_000 // steps]} of the paper's 50,000" in page
    assert f"every {interval} (`results/{name}`)" in page or f"every {interval} iterations (`results/{name}`)" in page
    shipped = yaml.safe_load((REPO / "configs" / "mnist_lenet300.yaml").read_text())["trainer"]
    assert shipped["val_check_interval"] == 100 and "every 100 iterations, and so" in page
