"""The issue's "done when": a newcomer runs `spendwatch demo` and sees all five pages
populated. The real command in a subprocess (its own data folder, a free port), then
Debian's Chromium on every page: the demo's story is on screen, with no console
errors."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

ROOT = Path(__file__).resolve().parents[2]

#: page -> texts the demo's data puts on it
PAGES = {
    "/": ("Spend today", "research", "agents", "gpt-4.1"),
    "/costs": ("Prompt caching saved", "gpt-4.1-mini", "ft:gpt-4.1-mini-2025-04-14"),
    "/reliability": ("RateLimitError", "gpt-4.1-mini", "InternalServerError"),
    "/budgets": ("research-monthly", "crossed 100%", "429 (rate limit) errors"),
    "/chargeback": ("unallocated", "helpdesk-bot", "invoice-parser"),
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def demo_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    data = tmp_path_factory.mktemp("demo")
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SPENDWATCH_DATA_DIR": str(data)}
    for name in ("SPENDWATCH_DATABASE_URL", "SPENDWATCH_SMTP_HOST", "SPENDWATCH_TIMEZONE"):
        env.pop(name, None)
    proc = subprocess.Popen([sys.executable, "-m", "spendwatch.cli", "demo", "--days", "21",
                             "--port", str(port)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 240
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"spendwatch demo exited: {proc.communicate()[1]}")
            try:
                with urllib.request.urlopen(url + "/", timeout=5):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail("spendwatch demo did not serve within 240 s")
                time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:  # pragma: no cover
            proc.kill()
            proc.wait()


@pytest.mark.browser
@pytest.mark.parametrize("path", list(PAGES))
def test_demo_page_is_populated(page: Page, demo_url: str, path: str) -> None:
    errors: list[str] = []
    page.on("console", lambda m: m.type == "error" and errors.append(m.text))
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(demo_url + path)
    body = page.locator("body")
    for text in PAGES[path]:
        expect(body).to_contain_text(text, timeout=30_000)
    if path != "/chargeback":  # a chart, drawn
        expect(page.locator(".js-plotly-plot .main-svg").first).to_be_visible()
    assert errors == []
