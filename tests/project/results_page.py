"""The generated blocks of docs/results.md: each is what `lth report` prints for the command in its opening line.

    <!-- lth report results/<name> --claims frankle2021 -->
    ...what the command prints...
    <!-- end of lth report -->

The page states the verdict rule once, in its own block (`<!-- verdict rule -->`), from the code's
`lth_lightning.report.render_claims.rule`; the report blocks leave it out.

`python tests/project/results_page.py` rewrites every block with what `lth report` prints now (run from the
repository's root, after a change of results/ that is meant); tests/project/test_results_page.py checks them.
"""

from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PAGE = REPO / "docs" / "results.md"
BLOCK = re.compile(r"<!-- lth report (?P<args>[^>]*?) -->\n(?P<body>.*?)<!-- end of lth report -->", re.S)
RULE = re.compile(r"<!-- verdict rule -->\n(?P<body>.*?)<!-- end of verdict rule -->", re.S)


def rule_block(text: str) -> str | None:
    """The text of the page's verdict-rule block, or None without one."""
    match = RULE.search(text)
    return None if match is None else match.group("body")


def rule_now() -> str:
    """What the rule block holds: the rule as the code states it."""
    from lth_lightning.report.render_claims import rule

    return rule() + "\n"


def blocks(text: str) -> list[tuple[list[str], str]]:
    """Each block's `lth report` arguments and the text it holds."""
    return [(shlex.split(m.group("args")), m.group("body")) for m in BLOCK.finditer(text)]


def printed(args: list[str]) -> str:
    """What `lth report ARGS` prints, run from the repository's root (the blocks' paths are relative to it)."""
    from lth_lightning.report.command import report

    folders = [a for a in args if not a.startswith("--")]
    claims: list[str] = []
    if "--claims" in args:
        folders = args[: args.index("--claims")]
        claims = args[args.index("--claims") + 1 :]
    return report([REPO / f for f in folders], "md", claims, rule=False)


def refresh(text: str) -> str:
    """The page with every block's text replaced by what its command prints now."""

    def one(match: re.Match[str]) -> str:
        body = printed(shlex.split(match.group("args")))
        return f"<!-- lth report {match.group('args')} -->\n{body}<!-- end of lth report -->"

    text = RULE.sub(lambda _: f"<!-- verdict rule -->\n{rule_now()}<!-- end of verdict rule -->", text)
    return BLOCK.sub(one, text)


if __name__ == "__main__":
    PAGE.write_text(refresh(PAGE.read_text()))
    print(f"Rewrote {len(blocks(PAGE.read_text()))} blocks of {PAGE}", file=sys.stderr)
