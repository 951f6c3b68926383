"""The package's structure: no import circle, imports only go down the layers, experiment modules short enough.

Every import of a package module is read from the source (also those inside functions and under
``TYPE_CHECKING``); the packages' ``__init__`` files are facades that name everything lazily and
are left out. The layers are the README's (Development).
"""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import REPO

PACKAGE = REPO / "lth_lightning"
# Bottom to top: a module may import from its own layer and the ones below it.
LAYERS: list[set[str]] = [
    {"compat", "io", "packing", "metric_names", "idx", "selection", "mlp", "loader", "sparse", "late_start"},
    {"pruning", "saliency", "stability", "state", "targets", "tracker", "download"},
    {"callback", "classifier", "datamodule", "stack.network", "stack.module", "stack.callbacks", "stack.batches"},
    {
        "experiment.paths",
        "experiment.identity",
        "experiment.observed",
        "experiment.results",
        "experiment.scoring",
        "experiment.ticket",
        "experiment.at_init",
        "experiment.controls",
        "experiment.plots",
        "experiment.clock",
        "experiment.lock",
        "experiment.trainer",
        "experiment.layout",
        "experiment.dashboard",
        "experiment.aggregate",
        "export",
    },
    {"experiment.store", "experiment.spec", "experiment.measure", "experiment.stacking"},
    {"experiment.loop", "experiment.sequential", "experiment.instability", "experiment.stacked"},
    {"experiment.runner", "experiment.rounds"},
    {"cli", "commands"},
]
MAX_EXPERIMENT_LINES = 350


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
    assert sorted(set(_modules()) - layered) == [], "place the new module in a layer (here and in the README)"
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


def test_experiment_modules_are_short_enough_to_read():
    long = {
        name: n
        for name, path in _modules().items()
        if name.startswith("experiment.") and (n := len(path.read_text().splitlines())) > MAX_EXPERIMENT_LINES
    }
    assert not long, long
