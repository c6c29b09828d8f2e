"""The app shell: it builds without touching data at import, serves every page's
shell with the navbar, asks for a login when configured, and `spendwatch serve`
warns loudly when it listens beyond loopback without one."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from dataclasses import replace

import pytest

from dashboard.app import PAGES, bind_warning, create_app
from spendwatch.settings import load_settings


def _settings(tmp_path, **kw):
    base = load_settings({"database_url": f"sqlite:///{tmp_path / 'sw.db'}"}, env={})
    return replace(base, **kw)


def test_import_dashboard_is_cheap():
    code = ("import sys, dashboard; heavy = [m for m in ('dash', 'pandas', 'plotly') "
            "if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"


def test_every_page_in_the_static_navbar(tmp_path):
    app = create_app(_settings(tmp_path))
    client = app.server.test_client()
    assert client.get("/").status_code == 200
    layout = json.dumps(client.get("/_dash-layout").get_json())
    for _, path, name in PAGES:
        assert f'"href": "{path}"' in layout.replace("\\u002f", "/"), name
        assert name in layout
    for _, path, _ in PAGES:
        assert client.get(path).status_code == 200


def test_two_apps_in_one_process_each_have_their_callbacks(tmp_path):
    first = create_app(_settings(tmp_path))
    second = create_app(_settings(tmp_path))
    for app in (first, second):
        deps = app.server.test_client().get("/_dash-dependencies").get_json()
        outputs = " ".join(d["output"] for d in deps)
        assert "overview-trend.figure" in outputs


def test_basic_auth(tmp_path):
    app = create_app(_settings(tmp_path, dashboard_user="fin", dashboard_password="s3cret"))
    client = app.server.test_client()
    refused = client.get("/")
    assert refused.status_code == 401
    assert "Basic" in refused.headers["WWW-Authenticate"]
    wrong = base64.b64encode(b"fin:nope").decode()
    assert client.get("/", headers={"Authorization": f"Basic {wrong}"}).status_code == 401
    good = base64.b64encode(b"fin:s3cret").decode()
    assert client.get("/", headers={"Authorization": f"Basic {good}"}).status_code == 200
    assert client.get("/_dash-layout",
                      headers={"Authorization": f"Basic {good}"}).status_code == 200


@pytest.mark.parametrize(("host", "user", "warned"), [
    ("127.0.0.1", "", False), ("localhost", "", False), ("0.0.0.0", "", True),
    ("10.1.2.3", "", True), ("0.0.0.0", "fin", False)])
def test_bind_warning(tmp_path, host, user, warned):
    settings = _settings(tmp_path, dashboard_user=user, dashboard_password=user and "pw")
    warning = bind_warning(settings, host)
    assert (warning is not None) == warned
    if warned:
        assert host in warning and "SPENDWATCH_DASHBOARD_PASSWORD" in warning


def test_spendwatch_serve_prints_url_and_warns(tmp_path):
    import os
    import urllib.request

    env = {**os.environ, "SPENDWATCH_DATABASE_URL": f"sqlite:///{tmp_path / 'sw.db'}",
           "SPENDWATCH_CONFIG": "", "SPENDWATCH_DASHBOARD_USER": "",
           "SPENDWATCH_DASHBOARD_PASSWORD": ""}
    env.pop("SPENDWATCH_CONFIG")
    proc = subprocess.Popen([sys.executable, "-m", "spendwatch.cli", "serve", "--host",
                             "0.0.0.0", "--port", "0"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        line = ""
        while "dashboard: http" not in line:
            line = proc.stdout.readline()
            assert line, proc.stderr.read()
        url = line.split()[1]
        with urllib.request.urlopen(url, timeout=10) as response:
            assert response.status == 200
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=10)
    assert "WITHOUT a login" in err


def test_a_failing_callback_shows_a_message_not_a_traceback(tmp_path):
    from sqlalchemy import text

    from models.database import open_database

    settings = _settings(tmp_path)
    engine = open_database(settings.database_url)
    app = create_app(settings, engine)
    with engine.begin() as conn:  # the database breaks under the running app
        conn.execute(text("DROP TABLE rollup_daily"))
    outputs = [("overview-messages", "children"), ("overview-headlines", "children"),
               ("overview-trend", "figure"), ("overview-top", "children")]
    body = {"output": ".." + "...".join(f"{i}.{p}" for i, p in outputs) + "..",
            "outputs": [{"id": i, "property": p} for i, p in outputs],
            "inputs": [{"id": "overview-by", "property": "value", "value": "model"},
                       {"id": "overview-refresh", "property": "n_intervals", "value": None}],
            "state": [], "changedPropIds": []}
    response = app.server.test_client().post("/_dash-update-component", json=body)
    assert response.status_code == 200
    shown = json.dumps(response.get_json()["response"]["overview-messages"])
    assert "Could not read the data" in shown and "rollup_daily" in shown
    assert "Traceback" not in response.get_data(as_text=True)
    engine.dispose()


def test_a_failing_single_output_callback_shows_its_message(tmp_path):
    """The chargeback page's status/reconciliation panel has one output: a failure is
    shown in it (it used to be swallowed, leaving the panel blank)."""
    from sqlalchemy import text

    from models.database import open_database

    settings = _settings(tmp_path)
    engine = open_database(settings.database_url)
    app = create_app(settings, engine)
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE rollup_daily"))
    body = {"output": "chargeback-extra.children",
            "outputs": {"id": "chargeback-extra", "property": "children"},
            "inputs": [{"id": "chargeback-month", "property": "value", "value": "2026-10"}],
            "state": [], "changedPropIds": ["chargeback-month.value"]}
    response = app.server.test_client().post("/_dash-update-component", json=body)
    assert response.status_code == 200
    shown = json.dumps(response.get_json()["response"]["chargeback-extra"])
    assert "Could not read the data" in shown
    assert "Traceback" not in response.get_data(as_text=True)
    engine.dispose()


def test_a_page_that_cannot_read_its_data_says_so(tmp_path):
    from sqlalchemy import text

    from models.database import open_database

    settings = _settings(tmp_path)
    engine = open_database(settings.database_url)
    app = create_app(settings, engine)
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE rollup_monthly"))
    outputs = [("_pages_content", "children"), ("_pages_store", "data")]
    body = {"output": ".." + "...".join(f"{i}.{p}" for i, p in outputs) + "..",
            "outputs": [{"id": i, "property": p} for i, p in outputs],
            "inputs": [{"id": "_pages_location", "property": "pathname", "value": "/costs"},
                       {"id": "_pages_location", "property": "search", "value": ""}],
            "state": [], "changedPropIds": []}
    response = app.server.test_client().post("/_dash-update-component", json=body)
    assert response.status_code == 200
    assert "Could not open this page" in response.get_data(as_text=True)
    engine.dispose()
