"""Screenshot of `lth dashboard FOLDER` in headless Chromium: the README's picture of the dashboard.

It starts `lth dashboard` on a free port, drives Chromium through its DevTools pipe (no extra
package: JSON messages on file descriptors 3 and 4), and saves the Custom Scalars page as the
dashboard opens it. With ``--show-outliers`` it first unticks "Ignore outliers in chart scaling"
as a user does once per browser (TensorBoard keeps it in the browser's local storage).

    apt-get install chromium
    python notebooks/dashboard_screenshot.py runs/quick/<experiment> notebooks/images/tensorboard_dashboard.png \
        --show-outliers
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from lth_lightning.cli.commands import dashboard_url


class DevTools:
    """Chromium's DevTools protocol over ``--remote-debugging-pipe``: one page, one command at a time."""

    def __init__(self, chromium: str, width: int, height: int) -> None:
        to_chrome, self._write = os.pipe()
        self._read, from_chrome = os.pipe()
        profile = tempfile.mkdtemp(prefix="lth-chromium-")

        def descriptors() -> None:  # in the child: the pipe ends where Chromium expects them, kept across exec
            high = [os.dup(to_chrome), os.dup(from_chrome)]  # dup2 onto itself would keep close-on-exec
            os.dup2(high[0], 3)
            os.dup2(high[1], 4)

        flags = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--remote-debugging-pipe"]
        self.process = subprocess.Popen(
            [chromium, *flags, f"--user-data-dir={profile}", "about:blank"],
            close_fds=False,  # Python would close 3 and 4 after preexec_fn puts the pipe there
            preexec_fn=descriptors,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(to_chrome)
        os.close(from_chrome)
        self._buffer, self._id, self.session = b"", 0, None
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        self.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self._id += 1
        message = {"id": self._id, "method": method, "params": params}
        if self.session is not None and not method.startswith("Target."):
            message["sessionId"] = self.session
        os.write(self._write, json.dumps(message).encode() + b"\0")
        while True:
            while b"\0" not in self._buffer:
                chunk = os.read(self._read, 1 << 20)
                if not chunk:
                    raise RuntimeError("Chromium closed its DevTools pipe")
                self._buffer += chunk
            raw, self._buffer = self._buffer.split(b"\0", 1)
            reply = json.loads(raw)
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for(url: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            urllib.request.urlopen(url, timeout=2).read()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="what `lth dashboard` opens")
    parser.add_argument("out", type=Path, help="the PNG to write")
    parser.add_argument("--show-outliers", action="store_true", help="untick 'Ignore outliers in chart scaling' first")
    parser.add_argument("--width", type=int, default=1500)
    parser.add_argument("--height", type=int, default=1150)
    parser.add_argument("--wait", type=float, default=12.0, help="seconds the page gets to draw its charts")
    args = parser.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if chromium is None:
        sys.exit("No Chromium found: apt-get install chromium")
    port = _free_port()
    lth = Path(sys.executable).with_name("lth")
    server = subprocess.Popen([str(lth), "dashboard", str(args.folder), "--port", str(port)], stdout=subprocess.DEVNULL)
    browser = None
    try:
        _wait_for(f"http://127.0.0.1:{port}/data/runs", 60)
        browser = DevTools(chromium, args.width, args.height)
        if args.show_outliers:  # what unticking the box stores
            browser.call("Page.navigate", url=f"http://127.0.0.1:{port}/")
            time.sleep(3)
            browser.call("Runtime.evaluate", expression="localStorage.setItem('_ignoreYOutliers', 'false')")
        browser.call("Page.navigate", url=dashboard_url("127.0.0.1", port))
        time.sleep(args.wait)
        png = browser.call("Page.captureScreenshot", format="png")["data"]
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_bytes(base64.b64decode(png))
        print(f"Wrote {args.out}")
    finally:
        if browser is not None:
            browser.close()
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
