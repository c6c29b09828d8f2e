"""The long-context band of a request (models.long_context), in Python and in SQL."""

from __future__ import annotations

from decimal import Decimal

import pytest
from genai_prices import types as gp
from sqlalchemy import column, create_engine, select, table

from models.long_context import band, band_sql, rate, thresholds_of

TIERED = gp.TieredPrices(base=Decimal("2.5"), tiers=[gp.Tier(start=272_000, price=Decimal(5)),
                                                     gp.Tier(start=1_000_000, price=Decimal(8))])


@pytest.mark.parametrize(("tokens", "expected"), [
    (None, 0), (0, 0), (272_000, 0), (272_001, 272_000), (1_000_000, 272_000),
    (1_000_001, 1_000_000)])
def test_band_is_the_largest_threshold_exceeded(tokens, expected):
    # a tier applies when the input is more than its start (genai-prices' rule)
    assert band(tokens, (272_000, 1_000_000)) == expected


def test_band_without_thresholds_is_zero():
    assert band(5_000_000, ()) == 0


def test_rate_picks_the_tier_of_the_band():
    assert rate(TIERED, 0) == (Decimal("2.5"), 0)
    assert rate(TIERED, 272_000) == (Decimal(5), 272_000)
    assert rate(TIERED, 1_000_000) == (Decimal(8), 1_000_000)
    assert rate(Decimal(3), 272_000) == (Decimal(3), 0)


def test_thresholds_of_tiered_values_only():
    assert thresholds_of([Decimal(1), None, TIERED, TIERED]) == (272_000, 1_000_000)


def test_band_sql_equals_band():
    engine = create_engine("sqlite://")
    t = table("t", column("n"))
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (n INTEGER)")
        values = [None, 0, 272_000, 272_001, 1_000_000, 1_000_001]
        conn.exec_driver_sql("INSERT INTO t VALUES (?)", [(v,) for v in values])
        got = conn.execute(select(t.c.n, band_sql(t.c.n, (272_000, 1_000_000)))).all()
    assert [b for _, b in got] == [band(v, (272_000, 1_000_000)) for v in values]


def test_prices_update_sees_a_changed_long_context_rate():
    """A new library that changes only gpt-5.4's rate above 272,000 input tokens is a
    change (and a day to reprice from), named with its band."""
    import copy
    import datetime as dt

    from genai_prices.data import providers

    from models._library_diff import first_affected_day, library_changes
    from models.pricing import PriceBook

    new = copy.deepcopy(providers)
    model = next(m for p in new if p.id == "openai" for m in p.models if m.id == "gpt-5.4")
    price = model.prices if isinstance(model.prices, gp.ModelPrice) else model.prices[0].prices
    price.input_mtok.tiers[0].price = Decimal(6)  # bundled: 5 above 272,000
    on = dt.date(2026, 11, 1)
    changes = library_changes(providers, new, on)
    found = [(c.model, c.tier, c.fields) for c in changes.changed]
    assert found == [("gpt-5.4", "default, input over 272,000 tokens",
                      [("input_per_mtok", Decimal(5), Decimal(6))])]
    before, after = PriceBook(library=providers), PriceBook(library=new)
    assert first_affected_day(before, after, [("gpt-5.4", None, False, on)], (), on) == on
    assert first_affected_day(before, after, [("gpt-4o", None, False, on)], (), on) is None
