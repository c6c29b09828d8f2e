"""The dashboard in a real browser: every page loads with no console errors (and is
screenshotted), a filter changes the chart's data and the URL, a shared URL restores
the view, the CSV downloads hold the figures on screen, bad URL input becomes a
visible message, and an empty database explains how to start."""

from __future__ import annotations

import csv
import io
import os
import shutil
from decimal import Decimal

import pytest
from playwright.sync_api import Page, expect

from dashboard.formatting import format_money
from tests.browser.conftest import ROOT, SCREENSHOTS

pytestmark = pytest.mark.browser

PAGES = {"overview": ("/", "#overview-trend"), "costs": ("/costs", "#costs-graph"),
         "reliability": ("/reliability", "#rel-volume"),
         "budgets": ("/budgets", "#budgets-content"),
         "chargeback": ("/chargeback", "#chargeback-rows")}


def watch(page: Page) -> list[str]:
    """Collect console errors, page errors and dialogs (an executed alert())."""
    errors: list[str] = []
    page.on("console", lambda m: m.type == "error" and errors.append(m.text))
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("dialog", lambda d: (errors.append(f"dialog: {d.message}"), d.dismiss()))
    return errors


def plot_data(page: Page, graph: str) -> list[dict]:
    return page.evaluate(f"""() => {{
        const el = document.querySelector('{graph} .js-plotly-plot');
        return el && el.data ? el.data.map(t => ({{name: t.name, x: t.x, y: t.y}})) : null;
    }}""")


def wait_for_plot(page: Page, graph: str) -> None:
    page.wait_for_function(f"""() => {{
        const el = document.querySelector('{graph} .js-plotly-plot');
        return el && el.data && el.data.length > 0;
    }}""")


@pytest.mark.parametrize("name", list(PAGES))
def test_page_loads_without_console_errors(page: Page, dash_url, name):
    errors = watch(page)
    path, ready = PAGES[name]
    page.goto(dash_url + path)
    expect(page.locator(ready)).to_be_visible(timeout=20_000)
    if name in ("overview", "costs", "reliability"):
        wait_for_plot(page, ready)
    expect(page.locator(f"#nav-{path.strip('/') or 'overview'}")).to_have_class(
        "nav-link active")
    page.wait_for_load_state("networkidle")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    shot = SCREENSHOTS / f"{name}.png"
    page.set_viewport_size({"width": 1400, "height": 1000})
    page.screenshot(path=shot, full_page=True)
    assert shot.stat().st_size > 10_000
    if name == "overview":
        if os.environ.get("SPENDWATCH_UPDATE_DOCS") == "1":  # refresh the README's picture
            shutil.copyfile(shot, ROOT / "docs" / "overview.png")
        headline = page.locator("#kpi-mtd-value").inner_text()
        assert headline.startswith("$")
    assert errors == []


def test_filter_changes_the_chart_and_the_url(page: Page, dash_url):
    errors = watch(page)
    page.goto(dash_url + "/costs")
    wait_for_plot(page, "#costs-graph")
    before = plot_data(page, "#costs-graph")
    assert {t["name"] for t in before} <= {"gpt-4o", "gpt-4o-mini", "mystery-ft"}
    page.select_option("#costs-by", "team")
    page.wait_for_function("""() => {
        const el = document.querySelector('#costs-graph .js-plotly-plot');
        return el && el.data && el.data.some(t => t.name === 'search');
    }""")
    after = plot_data(page, "#costs-graph")
    assert {t["name"] for t in after} == {"search", "support", "growth", "(none)"}
    assert after != before
    assert "by=team" in page.url
    # the same URL, opened fresh, shows the same view
    page.goto(page.url)
    wait_for_plot(page, "#costs-graph")
    expect(page.locator("#costs-by")).to_have_value("team")
    assert {t["name"] for t in plot_data(page, "#costs-graph")} == {t["name"] for t in after}
    assert errors == []


def test_shared_url_with_filters(page: Page, dash_url):
    errors = watch(page)
    page.goto(dash_url + "/costs?granularity=week&by=project&team=search")
    wait_for_plot(page, "#costs-graph")
    names = {t["name"] for t in plot_data(page, "#costs-graph")}
    assert names == {"ranker", "snippets"}
    assert all(str(x).startswith("week of") for t in plot_data(page, "#costs-graph")
               for x in t["x"])
    assert errors == []


