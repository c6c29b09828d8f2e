"""Exports: FOCUS 1.2 column by column, XLSX read back with openpyxl, CSV, and a
failed export that leaves nothing behind."""

from __future__ import annotations

import csv
import datetime as dt
import io
from decimal import Decimal as D
from pathlib import Path

import pytest
from openpyxl import load_workbook

from models.chargeback import apply_allocation, chargeback_report
from models.corrections import post_corrections
from models.event_store import EventStore
from models.exports import atomic_output
from models.focus import FOCUS_COLUMNS, FOCUS_MANDATORY, X_COLUMNS
from models.months import close_month
from spendwatch.cli import main
from spendwatch.errors import ExportError

from .conftest import ALLOCATION, MARCH, PRICES, ev, march, set_prices


def focus(database, month: str, tmp_path: Path) -> list[dict[str, str]]:  # type: ignore[no-untyped-def]
    out = tmp_path / f"focus-{month}.csv"
    assert main(["--database-url", database.url, "report", "chargeback", "--month", month,
                 "--format", "focus", "-o", str(out)]) == 0
    with out.open(newline="") as fh:
        return list(csv.DictReader(fh))


def test_focus_columns_identity_and_totals(golden, database, tmp_path: Path):  # type: ignore[no-untyped-def]
    rows = focus(database, "2026-03", tmp_path)
    assert set(FOCUS_COLUMNS) | set(X_COLUMNS) == set(rows[0])
    priced = [r for r in rows if r["x_CostSource"] != "unpriced"]
    unpriced = [r for r in rows if r["x_CostSource"] == "unpriced"]
    for row in priced:
        for column in FOCUS_MANDATORY:
            assert row[column] != "", (column, row)
        # ListCost = ListUnitPrice x PricingQuantity, exactly, on every row
        assert D(row["ListCost"]) == D(row["ListUnitPrice"]) * D(row["PricingQuantity"])
        assert D(row["ContractedCost"]) == (D(row["ContractedUnitPrice"])
                                            * D(row["PricingQuantity"]))
        assert D(row["PricingQuantity"]) == D(row["ConsumedQuantity"]) / 1_000_000
        assert row["ServiceName"] == "OpenAI API"
        assert row["ServiceCategory"] == "AI and Machine Learning"
        assert row["ProviderName"] == row["PublisherName"] == row["InvoiceIssuerName"] == "OpenAI"
        assert row["BillingPeriodStart"] == "2026-03-01T00:00:00Z"
        assert row["BillingPeriodEnd"] == "2026-04-01T00:00:00Z"
        assert row["x_PeriodStatus"] == "open" and row["ChargeClass"] == ""
    # the unpriced model: quantities, but no price and no cost (never $0)
    assert {r["x_Model"] for r in unpriced} == {"mystery"}
    for row in unpriced:
        assert row["ListCost"] == row["ListUnitPrice"] == row["BilledCost"] == ""
        assert row["ConsumedQuantity"] in ("10000", "1000")
    # meters: ads' cached tokens are their own rows at $1.00/M (2 x 400,000)
    cached = [r for r in priced if r["x_Meter"] == "input (cached)"]
    assert sum(D(r["ConsumedQuantity"]) for r in cached) == 800_000
    assert {D(r["ListUnitPrice"]) for r in cached} == {D("1.00")}
    total = sum(D(r["BilledCost"]) for r in priced)
    assert total == D("30.833336")  # the report's exact total; $30.83 rounded
    report = chargeback_report(golden, MARCH)
    assert total.quantize(D("0.01")) == report.total
    assert sum(int(r["x_RequestCount"]) for r in rows) == 9  # every event once


def test_focus_of_closed_month_and_corrections(golden, database, tmp_path: Path):  # type: ignore[no-untyped-def]
    close_month(golden, MARCH, by="f", today=dt.date(2026, 5, 1))
    EventStore(golden).insert([ev(march(15), "search", "ranker", 1_000_000, 0)])
    set_prices(golden, PRICES.replace('input_per_mtok = "2.00"', 'input_per_mtok = "3.00"'))
    post_corrections(golden)
    march_rows = focus(database, "2026-03", tmp_path)
    assert {r["x_PeriodStatus"] for r in march_rows} == {"closed"}
    # closed: priced as at close, although the price changed since
    assert sum(D(r["BilledCost"]) for r in march_rows if r["BilledCost"]) == D("30.833336")
    april = focus(database, "2026-04", tmp_path)
    assert {r["ChargeClass"] for r in april} == {"Correction"}
    assert {r["x_CorrectionOf"] for r in april} == {"2026-03"}
    assert {r["x_Correction"] for r in april} == {"true"}
    for row in april:
        assert D(row["ListCost"]) == D(row["ListUnitPrice"]) * D(row["PricingQuantity"])
        assert row["BillingPeriodStart"] == "2026-04-01T00:00:00Z"
        assert row["ChargePeriodStart"].startswith("2026-03-")
    assert sum(D(r["BilledCost"]) for r in april) == D("8.95")  # see test_months


