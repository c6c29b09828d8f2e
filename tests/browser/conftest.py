"""Browser tests: Playwright driving Debian's Chromium (never a downloaded browser)
against the dashboard served on 127.0.0.1 from a thread, over a database filled
through the real pipeline (event store, rollups).

Without Chromium these tests are skipped with the reason shown in pytest's summary;
``SPENDWATCH_REQUIRE_BROWSER=1`` (set by CI) turns the skip into a failure."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from werkzeug.serving import make_server

#: Debian's chromium; SPENDWATCH_CHROMIUM points elsewhere (another distribution's build).
CHROMIUM = (os.environ.get("SPENDWATCH_CHROMIUM") or shutil.which("chromium")
            or "/usr/bin/chromium")
REQUIRE = os.environ.get("SPENDWATCH_REQUIRE_BROWSER") == "1"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "artifacts" / "screenshots"


def _browser_missing() -> str | None:
    if not Path(CHROMIUM).exists():
        return (f"Chromium not found at {CHROMIUM}: install it with `apt-get install "
                f"chromium chromium-driver libatomic1` (never `playwright install`)")
    try:
        import playwright  # noqa: F401
    except ImportError:
        return "playwright is not installed: pip install -e '.[test]'"
    return None


def _need_browser() -> None:
    reason = _browser_missing()
    if reason is not None:
        if REQUIRE:
            pytest.fail(f"a browser is required (SPENDWATCH_REQUIRE_BROWSER=1) but {reason}")
        pytest.skip(reason)


@pytest.fixture(autouse=True)
def _browser_available() -> None:
    _need_browser()


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    """pytest-playwright hook fixture: use Debian's chromium, never a downloaded one.
    (Session fixtures are set up before function ones: the check must happen here,
    before pytest-playwright launches the browser.)"""
    _need_browser()
    return {**browser_type_launch_args, "executable_path": CHROMIUM, "args": CHROMIUM_ARGS}


@pytest.fixture(scope="session")
def today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


@pytest.fixture(scope="session")
def dash_url(tmp_path_factory, today) -> Iterator[str]:
    """The dashboard over 45 days of a small organisation's usage (UTC)."""
    if _browser_missing() is not None:
        yield ""
        return
    from dashboard.app import create_app
    from models.database import open_database
    from spendwatch.settings import load_settings
    from tests.dashboard.sample import Book, busy_org, record

    url = f"sqlite:///{tmp_path_factory.mktemp('browser') / 'sw.db'}"
    engine = open_database(url)
    record(engine, busy_org(today))
    settings = load_settings({"database_url": url}, env={})
    app = create_app(settings, engine, prices=Book(), clock=today)
    server = make_server("127.0.0.1", 0, app.server, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(timeout=5)
    engine.dispose()


@pytest.fixture(scope="session")
def empty_dash_url(tmp_path_factory) -> Iterator[str]:
    """The dashboard over an empty database."""
    if _browser_missing() is not None:
        yield ""
        return
    from dashboard.app import create_app
    from spendwatch.settings import load_settings

    url = f"sqlite:///{tmp_path_factory.mktemp('browser-empty') / 'sw.db'}"
    app = create_app(load_settings({"database_url": url}, env={}))
    server = make_server("127.0.0.1", 0, app.server, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(timeout=5)
