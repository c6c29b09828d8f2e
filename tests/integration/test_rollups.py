"""Rollups on SQLite and PostgreSQL: exact, incremental, idempotent, late events in
the right day, calendar days in the reporting timezone, closed months untouched."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from models.costs import cost_of
from models.database import open_database
from models.event_store import EventStore
from models.events import UsageEvent
from models.ids import uuid7
from models.rollups import RollupEngine
from models.schema import rollup_daily, rollup_monthly
from tests.prices import Price

UTC = dt.UTC


class Book:
    """gpt-4o: $2.50 / $10 per M, cached $1.25; from the 15th of March 2026 $2 / $8.
    A contract for team pricing of gpt-4o: $2 / $8 flat. 'mystery' is unpriced."""

    def list_price(self, model, tier, batch, on, long_context=0):
        if model != "gpt-4o":
            return None
        if on >= dt.date(2026, 3, 15):
            return Price("list gpt-4o from 2026-03-15", Decimal("2"), Decimal("8"), Decimal("1"))
        return Price("list gpt-4o", Decimal("2.50"), Decimal("10"), Decimal("1.25"))

    def contract_price(self, model, tier, batch, on, long_context=0):
        return None


def ev(ts: dt.datetime, model: str = "gpt-4o", team: str | None = "search", **kw) -> UsageEvent:
    base = dict(provider="openai", endpoint="chat.completions", model=model,
                usage_reported=True, input_tokens=1000, cached_input_tokens=0,
                cache_write_tokens=0, output_tokens=100, reasoning_tokens=0,
                audio_input_tokens=0, audio_output_tokens=0, latency_ms=120.0,
                status_code=200, attempts=1, team=team, project="ranker")
    base.update(kw)
    return UsageEvent(id=uuid7(), ts=ts, **base)


@pytest.fixture
def engine(database):
    engine = open_database(database.url)
    yield engine
    engine.dispose()


def daily(engine) -> list[dict]:
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(
            select(rollup_daily).order_by(rollup_daily.c.day, rollup_daily.c.model))]


def test_price_change_on_the_15th_and_unpriced_model(engine):
    store = EventStore(engine)
    store.insert([
        ev(dt.datetime(2026, 3, 14, 23, 59, tzinfo=UTC)),
        ev(dt.datetime(2026, 3, 15, 0, 1, tzinfo=UTC)),
        ev(dt.datetime(2026, 3, 15, 12, 0, tzinfo=UTC), cached_input_tokens=800),
        ev(dt.datetime(2026, 3, 15, 12, 0, tzinfo=UTC), model="mystery"),
    ])
    result = RollupEngine(engine, prices=Book()).run()
    assert result.days == [dt.date(2026, 3, 14), dt.date(2026, 3, 15)]
    rows = daily(engine)
    by = {(r["day"], r["model"]): r for r in rows}
    # the 14th: 1,000 x $2.50/M + 100 x $10/M = $0.0025 + $0.001 = $0.0035
    assert by[(dt.date(2026, 3, 14), "gpt-4o")]["cost_list"] == Decimal("0.0035")
    # the 15th, new price: (1,000 x $2 + 100 x $8)/M = $0.0028
    # plus (200 x $2 + 800 x $1 + 100 x $8)/M = $0.002; total $0.0048
    r15 = by[(dt.date(2026, 3, 15), "gpt-4o")]
    assert (r15["requests"], r15["input_tokens"], r15["cached_input_tokens"]) == (2, 2000, 800)
    assert r15["cost_list"] == Decimal("0.0048")
    assert r15["cost_contract"] == Decimal("0.0048")  # no contract: the list price
    mystery = by[(dt.date(2026, 3, 15), "mystery")]
    assert mystery["cost_list"] is None and mystery["cost_contract"] is None  # never $0
    assert mystery["unpriced_tokens"] == 1100 and mystery["input_tokens"] == 1000
    with engine.connect() as conn:
        (month,) = conn.execute(select(rollup_monthly).where(
            rollup_monthly.c.model == "gpt-4o")).all()
    # month: $0.0035 + $0.0048 = $0.0083
    assert month.cost_list == Decimal("0.0083") and month.requests == 3


def test_incremental_idempotent_and_late_events(engine):
    store = EventStore(engine)
    store.insert([ev(dt.datetime(2026, 5, d, 10, tzinfo=UTC)) for d in (1, 2, 3)])
    roll = RollupEngine(engine, prices=Book())
    roll.run()
    before = daily(engine)
    roll.run()
    assert daily(engine) == before  # idempotent
    # Those events were ingested an hour ago (beyond the watermark's 5-minute overlap)...
    from sqlalchemy import text

    with engine.begin() as conn:
        conn.execute(text("UPDATE usage_events SET ingested_at = :t"),
                      {"t": (dt.datetime.now(UTC) - dt.timedelta(hours=1)).replace(
                          tzinfo=None) if engine.dialect.name == "sqlite"
                       else dt.datetime.now(UTC) - dt.timedelta(hours=1)})
    assert roll.run().days == []  # nothing new to do
    # ... and a late event for May 1st arrives now
    store.insert([ev(dt.datetime(2026, 5, 1, 18, tzinfo=UTC), output_tokens=50)])
    late = roll.run()
    assert dt.date(2026, 5, 1) in late.days and dt.date(2026, 5, 3) not in late.days
    may1 = next(r for r in daily(engine) if r["day"] == dt.date(2026, 5, 1))
    assert (may1["requests"], may1["output_tokens"]) == (2, 150)


def test_errors_latency_histogram_and_retries(engine):
    t = dt.datetime(2026, 6, 1, 12, tzinfo=UTC)
    EventStore(engine).insert([
        ev(t, latency_ms=5.0),
        ev(t, latency_ms=700.0, attempts=3),
        ev(t, status_code=429, error_kind="rate_limit", usage_reported=False,
           input_tokens=None, output_tokens=None, latency_ms=70000.0),
        ev(t, status_code=None, error_kind="network", usage_reported=False,
           input_tokens=None, output_tokens=None, streamed=True, ttft_ms=30.0),
    ])
    RollupEngine(engine, prices=Book()).run()
    (r,) = daily(engine)
    assert (r["requests"], r["errors_rate_limit"], r["errors_network"], r["retries"],
            r["usage_missing"], r["streamed"]) == (4, 1, 1, 2, 2, 1)
    assert r["lat_00"] == 1 and r["lat_08"] == 1 and r["lat_19"] == 1  # <10, 600-800, >=60s
    assert r["ttft_count"] == 1 and r["ttft_02"] == 1  # 25-50 ms


@pytest.mark.parametrize(("tz", "ts", "day"), [
    # Asia/Kolkata is UTC+5:30: 18:29 UTC is 23:59 local, 18:30 UTC is the next day
    ("Asia/Kolkata", dt.datetime(2026, 1, 10, 18, 29, tzinfo=UTC), dt.date(2026, 1, 10)),
    ("Asia/Kolkata", dt.datetime(2026, 1, 10, 18, 30, tzinfo=UTC), dt.date(2026, 1, 11)),
    # New York on 2026-03-08 springs forward: the day starts 05:00 UTC, the next 04:00
    ("America/New_York", dt.datetime(2026, 3, 8, 4, 59, tzinfo=UTC), dt.date(2026, 3, 7)),
    ("America/New_York", dt.datetime(2026, 3, 8, 5, 0, tzinfo=UTC), dt.date(2026, 3, 8)),
    ("America/New_York", dt.datetime(2026, 3, 9, 3, 59, tzinfo=UTC), dt.date(2026, 3, 8)),
    ("America/New_York", dt.datetime(2026, 3, 9, 4, 0, tzinfo=UTC), dt.date(2026, 3, 9)),
    # ... and falls back on 2026-11-01 (a 25-hour day: 04:00 UTC to 05:00 UTC next day)
    ("America/New_York", dt.datetime(2026, 11, 2, 4, 59, tzinfo=UTC), dt.date(2026, 11, 1)),
    ("America/New_York", dt.datetime(2026, 11, 2, 5, 0, tzinfo=UTC), dt.date(2026, 11, 2)),
])
def test_reporting_timezone_day_boundaries(engine, tz, ts, day):
    EventStore(engine).insert([ev(ts)])
    RollupEngine(engine, timezone=tz, prices=Book()).run()
    (row,) = daily(engine)
    assert row["day"] == day and row["price_date"] == ts.date()


def test_timezone_change_requires_rebuild(engine):
    from spendwatch.errors import ConfigurationError

    EventStore(engine).insert([ev(dt.datetime(2026, 1, 10, 20, tzinfo=UTC))])
    RollupEngine(engine, prices=Book()).run()
    with pytest.raises(ConfigurationError, match="--rebuild"):
        RollupEngine(engine, timezone="Asia/Kolkata", prices=Book()).run()
    RollupEngine(engine, timezone="Asia/Kolkata", prices=Book()).run(rebuild=True)
    assert [r["day"] for r in daily(engine)] == [dt.date(2026, 1, 11)]


def test_closed_month_is_never_changed(engine):
    store = EventStore(engine)
    store.insert([ev(dt.datetime(2026, 2, 10, tzinfo=UTC))])
    RollupEngine(engine, prices=Book()).run()
    frozen = daily(engine)
    store.insert([ev(dt.datetime(2026, 2, 11, tzinfo=UTC))])
    closed = RollupEngine(engine, prices=Book(),
                          closed_months=lambda conn: {dt.date(2026, 2, 1)})
    result = closed.run()
    assert dt.date(2026, 2, 11) in result.skipped_closed and result.days == []
    assert daily(engine) == frozen


# -- property: incremental == brute force ---------------------------------------------------
class BandedBook(Book):
    """Book, plus a long-context rate for gpt-4o: above 3,000 input tokens every token of
    the request costs twice the base rate (models.long_context)."""

    context_thresholds = (3000,)

    def list_price(self, model, tier, batch, on, long_context=0):
        base = super().list_price(model, tier, batch, on)
        if base is None or long_context < 3000:
            return base
        return Price(base.ref + " above 3000", base.input_per_mtok * 2,
                     base.output_per_mtok * 2, base.cached_input_per_mtok * 2)


_T0 = dt.datetime(2026, 4, 28, tzinfo=UTC)
event_st = st.builds(
    lambda minutes, model, team, inp, out: (minutes, model, team, inp, out),
    st.integers(0, 60 * 24 * 6), st.sampled_from(["gpt-4o", "mystery"]),
    st.sampled_from(["a", "b", None]), st.integers(0, 5000), st.integers(0, 800))


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=st.lists(st.lists(event_st, min_size=1, max_size=8), min_size=1, max_size=4))
def test_incremental_equals_brute_force(database, batches):
    engine = open_database(database.url)
    try:
        from sqlalchemy import text

        with engine.begin() as conn:
            for table in ("usage_events", "rollup_daily", "rollup_monthly", "rollup_daily_user",
                          "rollup_state"):
                conn.execute(text(f"DELETE FROM {table}"))
        store = EventStore(engine)
        book = BandedBook()
        roll = RollupEngine(engine, timezone="America/New_York", prices=book)
        expected: dict[tuple, list[int]] = defaultdict(lambda: [0, 0, 0])
        cost: dict[tuple, Decimal] = defaultdict(Decimal)  # priced event by event
        tz = roll.tz
        for batch in batches:  # arbitrary order: later batches hold earlier timestamps too
            events = [ev(_T0 + dt.timedelta(minutes=m), model=model, team=team,
                         input_tokens=i, output_tokens=o) for m, model, team, i, o in batch]
            store.insert(events)
            roll.run()
            for e in events:
                key = (e.ts.astimezone(tz).date(), e.model, e.team or "")
                expected[key][0] += 1
                expected[key][1] += e.input_tokens
                expected[key][2] += e.output_tokens
                price = book.list_price(e.model, None, False, e.ts.date(),
                                        3000 if e.input_tokens > 3000 else 0)
                if price is not None:
                    cost[key] += cost_of(e, price).total
        got: dict[tuple, list[int]] = defaultdict(lambda: [0, 0, 0])
        got_cost: dict[tuple, Decimal] = defaultdict(Decimal)
        for r in daily(engine):
            key = (r["day"], r["model"], r["team"])
            got[key][0] += r["requests"]
            got[key][1] += r["input_tokens"]
            got[key][2] += r["output_tokens"]
            if r["cost_list"] is not None:
                got_cost[key] += r["cost_list"]
        assert dict(got) == dict(expected)
        assert {k: v for k, v in got_cost.items() if v} == {k: v for k, v in cost.items() if v}
        # monthly rows and per-user rows hold the same totals as the daily rows
        from models.schema import rollup_daily_user

        by_month: dict[tuple, list] = defaultdict(lambda: [0, 0, Decimal(0)])
        by_user: dict[tuple, list] = defaultdict(lambda: [0, 0, Decimal(0)])
        for r in daily(engine):
            for acc, key in ((by_month, (r["day"].replace(day=1), r["model"], r["team"])),
                             (by_user, (r["day"], r["model"], r["team"]))):
                acc[key][0] += r["requests"]
                acc[key][1] += r["output_tokens"]
                acc[key][2] += r["cost_list"] or 0
        with engine.connect() as conn:
            months: dict[tuple, list] = defaultdict(lambda: [0, 0, Decimal(0)])
            for r in conn.execute(select(rollup_monthly)):
                months[(r.month, r.model, r.team)][0] += r.requests
                months[(r.month, r.model, r.team)][1] += r.output_tokens
                months[(r.month, r.model, r.team)][2] += r.cost_list or 0
            users: dict[tuple, list] = defaultdict(lambda: [0, 0, Decimal(0)])
            for r in conn.execute(select(rollup_daily_user)):
                users[(r.day, r.model, r.team)][0] += r.requests
                users[(r.day, r.model, r.team)][1] += r.output_tokens
                users[(r.day, r.model, r.team)][2] += r.cost_list or 0
        assert dict(months) == dict(by_month)
        assert dict(users) == dict(by_user)
    finally:
        engine.dispose()


def test_daily_spend_per_user(engine):
    """rollup_daily_user: per user x team x project x model, priced like rollup_daily
    (across a price change inside one day's two price dates it is summed), unpriced
    model cost NULL, events without a user under ''."""
    store = EventStore(engine)
    store.insert([
        ev(dt.datetime(2026, 3, 14, 10, tzinfo=UTC), user="ana"),
        ev(dt.datetime(2026, 3, 14, 11, tzinfo=UTC), user="ana", output_tokens=200),
        ev(dt.datetime(2026, 3, 14, 12, tzinfo=UTC), user="bo", error_kind="rate_limit",
           status_code=429, usage_reported=False, input_tokens=None, output_tokens=None),
        ev(dt.datetime(2026, 3, 14, 13, tzinfo=UTC), user=None),
        ev(dt.datetime(2026, 3, 14, 14, tzinfo=UTC), user="ana", model="mystery"),
    ])
    RollupEngine(engine, prices=Book()).run()
    from models.schema import rollup_daily_user

    with engine.connect() as conn:
        rows = {(r.user, r.model): r for r in conn.execute(select(rollup_daily_user))}
    assert set(rows) == {("ana", "gpt-4o"), ("bo", "gpt-4o"), ("", "gpt-4o"),
                         ("ana", "mystery")}
    ana = rows[("ana", "gpt-4o")]
    assert (ana.requests, ana.errors, ana.input_tokens, ana.output_tokens) == (2, 0, 2000, 300)
    # 2000 input x $2.50/M = $0.005; 300 output x $10/M = $0.003 -> $0.008
    assert ana.cost_list == Decimal("0.008")
    assert ana.cost_contract == Decimal("0.008")
    bo = rows[("bo", "gpt-4o")]
    assert (bo.requests, bo.errors, bo.cost_list) == (1, 1, Decimal(0))
    # 1000 x $2.50/M + 100 x $10/M = $0.0035
    assert rows[("", "gpt-4o")].cost_list == Decimal("0.0035")
    mystery = rows[("ana", "mystery")]
    assert mystery.cost_list is None and mystery.unpriced_tokens == 1100
    # the per-user rows add up to the daily rollup
    total = sum((r.cost_list or Decimal(0)) for r in rows.values())
    assert total == sum((r["cost_list"] or Decimal(0)) for r in daily(engine))


def _all_rows(engine) -> dict[str, list[tuple]]:
    from models.schema import rollup_daily_user

    with engine.connect() as conn:
        return {t.name: sorted(tuple(r) for r in conn.execute(select(t)))
                for t in (rollup_daily, rollup_monthly, rollup_daily_user)}


def test_rebuild_with_parallel_readers_equals_one_reader(engine, monkeypatch):
    """A rebuild reads several days at once on connections of its own; the rows are the
    same as with one reader in the rollup's own transaction (40 days, two months, two
    timezones' worth of boundaries, errors, streams, users)."""
    import models.rollups as rollups

    t0 = dt.datetime(2026, 4, 10, 3, tzinfo=UTC)
    EventStore(engine).insert([
        ev(t0 + dt.timedelta(hours=7 * i), model=("gpt-4o", "mystery")[i % 2],
           team=("search", None, "ads")[i % 3], user=(f"u{i % 4}" if i % 5 else None),
           streamed=bool(i % 2), ttft_ms=(40.0 * i if i % 2 else None),
           latency_ms=float(13 * i), error_kind=("rate_limit" if i % 7 == 0 else None),
           attempts=1 + i % 3)
        for i in range(140)])
    monkeypatch.setattr(rollups, "_MAX_READERS", 1)
    RollupEngine(engine, timezone="Asia/Kolkata", prices=Book()).run(rebuild=True)
    one = _all_rows(engine)
    monkeypatch.setattr(rollups, "_MAX_READERS", 4)
    monkeypatch.setattr(rollups.os, "cpu_count", lambda: 4)
    reads: list[str] = []
    real = RollupEngine._read_apart
    monkeypatch.setattr(RollupEngine, "_read_apart", lambda self, day: (
        reads.append(str(day)), real(self, day))[1])
    result = RollupEngine(engine, timezone="Asia/Kolkata", prices=Book()).run(rebuild=True)
    assert len(reads) == len(result.days) > 30  # every day was read apart
    assert _all_rows(engine) == one
    assert len(one["rollup_daily"]) > 40 and len(one["rollup_daily_user"]) > 40
    assert [r[0] for r in one["rollup_monthly"]][:1] == [dt.date(2026, 4, 1)]


def test_overlap_day_reread_only_when_it_gained_events(engine):
    """Events ingested just before the last run (inside the watermark's overlap) name
    their day again on the next run; it is re-aggregated only if it holds events the
    last run did not count (a late commit), not every time."""
    from sqlalchemy import text

    store = EventStore(engine)
    store.insert([ev(dt.datetime(2026, 5, 1, h, tzinfo=UTC)) for h in (9, 10)])
    roll = RollupEngine(engine, prices=Book())
    assert roll.run().days == [dt.date(2026, 5, 1)]
    assert roll.run().days == []  # inside the overlap, nothing new: not re-read
    # an insert that committed after the last run but was stamped before its watermark
    with engine.connect() as conn:
        mark = conn.execute(text(
            "SELECT value FROM rollup_state WHERE name = 'watermark'")).scalar()
    stamped = dt.datetime.fromisoformat(mark) - dt.timedelta(minutes=1)
    late = ev(dt.datetime(2026, 5, 1, 11, tzinfo=UTC), output_tokens=7)
    store.insert([late])
    from models.schema import usage_events

    with engine.begin() as conn:
        conn.execute(usage_events.update().where(usage_events.c.id == late.id)
                     .values(ingested_at=stamped))
    assert roll.run().days == [dt.date(2026, 5, 1)]
    may1 = next(r for r in daily(engine) if r["day"] == dt.date(2026, 5, 1))
    assert (may1["requests"], may1["output_tokens"]) == (3, 207)


def test_rebuild_inserting_days_in_batches_equals_incremental(engine, monkeypatch):
    """A whole rebuild inserts several days' rows at a time (no per-day deletes); the
    rows equal those of an incremental run, whatever the batch size."""
    import models.rollups as rollups

    t0 = dt.datetime(2026, 4, 10, 3, tzinfo=UTC)
    EventStore(engine).insert([
        ev(t0 + dt.timedelta(hours=5 * i), model=("gpt-4o", "mystery")[i % 2],
           team=("search", None)[i % 2], user=f"u{i % 3}", latency_ms=float(11 * i))
        for i in range(120)])
    RollupEngine(engine, prices=Book()).run()
    incremental = _all_rows(engine)
    monkeypatch.setattr(rollups, "_FLUSH_ROWS", 7)  # a flush every day or two
    result = RollupEngine(engine, prices=Book()).run(rebuild=True)
    assert len(result.days) > 20
    assert _all_rows(engine) == incremental


def test_rebuild_until_a_day_keeps_the_later_days(engine):
    """`rollup --rebuild --until D` rebuilds up to D; the days after it keep their rows
    (they used to be deleted and not rebuilt)."""
    EventStore(engine).insert([ev(dt.datetime(2026, 4, d, 12, tzinfo=UTC)) for d in (1, 2, 3)])
    RollupEngine(engine, prices=Book()).run()
    before = _all_rows(engine)
    result = RollupEngine(engine, prices=Book()).run(rebuild=True, until=dt.date(2026, 4, 2))
    assert result.days == [dt.date(2026, 4, 1), dt.date(2026, 4, 2)]
    assert _all_rows(engine) == before
