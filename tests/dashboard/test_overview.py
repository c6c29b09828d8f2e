"""The overview's headline figures with known numbers on SQLite and PostgreSQL
(events through the event store and the real rollups), and its callback called
directly."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from dashboard.headlines import headlines
from dashboard.pages import overview
from tests.dashboard.conftest import make_context
from tests.dashboard.sample import event, record

UTC = dt.UTC
TODAY = dt.date(2026, 3, 10)


def at(month: int, day: int, hour: int = 10) -> dt.datetime:
    return dt.datetime(2026, month, day, hour, tzinfo=UTC)


def known_events():
    # every event: gpt-4o, 1000 in / 100 out = 0.0025 + 0.001 = 0.0035, 120 ms
    feb = [event(at(2, 5)), event(at(2, 5)), event(at(2, 20))]
    march = [event(at(3, 1))] + [event(at(3, d)) for d in range(3, 10)]
    today = [event(at(3, 10, 8)), event(at(3, 10, 9), status_code=500, error_kind="server")]
    unpriced_today = [event(at(3, 10, 9), model="mystery-ft")]
    return feb + march + today + unpriced_today


def test_headline_figures(engine):
    record(engine, known_events())
    h = headlines(engine, TODAY)
    assert h.day.cost == Decimal("0.007")  # two priced calls today
    assert h.day.unpriced_tokens == 1100
    assert h.yesterday.cost == Decimal("0.0035")
    assert h.month_to_date.cost == Decimal("0.035")  # 10 priced calls in March
    assert h.previous_month_to_date.cost == Decimal("0.007")  # 1-10 February: 2 calls
    assert h.previous_month.cost == Decimal("0.0105")
    # last 7 complete days (3-9 March): 7 x 0.0035 / 7 = 0.0035 a day; before today
    # 0.028; 22 days left with today: 0.028 + 22 x 0.0035 = 0.105
    assert h.daily_rate == Decimal("0.0035")
    assert h.forecast == Decimal("0.105")
    assert h.month_to_date.requests == 11 and h.previous_month_to_date.requests == 2
    assert h.month_to_date.error_rate == pytest.approx(1 / 11)
    assert h.month_to_date.p95_ms == pytest.approx(147.5)  # all in [100, 150) ms


def test_forecast_never_below_what_is_spent(engine):
    # only today has spend: no complete day to take a rate from
    record(engine, [event(at(3, 10, 8))])
    h = headlines(engine, TODAY)
    assert h.daily_rate is None and h.forecast == Decimal("0.0035")


def test_callback(engine):
    record(engine, known_events())
    ctx = make_context(engine, today=TODAY)
    notes, cards, trend, top = overview.update(ctx, "team")
    shown = str(cards)
    assert "$0.007000 + unpriced" in shown and "+100.0 %" in shown  # vs yesterday
    assert "$0.03500 + unpriced" in shown and "+400.0 %" in shown  # vs 1-10 February
    assert "$0.1050" in shown and "+900.0 %" in shown  # forecast vs February's 0.0105
    assert "9.09 %" in shown and "148 ms" in shown
    assert "mystery-ft" in str(notes)  # unpriced usage is said, not drawn as $0
    assert [t["name"] for t in trend["data"]] == ["search"]
    assert sum(trend["data"][0]["y"]) == pytest.approx(0.0385)  # 30 days: 20 Feb + March
    assert "search" in str(top)
    assert overview.update(ctx, "<b>colour</b>")[0]  # a bad split is a message
