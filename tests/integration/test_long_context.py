"""Long-context rates end to end (SQLite and PostgreSQL): requests above a model's
threshold are rolled up apart and priced at the library's long-context rate; reports,
month close and the migration that adds the key."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from sqlalchemy import select, text

from models.database import create_db_engine, open_database, upgrade
from models.event_store import EventStore
from models.months import close_month, month_lines
from models.pricing import PriceBook
from models.reports import spend_report
from models.rollups import RollupEngine
from models.schema import (
    CHARGEBACK_COUNTS,
    ROLLUP_SUMS,
    chargeback_snapshot,
    rollup_daily,
    rollup_daily_user,
    rollup_monthly,
)
from tests.integration.test_rollups import ev

UTC = dt.UTC
DAY = dt.date(2026, 11, 3)
D = Decimal


def _events() -> list:
    at = dt.datetime(2026, 11, 3, 12, tzinfo=UTC)
    return [
        # below the threshold (272,000 is not above it): base rate 2.5 / 0.25 / 15
        ev(at, model="gpt-5.4", input_tokens=272_000, output_tokens=1_000, user="ana"),
        ev(at, model="gpt-5.4", input_tokens=100_000, cached_input_tokens=50_000,
           output_tokens=2_000, user="ana"),
        # above: 5 / 0.5 / 22.5 for every token of the request
        ev(at, model="gpt-5.4", input_tokens=300_000, cached_input_tokens=100_000,
           output_tokens=10_000, user="ana"),
        # a model without long-context rates, above the threshold: its one rate 2.5 / 10
        ev(at, model="gpt-4o", input_tokens=300_000, output_tokens=1_000, user="bo"),
    ]


def test_long_context_requests_are_rolled_up_apart_and_priced_at_their_rate(database):
    engine = open_database(database.url)
    EventStore(engine).insert(_events())
    RollupEngine(engine, prices=PriceBook.from_rows([])).run()
    with engine.connect() as conn:
        rows = {(r.model, r.long_context): r for r in conn.execute(select(rollup_daily))}
        users = {r.user: r for r in conn.execute(select(rollup_daily_user))}
        monthly = {(r.model, r.long_context): r for r in conn.execute(select(rollup_monthly))}
    assert set(rows) == {("gpt-5.4", 0), ("gpt-5.4", 272_000), ("gpt-4o", 272_000)}
    base, long = rows[("gpt-5.4", 0)], rows[("gpt-5.4", 272_000)]
    assert (base.requests, long.requests) == (2, 1)
    # base: 272,000 x 2.5 + 1,000 x 15 = 0.68 + 0.015 = 0.695
    #       50,000 x 2.5 + 50,000 x 0.25 + 2,000 x 15 = 0.125 + 0.0125 + 0.03 = 0.1675
    #       = 0.8625 (per million tokens throughout)
    assert base.cost_list == D("0.8625")
    # long: 200,000 x 5 + 100,000 x 0.5 + 10,000 x 22.5 = 1.00 + 0.05 + 0.225 = 1.275
    assert long.cost_list == D("1.275") and long.cost_contract == D("1.275")
    assert "input over 272,000 tokens" in long.price_ref
    assert "input over" not in base.price_ref
    # gpt-4o has one rate: 300,000 x 2.5 + 1,000 x 10 = 0.75 + 0.01 = 0.76
    assert rows[("gpt-4o", 272_000)].cost_list == D("0.76")
    # spend per user adds the bands up: 0.8625 + 1.275 = 2.1375
    assert users["ana"].cost_list == D("2.1375") and users["ana"].requests == 3
    assert monthly[("gpt-5.4", 272_000)].cost_list == D("1.275")
    # the report totals what a hand computation gives: 2.1375 + 0.76 = 2.8975
    report = spend_report(engine, by=["model"], period="day", since=DAY, until=DAY)
    assert sum(r.cost_contract for r in report) == D("2.8975")
    by_band = {tuple(r.keys.values()): r.cost_contract for r in spend_report(
        engine, by=["model", "long_context"], period="month", since=DAY, until=DAY)}
    assert by_band == {("gpt-5.4", 0): D("0.8625"), ("gpt-5.4", 272_000): D("1.275"),
                       ("gpt-4o", 272_000): D("0.76")}
    engine.dispose()


@pytest.fixture
def closed(database):
    """(engine, price book) with the events of ``_events`` and November 2026 closed."""
    engine = open_database(database.url)
    EventStore(engine).insert(_events())
    book = PriceBook.from_rows([])
    close_month(engine, dt.date(2026, 11, 1), by="test", prices=book,
                today=dt.date(2026, 12, 2))
    yield engine, book
    engine.dispose()


def test_a_closed_month_keeps_each_band_with_its_unit_prices(closed):
    engine, _ = closed
    is_closed, lines = month_lines(engine, dt.date(2026, 11, 1))
    assert is_closed
    long = [line for line in lines if line.model == "gpt-5.4" and line.long_context]
    assert len(long) == 1 and long[0].cost_list == D("1.275")
    assert '"input_per_mtok": "5"' in long[0].prices


def test_migration_keeps_rollup_and_chargeback_rows(database):
    """0007 -> 0008 on a database with rows: they get long_context 0, the primary keys
    take the new column (two rows differing only by it can be stored), and a closed
    month's snapshot keeps its money and unit prices."""
    from alembic import command

    import models.database as dbmod

    engine = create_db_engine(database.url)
    sums = ", ".join(f'"{name}"' for name in ROLLUP_SUMS)
    zeros = ", ".join("0" for _ in ROLLUP_SUMS)
    with engine.begin() as conn:
        command.upgrade(dbmod._alembic_config(conn), "0007")
        conn.execute(text(
            f"INSERT INTO rollup_daily (day, price_date, model, service_tier, is_batch, "
            f"endpoint, team, project, {sums}, unpriced_tokens, cost_list) VALUES "
            f"('2026-10-01', '2026-10-01', 'gpt-4o', '', false, 'chat.completions', 't', "
            f"'p', {zeros}, 0, '0.5')"))
        counts = ", ".join(f'"{name}"' for name in CHARGEBACK_COUNTS)
        conn.execute(text(
            f"INSERT INTO chargeback_snapshot (month, day, price_date, model, service_tier, "
            f"is_batch, endpoint, team, project, {counts}, cost_list, cost_contract, prices) "
            f"VALUES ('2026-10-01', '2026-10-01', '2026-10-01', 'gpt-4o', '', false, "
            f"'chat.completions', 't', 'p', {', '.join('7' for _ in CHARGEBACK_COUNTS)}, "
            f"'0.123456789', '0.1', '{{\"list\": null}}')"))
    assert upgrade(engine, "0008")[1] == "0008"
    with engine.begin() as conn:
        row = conn.execute(select(rollup_daily)).one()
        assert (row.long_context, row.requests, row.cost_list) == (0, 0, D("0.5"))
        conn.execute(text(
            f"INSERT INTO rollup_daily (day, price_date, model, service_tier, is_batch, "
            f"long_context, endpoint, team, project, {sums}, unpriced_tokens) VALUES "
            f"('2026-10-01', '2026-10-01', 'gpt-4o', '', false, 272000, 'chat.completions', "
            f"'t', 'p', {zeros}, 0)"))
        assert conn.execute(text("SELECT count(*) FROM rollup_daily")).scalar() == 2
        snap = conn.execute(select(chargeback_snapshot)).one()
        assert (snap.long_context, snap.requests, snap.cost_list, snap.prices) == (
            0, 7, D("0.123456789"), '{"list": null}')
    engine.dispose()


def test_a_late_long_context_event_is_corrected_in_its_band(closed):
    from models.corrections import post_corrections

    engine, book = closed
    # a late 400,000-token request of the closed month: 400,000 x 5 + 1,000 x 22.5 = 2.0225
    EventStore(engine).insert([ev(dt.datetime(2026, 11, 20, tzinfo=UTC), model="gpt-5.4",
                                  input_tokens=400_000, output_tokens=1_000)])
    assert post_corrections(engine, prices=book, force=True) == 1
    _, lines = month_lines(engine, dt.date(2026, 12, 1))
    (line,) = [line for line in lines if line.correction_of]
    assert (line.long_context, line.cost_list, line.counts["requests"]) == (
        272_000, D("2.0225"), 1)


def test_hourly_spend_prices_each_band(database):
    from alerts.rules import _hour_spend

    engine = open_database(database.url)
    EventStore(engine).insert(_events())
    with engine.connect() as conn:
        spend = _hour_spend(conn, "team", dt.datetime(2026, 11, 3, 12, tzinfo=UTC),
                            PriceBook.from_rows([]))
    # the events' team is "search": 0.8625 + 1.275 + 0.76 (see the first test)
    assert spend == {"search": D("2.8975")}
    engine.dispose()
