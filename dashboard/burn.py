"""Budgets for the dashboard: each active budget's status (from
:func:`alerts.budget_status`), its cumulative spend day by day through the current
period (from the rollups), and the alert history (:func:`alerts.alert_history`).

The alerts package owns budgets; when its tables are missing (a database older
than migration 0004) the page shows how to create them instead."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pandas as pd
from sqlalchemy import Engine, inspect

from dashboard.queries import add_money, aggregate, user_table
from models.schema import rollup_daily
from spendwatch.settings import Settings

__all__ = ["alerts_ready", "budget_statuses", "cumulative_spend", "history"]


def alerts_ready(engine: Engine) -> bool:
    """Whether the budget and alert tables exist (migration 0004)."""
    names = set(inspect(engine).get_table_names())
    return {"budgets", "alert_states"} <= names


def budget_statuses(engine: Engine, settings: Settings, now: dt.datetime) -> list[object]:
    from alerts import budget_status

    return list(budget_status(engine, settings, now))


def cumulative_spend(engine: Engine, status: object, today: dt.date) -> pd.DataFrame:
    """(day, spend, cumulative) for every day of the budget's current period up to
    ``today``; money as Decimal."""
    budget, period = status.budget, status.period  # type: ignore[attr-defined]
    scope: dict[str, str] = dict(budget.scope)
    table = user_table(engine) if "user" in scope else rollup_daily
    money = "cost_list" if budget.cost_basis == "list" else "cost"
    last = min(period.end - dt.timedelta(days=1), today)
    days = [period.start + dt.timedelta(days=i) for i in range((last - period.start).days + 1)]
    if table is None or not days:
        return pd.DataFrame({"day": days, "spend": [None] * len(days),
                             "cumulative": [Decimal(0)] * len(days)})
    frame = aggregate(engine, keys=["day"], start=period.start, end=last,
                      filters={k: (v,) for k, v in scope.items()}, counts=(), money=(money,),
                      table=table)
    by_day = dict(zip(frame["day"], frame[money], strict=True))
    running = Decimal(0)
    rows = []
    for day in days:
        spend = by_day.get(day)
        running = add_money(running, spend) or Decimal(0)
        rows.append((day, spend, running))
    out = pd.DataFrame(rows, columns=["day", "spend", "cumulative"])
    out["spend"] = out["spend"].astype(object)
    out["cumulative"] = out["cumulative"].astype(object)
    return out


def history(engine: Engine, limit: int = 100) -> pd.DataFrame:
    """The latest alerts, newest first, with how their notifications went."""
    from alerts import alert_history

    rows = []
    for a in alert_history(engine, limit):
        sent = [n for n in a.notifications if n.status == "sent"]
        failed = [n for n in a.notifications if n.status not in ("sent", "pending")]
        channels = sorted({n.channel for n in a.notifications})
        rows.append({"triggered_at": a.triggered_at, "rule": a.rule, "scope": a.scope,
                     "threshold": a.threshold, "period": a.period, "status": a.status,
                     "severity": a.severity, "summary": a.summary,
                     "resolved_at": a.resolved_at,
                     "notified": f"{len(sent)} sent" + (f", {len(failed)} failed" if failed
                                                        else "")
                     + (f" ({', '.join(channels)})" if channels else "")})
    return pd.DataFrame(rows, columns=["triggered_at", "rule", "scope", "threshold", "period",
                                       "status", "severity", "summary", "resolved_at",
                                       "notified"])
