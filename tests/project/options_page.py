"""docs/options.md, generated from the options' declarations (lth_lightning/options.py).

``python tests/project/options_page.py`` rewrites the page (run from the repository's root after a change of a
declaration); tests/project/test_options_page.py checks that it is current.
"""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Any

from lth_lightning.api import CALLER_OBJECTS
from lth_lightning.callbacks.settings import CALLBACK_OPTIONS
from lth_lightning.experiment.spec import EXPERIMENT_OPTIONS
from lth_lightning.options import REQUIRED, Option

REPO = Path(__file__).resolve().parents[2]
PAGE = REPO / "docs" / "options.md"
HEAD = """# Options

Every option of lth-lightning, as it is declared (`lth_lightning/options.py`: each is declared once, and
`lth fit`, the Python entry points, the validation and the experiment's identity all come from there).
This page is generated: `python tests/project/options_page.py` rewrites it.
`lth fit` takes each as `--lottery.<name>` (or `lottery: {<name>: ...}` in a config file).
"Changes results": part of the experiment's identity, so that another value gets another folder.
"""


def _type(kind: Any) -> str:
    if typing.get_origin(kind) is typing.Literal:
        return " or ".join(repr(v) for v in typing.get_args(kind)) if len(typing.get_args(kind)) < 6 else "a name"
    text = getattr(kind, "__name__", None) if not typing.get_args(kind) else None
    return text or str(kind).replace("typing.", "").replace("collections.abc.", "").replace("pathlib.", "")


def _default(option: Option, entry_point: str) -> str:
    value = option.default_in(entry_point)  # type: ignore[arg-type]
    return "required" if value is REQUIRED else f"`{value!r}`"


def _row(option: Option) -> str:
    where = ", ".join(f"`{e}`" for e in option.entry_points)
    defaults = _default(option, option.entry_points[-1])
    if "lth fit" in option.entry_points and option.default_in("lth fit") != option.default:
        defaults += f" (`lth fit`: {_default(option, 'lth fit')})"
    allowed = (option.allowed or _type(option.type)).replace("|", "\\|")
    changes = "yes" if option.identity else "no"
    help_text = " ".join(option.help.split()).replace("|", "\\|")
    return f"| `{option.name}` | {allowed} | {defaults} | {changes} | {where} | {help_text} |"


def _table(title: str, options: tuple[Option, ...]) -> str:
    lines = [f"## {title}", "", "| option | allowed | default | changes results | taken by | what it does |"]
    lines.append("|---|---|---|---|---|---|")
    return "\n".join([*lines, *(_row(o) for o in options)]) + "\n"


def page() -> str:
    """The page as the declarations give it now."""
    parts = [
        HEAD,
        _table("The callback's (`LotterySettings`)", CALLBACK_OPTIONS),
        _table("The experiment's (`ExperimentSpec`)", EXPERIMENT_OPTIONS),
        _table("The objects the Python entry points take", CALLER_OBJECTS),
    ]
    return "\n".join(parts)


if __name__ == "__main__":
    PAGE.write_text(page())
    print(f"wrote {PAGE.relative_to(REPO)}")
