"""`tensorboard --logdir <experiment folder>` shows `lth dashboard`'s pages, first and in the same colours, read
from the pages headless Chromium draws (skipped without Chromium: `apt-get install chromium`)."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import REPO, two_seeds

from lth_lightning.cli.commands import dashboard_url

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
sys.path.insert(0, str(REPO / "notebooks"))  # the README screenshot's DevTools driver


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _texts(node: dict, out: list[tuple[str, str]], style: str = "") -> None:
    """Every text of the page (through shadow roots), with the colour style of the element holding it."""
    attributes = dict(zip(node.get("attributes", [])[::2], node.get("attributes", [])[1::2], strict=True))
    style = attributes.get("style", style) if "color:" in attributes.get("style", "") else style
    if node.get("nodeType") == 3 and node.get("nodeValue", "").strip():
        out.append((node["nodeValue"].strip(), style))
    for child in [*node.get("children", []), *node.get("shadowRoots", [])]:
        _texts(child, out, style)


def _page(command: list[str], port: int) -> list[tuple[str, str]]:
    from dashboard_screenshot import DevTools

    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    browser = None
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/data/runs", timeout=1)
                break
            except OSError:
                time.sleep(0.5)
        browser = DevTools(CHROMIUM, 1500, 1150)
        browser.call("Page.navigate", url=dashboard_url("127.0.0.1", port))
        texts: list[tuple[str, str]] = []
        for _ in range(30):  # until every chart has said what it matches and the legends are drawn
            time.sleep(1)
            texts = []
            _texts(browser.call("DOM.getDocument", depth=-1, pierce=True)["root"], texts)
            if _legend(texts) and sum(t.startswith("Matches (") for t, _ in texts) >= 3:
                time.sleep(1)
                texts = []
                _texts(browser.call("DOM.getDocument", depth=-1, pierce=True)["root"], texts)
                break
        return texts
    finally:
        if browser is not None:
            browser.close()
        server.terminate()
        server.wait(timeout=30)


def _legend(texts: list[tuple[str, str]]) -> dict[tuple[str, str], str]:
    """Each chart legend's line, ``(tag, series)``, and its colour (a run ``dashboard/ticket`` is series ``ticket``)."""
    found = {}
    for text, style in texts:
        line = re.fullmatch(r"(lottery/\S+) \((\S+)\)", text)
        colour = re.search(r"(?<!-)color: (rgb\([^)]*\))", style)
        if line and colour:
            found[(line.group(1), line.group(2).removeprefix("dashboard/"))] = colour.group(1)
    return found


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium (apt-get install chromium)")
def test_plain_tensorboard_on_an_experiment_folder_shows_the_dashboards_pages_first_in_its_colours(tiny_data, tmp_path):
    runs = two_seeds(tiny_data, tmp_path / "runs", rounds=6, controls=["random_reinit", "random_prune"])
    folder = runs.experiment_dir
    port = _port()
    plain = _page([sys.executable, "-m", "tensorboard.main", "--logdir", str(folder), "--port", str(port)], port)
    port = _port()
    lth = str(Path(sys.executable).with_name("lth"))  # the console script of this environment
    dashboard = _page([lth, "dashboard", str(folder), "--port", str(port)], port)
    said = [text for text, _ in plain]
    assert "Matches (0)" not in said and any(t.startswith("Matches (") for t in said)
    pages = [[t for t, _ in texts if t.startswith("lottery ticket")] for texts in (plain, dashboard)]
    assert pages[1] and pages[0][: len(pages[1])] == pages[1]  # the dashboard's pages, first, in its order
    lines = _legend(dashboard)
    assert {series for _, series in lines} == {"ticket", "random_reinit", "random_prune", "chance"}
    assert {key: colour for key, colour in _legend(plain).items() if key in lines} == lines  # the same colours
