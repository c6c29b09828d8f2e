"""Spend reports read from rollups agree with a hand computation from the events."""

from __future__ import annotations

import datetime as dt
import random
from decimal import Decimal

import pytest

from models.costs import cost_of
from models.database import open_database
from models.event_store import EventStore
from models.reports import spend_report
from models.rollups import RollupEngine
from spendwatch.errors import ConfigurationError
from tests.integration.test_rollups import Book, ev

UTC = dt.UTC


def test_report_totals_equal_hand_computation(database):
    engine = open_database(database.url)
    rng = random.Random(7)
    events = []
    for _ in range(400):
        ts = dt.datetime(2026, 3, 1, tzinfo=UTC) + dt.timedelta(
            minutes=rng.randint(0, 60 * 24 * 40))
        inp = rng.randint(0, 9000)
        events.append(ev(ts, model=rng.choice(["gpt-4o", "gpt-4o", "mystery"]),
                         team=rng.choice(["search", "support", None]),
                         input_tokens=inp, cached_input_tokens=rng.randint(0, inp),
                         output_tokens=rng.randint(0, 900)))
    EventStore(engine).insert(events)
    book = Book()
    RollupEngine(engine, prices=book).run()
    # by hand, event by event
    by_hand: dict[tuple[dt.date, str], Decimal] = {}
    tokens: dict[tuple[dt.date, str], int] = {}
    for e in events:
        key = (e.ts.date().replace(day=1), e.team or "")
        price = book.list_price(e.model, "", False, e.ts.date())
        tokens[key] = tokens.get(key, 0) + e.input_tokens
        if price is not None:
            by_hand[key] = by_hand.get(key, Decimal(0)) + cost_of(e, price).total
    rows = spend_report(engine, by=["team"], period="month", since=dt.date(2026, 3, 1),
                        until=dt.date(2026, 4, 30))
    got = {(r.period, r.keys["team"]): r.cost_list for r in rows}
    assert got == by_hand
    assert {(r.period, r.keys["team"]): r.tokens["input_tokens"] for r in rows} == tokens
    daily = spend_report(engine, by=["model"], period="day", since=dt.date(2026, 3, 1),
                         until=dt.date(2026, 4, 30))
    assert sum((r.cost_list or Decimal(0)) for r in daily) == sum(by_hand.values())
    mystery = [r for r in daily if r.keys["model"] == "mystery"]
    assert mystery and all(r.cost_list is None and r.unpriced for r in mystery)
    engine.dispose()


def test_report_refuses_bad_arguments(database):
    engine = open_database(database.url)
    with pytest.raises(ConfigurationError, match="swap"):
        spend_report(engine, by=[], period="day", since=dt.date(2026, 2, 1),
                     until=dt.date(2026, 1, 1))
    with pytest.raises(ConfigurationError, match="choose from"):
        spend_report(engine, by=["colour"], period="day", since=dt.date(2026, 1, 1),
                     until=dt.date(2026, 1, 2))
    engine.dispose()
