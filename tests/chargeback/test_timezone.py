"""Months are calendar months in the reporting timezone; closing one there does not
invent corrections, and a late event near midnight lands in the right month."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal as D

from models.chargeback import chargeback_report
from models.corrections import post_corrections
from models.database import open_database
from models.event_store import EventStore
from models.months import close_month
from models.rollups import RollupEngine

from .conftest import APRIL, MARCH, PRICES, ev, set_prices

UTC = dt.UTC
TZ = "Europe/Paris"


def test_month_close_in_paris(database):  # type: ignore[no-untyped-def]
    engine = open_database(database.url)
    set_prices(engine, PRICES)
    EventStore(engine).insert([
        # 2026-03-01 00:30 in Paris, priced on the UTC day 2026-02-28: March
        ev(dt.datetime(2026, 2, 28, 23, 30, tzinfo=UTC), "search", "ranker", 1_000_000, 0),
        # 2026-03-29 is the DST change; 2026-04-01 00:30 in Paris (CEST): April
        ev(dt.datetime(2026, 3, 31, 22, 30, tzinfo=UTC), "search", "ranker", 500_000, 0),
        ev(dt.datetime(2026, 3, 15, 12, tzinfo=UTC), "ads", "bidder", 250_000, 0),
    ])
    RollupEngine(engine, timezone=TZ).run()
    # March: 1M x $2.00 + 0.25M x $2.00 = 2.50; April: 0.5M x $2.00 = 1.00
    assert chargeback_report(engine, MARCH).total == D("2.50")
    assert chargeback_report(engine, APRIL).total == D("1.00")
    close_month(engine, MARCH, by="f", timezone=TZ, today=dt.date(2026, 5, 1))
    assert post_corrections(engine, timezone=TZ, force=True) == 0  # nothing invented
    # 2026-03-31 23:30 in Paris (21:30 UTC), written late: a correction in April
    EventStore(engine).insert([
        ev(dt.datetime(2026, 3, 31, 21, 30, tzinfo=UTC), "ads", "bidder", 1_000_000, 0)])
    RollupEngine(engine, timezone=TZ).run()
    assert post_corrections(engine, timezone=TZ) == 1
    april = chargeback_report(engine, APRIL, by="team")
    assert {r.team: (r.direct, r.corrections) for r in april.rows} == {
        "search": (D("1.00"), D("0.00")), "ads": (D("0.00"), D("2.00"))}
    assert chargeback_report(engine, MARCH).total == D("2.50")
    engine.dispose()
