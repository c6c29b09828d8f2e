"""The scheduler's chargeback jobs, run after each rollup (registered on import, as
``alerts.evaluate`` registers the alert evaluation; ``alerts.scheduler`` imports
both): post corrections when the rollup met closed months, read OpenAI's Costs API
once a UTC day when an admin key is configured, and close last month automatically
when ``month_close_after_days`` says so."""

from __future__ import annotations

import datetime as dt
import logging
from zoneinfo import ZoneInfo

from sqlalchemy import Engine

from alerts.evaluate import current_settings
from alerts.hooks import after_rollup
from spendwatch.errors import ReconciliationError
from spendwatch.settings import Settings

__all__ = ["auto_close", "chargeback_after_rollup", "daily_reconciliation"]

log = logging.getLogger("spendwatch.chargeback")


def daily_reconciliation(engine: Engine, settings: Settings,
                         now: dt.datetime | None = None) -> bool:
    """Read the Costs API for this month and last (until today, UTC) once per UTC day
    when an admin key is configured; True when it ran."""
    from sqlalchemy import func, select

    from models.reconciliation import fetch_billed_costs
    from models.schema import reconcile_runs

    if not settings.openai_admin_key:
        return False
    now = now or dt.datetime.now(dt.UTC)
    start_of_day = dt.datetime.combine(now.date(), dt.time(0), dt.UTC)
    with engine.connect() as conn:
        ran = conn.execute(select(func.count()).where(
            reconcile_runs.c.started_at >= start_of_day,
            reconcile_runs.c.started_at < start_of_day + dt.timedelta(days=1))).scalar()
    if ran:
        return False
    since = (now.date().replace(day=1) - dt.timedelta(days=1)).replace(day=1)
    try:
        fetch_billed_costs(engine, admin_key=settings.openai_admin_key,
                           base_url=settings.openai_admin_base_url, since=since,
                           until=now.date(), now=now)
    except ReconciliationError as exc:
        log.warning("daily reconciliation failed: %s", exc)
    return True


def auto_close(engine: Engine, settings: Settings, today: dt.date | None = None
               ) -> dt.date | None:
    """Close the previous month once ``month_close_after_days`` days of the new one
    have passed (never a month that was reopened by hand); the month closed, or None."""
    from models.months import close_month, month_statuses

    days = settings.month_close_after_days
    today = today or dt.datetime.now(ZoneInfo(settings.timezone)).date()
    if not days or today.day <= days:
        return None
    previous = (today.replace(day=1) - dt.timedelta(days=1)).replace(day=1)
    found = next((s for s in month_statuses(engine) if s.month == previous), None)
    if found is None or found.closed or any(a == "reopen" for a, *_ in found.log):
        return None
    close_month(engine, previous, by="scheduler (month_close_after_days)",
                timezone=settings.timezone, today=today)
    log.info("closed %s automatically (month_close_after_days=%d)", f"{previous:%Y-%m}", days)
    return previous


@after_rollup
def chargeback_after_rollup(engine: Engine, result: object) -> None:
    """After-rollup hook: post corrections when the rollup met closed months, run the
    daily reconciliation and close last month when it is time."""
    from models.corrections import post_corrections

    settings = current_settings()
    if getattr(result, "skipped_closed", None):
        posted = post_corrections(engine, timezone=settings.timezone)
        if posted:
            log.info("posted %d correction row(s) of closed months", posted)
    daily_reconciliation(engine, settings)
    auto_close(engine, settings)
