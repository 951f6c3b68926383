"""The package's structure: no import circle, imports only go down the layers, every module and function short
enough, every import of the package's names a module that exists, and the tests mirror the modules.

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
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60  # its code, the docstring aside
TESTS = REPO / "tests"
# Tests of more than one module: whole flows (a run from end to end), and the repository's own (docs, structure).
WHOLE = (TESTS / "flows", TESTS / "project")


def _layers() -> list[list[str]]:
    """The layers, bottom to top, as the development page defines them (its ```layers block)."""
    block = re.search(r"```layers\n(.*?)```", DEVELOPMENT.read_text(), flags=re.S)
    assert block is not None, f"{DEVELOPMENT} lost its ```layers block"
    layers = []
    for k, line in enumerate(block.group(1).strip().splitlines(), start=1):
        number, names = line.split(":", 1)
        assert int(number) == k, f"layer {number} is listed {k}th"
        layers.append(names.split())
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


def _packages() -> set[str]:
    return {".".join(p.parent.relative_to(PACKAGE).parts) for p in PACKAGE.rglob("__init__.py")}


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: {m for m in _imports(path) if m in modules and m != name} for name, path in modules.items()}


def test_every_module_has_one_layer_and_every_layered_name_is_a_module():
    listed = [name for layer in LAYERS for name in layer]
    assert sorted({n for n in listed if listed.count(n) > 1}) == [], "a module listed twice"
    assert sorted(set(_modules()) - set(listed)) == [], "place the new module in a layer of docs/development.md"
    assert sorted(set(listed) - set(_modules())) == [], "the layers name a module that does not exist"


def _importing_files() -> list[Path]:
    others = [REPO / "benchmarks", TESTS, REPO / "notebooks"]
    return [*PACKAGE.rglob("*.py"), *(p for folder in others for p in folder.rglob("*.py"))]


def test_every_import_of_the_package_names_a_module_that_exists():
    known = set(_modules()) | _packages()
    missing = [
        f"{path.relative_to(REPO)} imports lth_lightning.{name}"
        for path in _importing_files()
        for name in sorted(_imports(path))
        if name not in known
    ]
    assert not missing, "\n".join(missing)


def test_imports_only_go_down_the_layers():
    layer = {name: k for k, names in enumerate(LAYERS, start=1) for name in names}
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


def _function_lines(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    lines = (node.end_lineno or node.lineno) - node.lineno + 1
    first = node.body[0]
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
        lines -= (first.end_lineno or first.lineno) - first.lineno + 1
    return lines


def test_every_function_is_short_enough_to_read_at_once():
    long = {
        f"{name}.{node.name}": n
        for name, path in _modules().items()
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and (n := _function_lines(node)) > MAX_FUNCTION_LINES
    }
    assert not long, long


def test_every_module_is_short_enough_to_read():
    long = {
        name: n for name, path in _modules().items() if (n := len(path.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert not long, long


def test_each_test_file_mirrors_the_module_it_tests():
    """``tests/<path>/test_<module>[_<aspect>].py`` tests ``lth_lightning/<path>/<module>.py``; whole flows and the
    repository's own tests sit in ``tests/flows/`` and ``tests/project/``."""
    modules = set(_modules())
    strays = []
    for path in TESTS.rglob("test_*.py"):
        if any(folder in path.parents for folder in WHOLE):
            continue
        folder = ".".join(path.parent.relative_to(TESTS).parts)
        name = path.stem.removeprefix("test_")
        prefix = f"{folder}." if folder else ""
        if not any(f"{prefix}{name}" == m or f"{prefix}{name}".startswith(f"{m}_") for m in modules):
            strays.append(str(path.relative_to(TESTS)))
    assert not strays, f"test files that mirror no module (or belong in flows/ or project/): {sorted(strays)}"
