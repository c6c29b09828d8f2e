"""The overview's headline figures, each beside the previous period: spend today
(vs yesterday), month to date (vs the same days of last month), the month's
forecast (vs last month's total), requests, error rate and p95 latency (month to
date vs the same days of last month). One query over daily totals."""

from __future__ import annotations

import calendar
import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

import pandas as pd
from sqlalchemy import Engine

from dashboard.queries import aggregate, percentile
from models.schema import LATENCY_BUCKETS

__all__ = ["FORECAST_DAYS", "Headlines", "headlines"]

#: The forecast runs at the average daily spend of this many complete days.
FORECAST_DAYS = 7
_ERRORS = ("errors_rate_limit", "errors_client", "errors_server", "errors_network",
           "errors_other")


@dataclass(frozen=True)
class Period:
    cost: Decimal | None
    unpriced_tokens: int
    requests: int
    errors: int
    p95_ms: float | None

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.requests if self.requests else None


@dataclass(frozen=True)
class Headlines:
    today: dt.date
    day: Period
    yesterday: Period
    month_to_date: Period
    previous_month_to_date: Period
    previous_month: Period
    forecast: Decimal | None
    daily_rate: Decimal | None


def _month_start(day: dt.date) -> dt.date:
    return day.replace(day=1)


def _previous_month(day: dt.date) -> dt.date:
    return (day.replace(day=1) - dt.timedelta(days=1)).replace(day=1)


class _Days:
    """Daily totals by day, summed over any range of days in plain Python."""

    def __init__(self, frame: pd.DataFrame) -> None:
        columns = ["day", "cost", "unpriced_tokens", "requests", *_ERRORS, *LATENCY_BUCKETS]
        lists = [frame[c].tolist() for c in columns]
        self.rows = {values[0]: values for values in zip(*lists, strict=True)}
        self.first = min(self.rows) if self.rows else None

    def period(self, lo: dt.date, hi: dt.date) -> Period:
        cost: Decimal | None = None
        unpriced = requests = errors = 0
        hist = [0] * len(LATENCY_BUCKETS)
        n_errors = len(_ERRORS)
        for day, row in self.rows.items():
            if not lo <= day <= hi:
                continue
            if row[1] is not None:
                cost = (cost or Decimal(0)) + row[1]
            unpriced += row[2]
            requests += row[3]
            errors += sum(row[4:4 + n_errors])
            for i, n in enumerate(row[4 + n_errors:]):
                hist[i] += n
        return Period(cost=cost, unpriced_tokens=unpriced, requests=requests, errors=errors,
                      p95_ms=percentile(hist, 0.95))


def headlines(engine: Engine, today: dt.date) -> Headlines:
    """Figures as of ``today`` (a local day in the reporting timezone)."""
    month = _month_start(today)
    prev = _previous_month(today)
    prev_last = month - dt.timedelta(days=1)
    frame = aggregate(engine, keys=["day"], start=prev, end=today,
                      counts=("requests", *_ERRORS, "unpriced_tokens", *LATENCY_BUCKETS),
                      money=("cost",))
    yesterday = today - dt.timedelta(days=1)
    same_day_last_month = min(prev + dt.timedelta(days=today.day - 1), prev_last)
    days = _Days(frame)
    mtd = days.period(month, today)
    # forecast: what is spent before today, plus the average of the last complete days
    # for every day left (today included), and never less than what is already spent
    first_day = days.first or today
    window_start = max(yesterday - dt.timedelta(days=FORECAST_DAYS - 1), first_day)
    complete_days = (yesterday - window_start).days + 1
    rate: Decimal | None = None
    forecast: Decimal | None = None
    if complete_days > 0:
        spent = days.period(window_start, yesterday).cost
        rate = (spent or Decimal(0)) / complete_days
        before_today = days.period(month, yesterday).cost or Decimal(0)
        days_left = calendar.monthrange(today.year, today.month)[1] - today.day + 1
        forecast = max(mtd.cost or Decimal(0), before_today + rate * days_left)
    elif mtd.cost is not None:
        forecast = mtd.cost
    return Headlines(today=today, day=days.period(today, today),
                     yesterday=days.period(yesterday, yesterday), month_to_date=mtd,
                     previous_month_to_date=days.period(prev, same_day_last_month),
                     previous_month=days.period(prev, prev_last), forecast=forecast,
                     daily_rate=rate)
