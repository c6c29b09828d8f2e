"""Budget periods in the reporting timezone, the forecast, latency, spike and
unpriced rules, and the scheduler evaluating alerts after its rollup."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from alerts import SpendScheduler, alert_history, apply_budget_file, budget_status
from alerts.budgets import period_of
from alerts.evaluate import evaluate_alerts
from models.event_store import EventStore
from models.rollups import RollupEngine
from tests.alerts.conftest import (
    Book,
    make_settings,
    price_house_model,
    record_and_roll_up,
    spend_event,
)

UTC = dt.UTC
PARIS = "Europe/Paris"


@pytest.mark.parametrize(("kind", "now", "tz", "week_start", "expected"), [
    # 23:30 UTC on 31 October is already 1 November in Paris (UTC+1 after the DST change)
    ("monthly", dt.datetime(2026, 10, 31, 23, 30, tzinfo=UTC), PARIS, "monday",
     ("2026-11-01", "2026-12-01", "2026-11")),
    ("monthly", dt.datetime(2026, 10, 31, 23, 30, tzinfo=UTC), "UTC", "monday",
     ("2026-10-01", "2026-11-01", "2026-10")),
    ("monthly", dt.datetime(2028, 2, 29, 12, tzinfo=UTC), "UTC", "monday",
     ("2028-02-01", "2028-03-01", "2028-02")),
    # Sunday 22 November 2026
    ("weekly", dt.datetime(2026, 11, 22, 12, tzinfo=UTC), "UTC", "monday",
     ("2026-11-16", "2026-11-23", "week-2026-11-16")),
    ("weekly", dt.datetime(2026, 11, 22, 12, tzinfo=UTC), "UTC", "sunday",
     ("2026-11-22", "2026-11-29", "week-2026-11-22")),
    ("daily", dt.datetime(2026, 3, 29, 0, 30, tzinfo=UTC), PARIS, "monday",
     ("2026-03-29", "2026-03-30", "2026-03-29")),
])
def test_periods_are_calendar_periods_in_the_reporting_timezone(kind, now, tz, week_start,
                                                                expected):
    p = period_of(kind, now, tz, week_start)
    assert (p.start.isoformat(), p.end.isoformat(), p.label) == expected


def test_a_dst_day_is_23_hours_long():
    p = period_of("daily", dt.datetime(2026, 3, 29, 12, tzinfo=UTC), PARIS)
    start, end = p.bounds()
    assert end - start == dt.timedelta(hours=23)
    # 11:00 UTC = 13:00 CEST: 12 of 23 hours have passed
    assert p.elapsed(dt.datetime(2026, 3, 29, 11, tzinfo=UTC)) == pytest.approx(12 / 23)


def test_month_spend_follows_the_local_calendar(engine, database, tmp_path):
    """An event at 23:30 UTC on 31 October belongs to November in Paris."""
    settings = make_settings(database, tmp_path, timezone=PARIS)
    path = tmp_path / "b.toml"
    path.write_text('[[budget]]\nname = "m"\nperiod = "monthly"\namount = 10\n')
    apply_budget_file(engine, path)
    EventStore(engine).insert([spend_event(dt.datetime(2026, 10, 31, 22, 30, tzinfo=UTC)),
                               spend_event(dt.datetime(2026, 10, 31, 23, 30, tzinfo=UTC))])
    RollupEngine(engine, timezone=PARIS, prices=Book()).run()
    [nov] = budget_status(engine, settings, dt.datetime(2026, 11, 2, tzinfo=UTC))
    [octo] = budget_status(engine, settings, dt.datetime(2026, 10, 31, 12, tzinfo=UTC))
    assert (nov.spend.cost, octo.spend.cost) == (Decimal("2.50"), Decimal("2.50"))


RULES = """
[defaults]
recipients = ["ops@example.com"]

[[budget]]
name = "team"
scope = { team = "search" }
period = "monthly"
amount = 100

[[rule]]
name = "forecast"
kind = "forecast"
min_elapsed = 30

[[rule]]
name = "slow"
kind = "latency_p95"
threshold_ms = 2000
min_requests = 10
window_minutes = 10

[[rule]]
name = "spike"
kind = "spend_spike"
factor = 3
weeks = 2
min_spend = "5"

