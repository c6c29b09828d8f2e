"""The Budgets page over real budgets (a budget file applied with the alerts
package) and real alerts (its evaluation), on SQLite and PostgreSQL: burn through
the period with known numbers, forecast, history; the empty state says how to
define budgets."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from decimal import Decimal

from alerts import evaluate_alerts
from alerts.budget_file import parse_budget_file
from alerts.budgets import apply_budgets
from dashboard.burn import budget_statuses, cumulative_spend
from dashboard.pages import budgets
from tests.dashboard.conftest import make_context
from tests.dashboard.sample import event, record

UTC = dt.UTC
TODAY = dt.date(2026, 3, 10)
BUDGETS = """
[[budget]]
name = "search-monthly"
scope = { team = "search" }
period = "monthly"
amount = "0.01"
recipients = ["lead@example.com"]

[[budget]]
name = "support-daily"
scope = { team = "support" }
period = "daily"
amount = "5"
"""


def events():
    # search, gpt-4o, 1000 in / 100 out = 0.0035 each: 2 March x1, 5 March x2
    return [event(dt.datetime(2026, 3, 2, 10, tzinfo=UTC)),
            event(dt.datetime(2026, 3, 5, 10, tzinfo=UTC)),
            event(dt.datetime(2026, 3, 5, 11, tzinfo=UTC)),
            event(dt.datetime(2026, 3, 5, 11, tzinfo=UTC), team="support")]


def test_burn_and_history(engine, tmp_path):
    record(engine, events())
    apply_budgets(engine, parse_budget_file(BUDGETS), actor="test")
    ctx = make_context(engine, today=TODAY)
    settings = replace(ctx.settings, data_dir=str(tmp_path))
    ctx = replace(ctx, settings=settings)
    now = dt.datetime(2026, 3, 10, 12, tzinfo=UTC)
    evaluate_alerts(engine, settings, now=now)
    statuses = {s.name: s for s in budget_statuses(engine, settings, now)}
    burn = cumulative_spend(engine, statuses["search-monthly"], TODAY)
    assert list(burn["day"]) == [dt.date(2026, 3, d) for d in range(1, 11)]
    assert burn["cumulative"].iloc[0] == 0
    assert burn["cumulative"].iloc[1] == Decimal("0.0035")
    assert burn["cumulative"].iloc[-1] == Decimal("0.0105")  # 3 x 0.0035
    notes, cards, history = budgets.update(ctx)
    assert notes == []
    shown = str(cards)
    assert "search-monthly" in shown and "(105.0 %)" in shown  # 0.0105 / 0.01
    assert "support-daily" in shown
    assert "forecast for the period's end" in shown
    assert "search-monthly" in str(history) and "triggered" in str(history).lower()


def test_no_budgets_explains_how_to_define_them(engine):
    record(engine, events())
    notes, cards, history = budgets.update(make_context(engine, today=TODAY))
    assert "spendwatch budgets apply" in str(cards)
    assert "No alert has fired yet" in str(history)
    assert notes == []


def test_overview_shows_the_highest_burn(engine):
    from dashboard.pages import overview

    record(engine, events())
    apply_budgets(engine, parse_budget_file(BUDGETS), actor="test")
    cards = overview.update(make_context(engine, today=TODAY), "model")[1]
    shown = str(cards)
    assert "105.0 %" in shown and "1 of 2 over budget" in shown and "search-monthly" in shown