def test_xlsx_summary_and_detail(golden, database, tmp_path: Path):  # type: ignore[no-untyped-def]
    path = tmp_path / "allocation.toml"
    path.write_text(ALLOCATION)
    apply_allocation(golden, path)
    out = tmp_path / "march.xlsx"
    assert main(["--database-url", database.url, "report", "chargeback", "--month", "2026-03",
                 "--format", "xlsx", "-o", str(out)]) == 0
    book = load_workbook(out)
    assert book.sheetnames == ["Summary", "Detail", "Splits"]
    summary = book["Summary"]
    facts = {r[0].value: r[1] for r in summary.iter_rows(min_row=2, max_row=8)}
    assert facts["status"].value == "open"
    assert facts["total (contracted)"].value == pytest.approx(30.83)
    assert isinstance(facts["total (contracted)"].value, float | int)
    assert "$" in facts["total (contracted)"].number_format
    header = next(r for r in summary.iter_rows() if r[0].value == "team")
    columns = [c.value for c in header]
    rows = {r[0].value: r for r in summary.iter_rows(min_row=header[0].row + 1)
            if r[0].value in ("search", "ads", "platform", "(unallocated)")}
    allocated = columns.index("allocated")
    assert rows["search"][allocated].value == pytest.approx(22.20)
    assert rows["search"][allocated].number_format == '"$"#,##0.00'
    assert rows["search"][columns.index("direct")].value == pytest.approx(19.30)
    assert rows["search"][columns.index("requests")].value == 5
    assert rows["search"][columns.index("% of month")].value == pytest.approx(0.7201)
    detail = book["Detail"]
    projects = [(r[0].value, r[1].value) for r in detail.iter_rows(min_row=2)]
    assert ("search", "indexer") in projects and ("search", "(shared costs)") in projects
    splits = list(book["Splits"].iter_rows(min_row=2, values_only=True))
    assert splits[2][:4] == ("platform", "fixed", "platform", "search")
    assert sum(s[5] for s in splits) == pytest.approx(2.33 + 2.00)


def test_csv_and_table(golden, database, capsys):  # type: ignore[no-untyped-def]
    assert main(["--database-url", database.url, "report", "chargeback", "--month",
                 "2026-03", "--by", "project", "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert sum(D(r["allocated"]) for r in rows) == D("30.83")
    assert {r["status"] for r in rows} == {"open"}
    assert main(["--database-url", database.url, "report", "chargeback", "--month",
                 "2026-03"]) == 0
    out = capsys.readouterr().out
    assert "(unallocated)" in out and "month total $30.83" in out


def test_failed_export_leaves_no_file(tmp_path: Path, database, golden, capsys):  # type: ignore[no-untyped-def]
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    with pytest.raises(RuntimeError), atomic_output(out_dir / "out.csv") as tmp:
        tmp.write_text("half")
        raise RuntimeError("disk full")
    assert list(out_dir.iterdir()) == []
    with pytest.raises(ExportError, match="does not exist"), atomic_output(
            tmp_path / "missing" / "x.csv"):
        pass
    assert main(["--database-url", database.url, "report", "chargeback", "--month",
                 "2026-03", "--format", "xlsx"]) == 2
    assert "add -o" in capsys.readouterr().err
    # an open month whose rollup is older than the prices: refused, nothing written
    set_prices(golden, PRICES.replace('output_per_mtok = "8.00"', 'output_per_mtok = "9.00"'))
    out = out_dir / "focus.csv"
    assert main(["--database-url", database.url, "report", "chargeback", "--month",
                 "2026-03", "--format", "focus", "-o", str(out)]) == 2
    assert "spendwatch reprice --since 2026-03-01" in capsys.readouterr().err
    assert list(out_dir.iterdir()) == []