def _table(page: Page, selector: str) -> list[dict[str, str]]:
    return page.evaluate(f"""() => {{
        const t = document.querySelector('{selector}');
        const heads = [...t.querySelectorAll('thead th')].map(h => h.innerText.trim());
        return [...t.querySelectorAll('tbody tr')].map(r => Object.fromEntries(
            [...r.querySelectorAll('td')].map((c, i) => [heads[i], c.innerText.trim()])));
    }}""")


def _download(page: Page, button: str) -> list[dict[str, str]]:
    with page.expect_download() as info:
        page.click(button)
    path = info.value.path()
    return list(csv.DictReader(io.StringIO(path.read_text())))


def test_costs_csv_holds_the_figures_on_screen(page: Page, dash_url):
    page.goto(dash_url + "/costs?by=team")
    expect(page.locator("#costs-rows")).to_be_visible(timeout=20_000)
    shown = _table(page, "#costs-rows")
    rows = _download(page, "#costs-csv-button")
    assert len(rows) == len(shown) > 1
    for screen, exported in zip(shown, rows, strict=True):
        assert screen["Team"] == (exported["team"] or "(none)")
        assert screen["Requests"] == f"{int(exported['requests']):,}"
        cost = Decimal(exported["cost_usd"]) if exported["cost_usd"] else None
        assert screen["Cost"] == format_money(
            cost, unpriced_tokens=int(exported["unpriced_tokens"]))


def test_chargeback_csv_holds_the_figures_on_screen(page: Page, dash_url):
    page.goto(dash_url + "/chargeback")
    expect(page.locator("#chargeback-rows")).to_be_visible(timeout=20_000)
    shown = _table(page, "#chargeback-rows")
    rows = _download(page, "#chargeback-csv-button")
    assert len(rows) == len(shown)
    assert [r["level"] for r in rows][-2:] == ["unallocated", "total"]
    for screen, exported in zip(shown, rows, strict=True):
        cost = Decimal(exported["cost_usd"]) if exported["cost_usd"] else None
        assert screen["Cost"] == format_money(
            cost, unpriced_tokens=int(exported["unpriced_tokens"]))
        if exported["share_percent"]:
            share = Decimal(exported["share_percent"]).quantize(Decimal("0.1"))
            assert screen["Share"] == f"{share} %"


def test_bad_url_input_is_a_visible_message(page: Page, dash_url):
    errors = watch(page)
    page.goto(dash_url + "/costs?start=not-a-date&end=2026-01-01&by=colour"
              "&model=%3Cscript%3Ealert(1)%3C%2Fscript%3E&team=x%27%3B%20DROP%20TABLE%20"
              "rollup_daily%3B--")
    expect(page.locator("#costs-url-messages")).to_contain_text("is not a date")
    expect(page.locator("#costs-url-messages")).to_contain_text("cannot group by")
    expect(page.locator("#costs-messages")).to_contain_text("no usage is recorded for model")
    expect(page.locator("#costs-messages")).to_contain_text("<script>alert(1)</script>")
    page.goto(dash_url + "/chargeback?month=2026-13")
    expect(page.locator("#chargeback-url-messages")).to_contain_text("is not a month")
    expect(page.locator("#chargeback-rows")).to_be_visible()  # the data is still there
    assert errors == []


def test_empty_database_explains_how_to_start(page: Page, empty_dash_url):
    errors = watch(page)
    for path, _ in PAGES.values():
        page.goto(empty_dash_url + path)
        expect(page.locator(".empty-state").first).to_be_visible(timeout=20_000)
    page.goto(empty_dash_url + "/")
    expect(page.locator(".empty-state").first).to_contain_text("spendwatch demo")
    assert errors == []


def test_reliability_error_rate_per_model(page: Page, dash_url):
    errors = watch(page)
    page.goto(dash_url + "/reliability")
    wait_for_plot(page, "#rel-errors")
    by_class = {t["name"] for t in plot_data(page, "#rel-errors")}
    assert by_class <= {"429 rate limit", "other 4xx", "5xx", "network"}
    page.select_option("#rel-errors-view", "rate_limit")
    page.wait_for_function("""() => {
        const el = document.querySelector('#rel-errors .js-plotly-plot');
        return el && el.data && el.data.some(t => t.name === 'gpt-4o');
    }""")
    assert {t["name"] for t in plot_data(page, "#rel-errors")} == {
        "gpt-4o", "gpt-4o-mini", "mystery-ft"}
    assert "errors=rate_limit" in page.url
    expect(page.locator("#rel-failures-rows")).to_be_visible()
    assert errors == []
