"""The package's structure: no import circle, imports only go down the layers, every module short enough.

Every import of a package module is read from the source (also those inside functions and under
``TYPE_CHECKING``); the packages' ``__init__`` files are facades that name everything lazily and
are left out. The layers are the development page's (docs/development.md), read from it.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from conftest import REPO

PACKAGE = REPO / "lth_lightning"
DEVELOPMENT = REPO / "docs" / "development.md"
MAX_MODULE_LINES = 550


def _layers() -> list[set[str]]:
    """The layers, bottom to top, as the development page defines them (its ```layers block)."""
    block = re.search(r"```layers\n(.*?)```", DEVELOPMENT.read_text(), flags=re.S)
    assert block is not None, f"{DEVELOPMENT} lost its ```layers block"
    layers = []
    for k, line in enumerate(block.group(1).strip().splitlines(), start=1):
        number, names = line.split(":", 1)
        assert int(number) == k, f"layer {number} is listed {k}th"
        layers.append(set(names.split()))
    return layers


LAYERS = _layers()


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        if parts[-1] != "__init__":
            found[".".join(parts)] = path
    return found


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("lth_lightning."):
            names.add(node.module.removeprefix("lth_lightning."))
        elif isinstance(node, ast.Import):
            names.update(
                a.name.removeprefix("lth_lightning.") for a in node.names if a.name.startswith("lth_lightning.")
            )
    return names


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: {m for m in _imports(path) if m in modules and m != name} for name, path in modules.items()}


def test_every_module_has_a_layer():
    layered = set().union(*LAYERS)
    assert sorted(set(_modules()) - layered) == [], "place the new module in a layer of docs/development.md"
    assert sorted(layered - set(_modules())) == []


def test_imports_only_go_down_the_layers():
    layer = {name: k for k, names in enumerate(LAYERS) for name in names}
    upward = [
        f"{a} (layer {layer[a]}) imports {b} (layer {layer[b]})"
        for a, deps in sorted(_graph().items())
        for b in sorted(deps)
        if layer[b] > layer[a]
    ]
    assert not upward, "\n".join(upward)


def test_no_import_circle():
    graph, state, circles = _graph(), {}, []

    def visit(name: str, path: list[str]) -> None:
        state[name] = "open"
        for dep in sorted(graph[name]):
            if state.get(dep) == "open":
                circles.append(" -> ".join([*path[path.index(dep) :], dep]))
            elif dep not in state:
                visit(dep, [*path, dep])
        state[name] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert not circles, "\n".join(circles)


def test_every_module_is_short_enough_to_read():
    long = {
        name: n for name, path in _modules().items() if (n := len(path.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert not long, long


def test_tests_mirror_the_packages_layout():
    """A test folder per package folder it tests (tests/<package>/), shared helpers at the top of tests/."""
    tests = REPO / "tests"
    folders = {p.name for p in tests.iterdir() if p.is_dir() and any(p.glob("test_*.py"))}
    packages = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert folders and folders <= packages, sorted(folders - packages)