[[rule]]
name = "no price"
kind = "unpriced"
"""


def test_forecast_only_after_enough_of_the_period(engine, database, tmp_path):
    settings = make_settings(database, tmp_path)
    path = tmp_path / "r.toml"
    path.write_text(RULES)
    apply_budget_file(engine, path)
    # $40 by the 6th: forecast $40 / (5.5/30) = $218 > $100, but only 18 % has passed
    record_and_roll_up(engine, [spend_event(dt.datetime(2026, 11, 1, 1, tzinfo=UTC)
                                            + dt.timedelta(minutes=i)) for i in range(16)])
    early = evaluate_alerts(engine, settings, now=dt.datetime(2026, 11, 6, 12, tzinfo=UTC))
    assert not [s for s in early.triggered if "forecast" in s]
    later = evaluate_alerts(engine, settings, now=dt.datetime(2026, 11, 10, tzinfo=UTC))
    # 9 of 30 days = 30 %: $40 / 0.3 = $133.33
    assert later.triggered == ["Budget team (team=search) forecast $133.33 exceeds $100.00 "
                               "for 2026-11"]
    assert evaluate_alerts(engine, settings,
                           now=dt.datetime(2026, 11, 11, tzinfo=UTC)).triggered == []


def test_latency_spike_and_unpriced_rules(engine, database, tmp_path):
    settings = make_settings(database, tmp_path)
    path = tmp_path / "r.toml"
    path.write_text(RULES)
    apply_budget_file(engine, path)
    price_house_model(engine, tmp_path)
    now = dt.datetime(2026, 11, 19, 12, tzinfo=UTC)  # a Thursday
    slow = [spend_event(now - dt.timedelta(minutes=5, seconds=i), model="gpt-4o-mini",
                        input_tokens=10, latency_ms=3000.0 if i < 2 else 100.0, team="web")
            for i in range(20)]
    # 11:00-12:00 on Thursday: $10 (4 x $2.50); the same hour on the two Thursdays
    # before: $2.50 each -> 4x the baseline; another hour that day does not count
    spend = [spend_event(dt.datetime(2026, 11, 19, 11, 10 + i, tzinfo=UTC),
                         model="house-model") for i in range(4)]
    spend += [spend_event(dt.datetime(2026, 11, d, 11, 30, tzinfo=UTC), model="house-model")
              for d in (5, 12)]
    spend += [spend_event(dt.datetime(2026, 11, 19, 10, 30, tzinfo=UTC), model="house-model")]
    unpriced = [spend_event(now - dt.timedelta(hours=1), model="mystery", input_tokens=123)]
    record_and_roll_up(engine, slow + spend + unpriced)
    first = evaluate_alerts(engine, settings, now=now)
    assert "p95 latency 3000 ms for model gpt-4o-mini" in first.triggered
    assert "Spend spike for team search at 2026-11-19 11:00: $10.00 vs $2.50" in first.triggered
    assert "Model mystery has no price: 123 tokens not costed" in first.triggered
    assert len(first.triggered) == 3
    # 2 of 20 slow calls leave the p95 at 3000 ms; a later window without them resolves it
    later = evaluate_alerts(engine, settings, now=now + dt.timedelta(minutes=30))
    assert later.resolved == ["p95 latency 3000 ms for model gpt-4o-mini"]
    assert later.triggered == []
    kinds = {a.rule: a.status for a in alert_history(engine)}
    assert kinds == {"rule:slow": "resolved", "rule:spike": "triggered",
                     "rule:no price": "triggered"}


def test_the_scheduler_evaluates_alerts_after_its_rollup(engine, database, tmp_path,
                                                         smtp_server):
    controller, smtp = smtp_server
    settings = replace(make_settings(database, tmp_path, smtp_host="127.0.0.1",
                                     smtp_port=controller.port), rollup_interval=60.0)
    path = tmp_path / "b.toml"
    path.write_text('[[budget]]\nname = "d"\nperiod = "daily"\namount = "2.50"\n'
                    'recipients = ["lead@example.com"]\n')
    apply_budget_file(engine, path)
    price_house_model(engine, tmp_path)  # the scheduler prices with the real price book
    now = dt.datetime.now(ZoneInfo("UTC"))
    EventStore(engine).insert([spend_event(now - dt.timedelta(seconds=5),
                                           model="house-model")])
    SpendScheduler(engine, settings).run_once()
    assert [m["Subject"] for _, _, m in smtp.messages] == [
        f"[spendwatch] Budget d (*) crossed 100%: $2.50 of $2.50 for {now.date().isoformat()}"]
    SpendScheduler(engine, settings).run_once()  # a restarted scheduler: no repeat
    assert len(smtp.messages) == 1
