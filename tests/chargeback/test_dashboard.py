"""The chargeback page's additions: month status, cost centres, corrections, the
reconciliation panel and the XLSX/FOCUS downloads (callbacks called directly)."""

from __future__ import annotations

import base64
import csv
import datetime as dt
import io
from dataclasses import replace
from decimal import Decimal as D
from pathlib import Path

from openpyxl import load_workbook

from dashboard.app import AppContext
from dashboard.pages.chargeback import extras, focus_export, xlsx_export
from models.chargeback import apply_allocation
from models.months import close_month
from models.reconciliation import fetch_billed_costs
from spendwatch.settings import load_settings

from .conftest import ALLOCATION, MARCH, PRICES, set_prices
from .test_reconciliation import BUCKETS


def context(engine, **settings: object) -> AppContext:  # type: ignore[no-untyped-def]
    base = load_settings({"database_url": "sqlite:////nonexistent.db"}, env={})
    return AppContext(engine=engine, settings=replace(base, **settings),
                      clock=dt.date(2026, 5, 10))


def text_of(component: object) -> str:
    if isinstance(component, str):
        return component
    if isinstance(component, list | tuple):
        return " ".join(text_of(c) for c in component)
    children = getattr(component, "children", None)
    return "" if children is None else text_of(children)


def test_status_cost_centres_and_reconciliation(golden, fake_openai, tmp_path: Path):  # type: ignore[no-untyped-def]
    ctx = context(golden, openai_projects="proj_rank=ranker,proj_ads=bidder")
    shown = text_of(extras(ctx, "2026-03"))
    assert "open" in shown and "spendwatch month close 2026-03" in shown
    assert "No OpenAI bill has been read" in shown

    path = tmp_path / "allocation.toml"
    path.write_text(ALLOCATION)
    apply_allocation(golden, path)
    fake_openai.costs_buckets = list(BUCKETS)
    try:
        fetch_billed_costs(golden, admin_key="sk-admin-test", base_url=fake_openai.base_url,
                           since=MARCH, until=dt.date(2026, 3, 31))
    finally:
        fake_openai.costs_buckets = []
    close_month(golden, MARCH, by="finance", today=dt.date(2026, 5, 10))
    shown = text_of(extras(ctx, "2026-03"))
    assert "closed" in shown and "by finance" in shown
    assert "CC-100" in shown and "$20.90" in shown  # see test_chargeback
    assert "+0.25 (+1.60 %)" in shown  # billed 15.85 - estimated 15.60, see test_reconciliation


def test_downloads(golden):  # type: ignore[no-untyped-def]
    ctx = context(golden)
    payload = xlsx_export(ctx, "2026-03")
    assert payload["filename"] == "chargeback-2026-03.xlsx" and payload["base64"]
    book = load_workbook(io.BytesIO(base64.b64decode(str(payload["content"]))))
    assert book.sheetnames == ["Summary", "Detail", "Splits"]
    notes, download = focus_export(ctx, "2026-03")
    assert notes == []
    rows = list(csv.DictReader(io.StringIO(download["content"])))  # type: ignore[index]
    assert sum(D(r["BilledCost"]) for r in rows if r["BilledCost"]) == D("30.833336")
    # prices changed since the rollup: the FOCUS download says so instead of a wrong file
    set_prices(golden, PRICES.replace('output_per_mtok = "8.00"', 'output_per_mtok = "9.00"'))
    notes, download = focus_export(ctx, "2026-03")
    assert "spendwatch reprice" in text_of(notes)
