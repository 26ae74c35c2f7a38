"""The dashboard in a real browser: streamlit serves app.py headless, Debian chromium loads it.

Skipped with a reason when chromium (``apt-get install chromium``) or the ``playwright``
package is absent. Screenshots land in ``test-output/`` (git-ignored).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "test-output"
CHROMIUM = os.environ.get("FORECAST_CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 180_000

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server():
    if not (Path(CHROMIUM).is_file() or shutil.which("chromium")):
        pytest.skip(f"chromium not found at {CHROMIUM}; install it with `apt-get install chromium`")
    pytest.importorskip("playwright.sync_api", reason="pip install playwright (Python package)")
    port = free_port()
    env = {**os.environ, "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false"}
    env.pop("FORECAST_CHECKPOINT_DIR", None)
    log = OUT / "streamlit.log"
    OUT.mkdir(exist_ok=True)
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "streamlit",
                "run",
                str(REPO / "app.py"),
                "--server.headless",
                "true",
                "--server.port",
                str(port),
                "--server.address",
                "127.0.0.1",
                "--server.fileWatcherType",
                "none",
            ],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                    if r.status == 200 and r.read().strip() == b"ok":
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"streamlit did not answer on {url}; see {log}")
            time.sleep(0.3)
        yield url
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def wait_for_charts(page, n: int = 1) -> None:
    """Wait until ``n`` plotly charts have drawn their SVG and the script stopped running."""
    page.wait_for_function(
        "Array.from(document.querySelectorAll('[data-testid=\"stPlotlyChart\"]'))"
        f".filter(c => c.querySelector('.main-svg')).length >= {n}",
        timeout=TIMEOUT_MS,
    )
    page.wait_for_function(
        "!document.querySelector('[data-testid=\"stStatusWidget\"]')"
        " || !document.querySelector('[data-testid=\"stStatusWidget\"]').innerText"
        ".includes('Running')",
        timeout=TIMEOUT_MS,
    )


def test_dashboard_in_chromium(server, tmp_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch_persistent_context(
            str(tmp_path / "profile"),
            executable_path=CHROMIUM,
            headless=True,
            args=ARGS,
            viewport={"width": 1400, "height": 1000},
        )
        try:
            page = browser.new_page()
            start = time.monotonic()
            page.goto(server, timeout=TIMEOUT_MS)
            wait_for_charts(page)
            first = time.monotonic() - start
            assert page.locator('[data-testid="stException"]').count() == 0
            # the map is a heatmap with a play button for the lead times
            assert page.locator('[data-testid="stPlotlyChart"] .heatmaplayer').count() >= 1
            assert page.get_by_text("Play").count() >= 1
            page.screenshot(path=str(OUT / "dashboard_maps.png"), full_page=True)
            # the postage stamps are drawn once their expander is opened
            page.get_by_text("Postage stamps (first 12 members at this lead)").click()
            wait_for_charts(page, 2)
            assert page.locator('[data-testid="stException"]').count() == 0

            page.get_by_role("tab", name="Point").click()
            page.wait_for_selector("text=Plume at", timeout=TIMEOUT_MS)
            wait_for_charts(page, 3)
            assert page.locator('[data-testid="stException"]').count() == 0
            page.screenshot(path=str(OUT / "dashboard_point.png"), full_page=True)

            page.get_by_role("tab", name="Export").click()
            page.wait_for_selector("text=Download ensemble NetCDF", timeout=TIMEOUT_MS)
            assert page.locator('[data-testid="stException"]').count() == 0
        finally:
            browser.close()
    for name in ("dashboard_maps.png", "dashboard_point.png"):
        png = (OUT / name).read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    print(f"first map drawn {first:.1f} s after page load")
