"""Chargeback allocation with known numbers, on SQLite and PostgreSQL, through the
real pipeline (event store, rollups); the page's callbacks called directly."""

from __future__ import annotations

import csv
import datetime as dt
import io
from decimal import Decimal

from sqlalchemy import text

from dashboard.allocation import allocation
from dashboard.pages import chargeback
from tests.dashboard.conftest import make_context
from tests.dashboard.sample import event, record

UTC = dt.UTC
MARCH = dt.date(2026, 3, 1)


def march_events():
    t = dt.datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
    return [
        # search/ranker, gpt-4o, twice: 1000 x 2.50/M + 100 x 10/M = 0.0035 each
        event(t, team="search", project="ranker"),
        event(t, team="search", project="ranker"),
        # search/snippets, gpt-4o-mini: 1000 x 0.15/M + 1000 cached x 0.075/M
        #   + 500 x 0.60/M = 0.00015 + 0.000075 + 0.0003 = 0.000525
        event(t, model="gpt-4o-mini", team="search", project="snippets", input_tokens=2000,
              cached_input_tokens=1000, output_tokens=500),
        # support/helpdesk-bot, gpt-4o: 2000 x 2.50/M + 2000 cached x 1.25/M
        #   + 1000 x 10/M = 0.005 + 0.0025 + 0.01 = 0.0175
        event(t, team="support", project="helpdesk-bot", input_tokens=4000,
              cached_input_tokens=2000, output_tokens=1000),
        # support/helpdesk-bot, an unpriced fine-tune: 1000 + 100 tokens, no cost
        event(t, model="mystery-ft", team="support", project="helpdesk-bot"),
        # no team: 0.0035, unallocated
        event(t, team=None, project=None),
        # the last second of February (UTC): not March
        event(dt.datetime(2026, 2, 28, 23, 59, 59, tzinfo=UTC), team="growth",
              project="email-copy"),
    ]


def test_allocation_known_numbers(engine):
    record(engine, march_events())
    frame = allocation(engine, MARCH)
    got = {(r["level"], r["team"], r["project"]): r for r in frame.to_dict("records")}
    total = Decimal("0.028525")  # 0.007 + 0.000525 + 0.0175 + 0.0035
    assert list(frame["level"]) == ["team", "project", "team", "project", "project",
                                    "unallocated", "total"]
    assert list(frame["team"])[:3] == ["support", "support", "search"]  # largest first
    assert got[("team", "search", "")]["cost"] == Decimal("0.007525")
    assert got[("project", "search", "ranker")]["cost"] == Decimal("0.007")
    assert got[("project", "search", "snippets")]["cost"] == Decimal("0.000525")
    support = got[("team", "support", "")]
    assert support["cost"] == Decimal("0.0175")
    assert support["unpriced_tokens"] == 1100
    assert support["requests"] == 2
    assert got[("unallocated", "unallocated", "")]["cost"] == Decimal("0.0035")
    assert got[("total", "total", "")]["cost"] == total
    assert got[("total", "total", "")]["requests"] == 6
    assert got[("team", "search", "")]["share"] == Decimal("0.007525") / total
    shares = [r["share"] for r in frame.to_dict("records") if r["level"] != "project"
              and r["level"] != "total"]
    assert sum(shares) == Decimal(1)
    assert "growth" not in set(frame["team"])
    assert len(allocation(engine, dt.date(2026, 2, 1))) == 3  # growth, its project, total


def test_months_follow_the_reporting_timezone(engine):
    # 03:00 UTC on 1 March is still 28 February in New York
    record(engine, [event(dt.datetime(2026, 3, 1, 3, 0, tzinfo=UTC), team="growth",
                          project="email-copy")], timezone="America/New_York")
    assert len(allocation(engine, MARCH)) == 0
    feb = allocation(engine, dt.date(2026, 2, 1))
    assert list(feb["team"]) == ["growth", "growth", "total"]


def test_page_callback_and_csv(engine):
    record(engine, march_events())
    ctx = make_context(engine, today=dt.date(2026, 3, 20))
    notes, _summary, table = chargeback.update(ctx, "2026-03")
    assert notes == []
    shown = str(table)
    assert "unallocated" in shown and "$0.0035" in shown and "26.4 %" in shown
    assert "unpriced" in shown  # support has an unpriced model: never shown as $0
    payload = chargeback.csv_export(ctx, "2026-03")
    assert payload["filename"] == "chargeback-2026-03.csv"
    rows = list(csv.DictReader(io.StringIO(payload["content"])))
    by_key = {(r["level"], r["team"], r["project"]): r for r in rows}
    assert by_key[("total", "total", "")]["cost_usd"] == "0.028525"
    assert by_key[("project", "search", "snippets")]["cost_usd"] == "0.000525"
    assert by_key[("team", "search", "")]["share_percent"] == "26.3804"
    assert by_key[("unallocated", "unallocated", "")]["requests"] == "1"


def test_bad_month_is_a_message_not_an_error(engine):
    record(engine, march_events())
    ctx = make_context(engine, today=dt.date(2026, 3, 20))
    for bad in ("2026-13", "March", "2026-03'; DROP TABLE rollup_monthly; --",
                "<script>alert(1)</script>"):
        notes, _, table = chargeback.update(ctx, bad)
        assert any("is not a month" in str(n) for n in notes), bad
        assert "helpdesk-bot" in str(table)  # the current month (March) is shown instead
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM rollup_monthly")).scalar() > 0


def test_empty_database_explains_how_to_start(engine):
    ctx = make_context(engine, today=dt.date(2026, 3, 20))
    notes, _summary, table = chargeback.update(ctx, None)
    assert "spendwatch demo" in str(notes) and "collector.instrument" in str(notes)
    assert "No usage was recorded in March 2026" in str(table)


def test_rollups_built_in_another_timezone_are_flagged(engine):
    record(engine, march_events(), timezone="UTC")
    ctx = make_context(engine, today=dt.date(2026, 3, 20), timezone="Europe/Paris")
    notes, _summary, table = chargeback.update(ctx, "2026-03")
    assert "built in timezone UTC" in str(notes) and "--rebuild" in str(notes)
    assert "helpdesk-bot" in str(table)  # still shown, with the warning
