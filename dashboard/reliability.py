"""The Reliability page's numbers: request volume, error rates by class, retries
and latency / time-to-first-token percentiles (from the rollups' mergeable
histograms), and the most recent failed requests (from events, through the
timestamp index, with a limit)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from zoneinfo import ZoneInfo

import pandas as pd
from sqlalchemy import Engine, func, or_, select

from dashboard.filters import DIMENSIONS, View
from dashboard.queries import ERROR_CLASSES, aggregate, fold_periods, percentile, reading
from models.schema import LATENCY_BUCKETS, TTFT_BUCKETS, usage_events

__all__ = ["BY_CHOICES", "QUANTILES", "by_key", "over_time", "recent_failures"]

BY_CHOICES = ("model", "endpoint")
QUANTILES = {"p50": 0.50, "p95": 0.95, "p99": 0.99}
_COUNTS = ("requests", *ERROR_CLASSES, "errors_other", "retries", "latency_count",
           "ttft_count", *LATENCY_BUCKETS, *TTFT_BUCKETS)
_FAILURE_COLUMNS = ("time", "model", "endpoint", "team", "project", "status", "error",
                    "error_class", "attempts", "latency_ms", "request_id")


def _filters(view: View) -> dict[str, tuple[str, ...]]:
    return {c: v for c, v in view.columns().items() if c != "user"}


def _with_rates(frame: pd.DataFrame) -> pd.DataFrame:
    """Error rates per class and overall, latency and TTFT percentiles, per row (in
    plain Python over column lists: pandas column assignment cost more than the
    query)."""
    requests = frame["requests"].tolist()
    new: dict[str, list[object]] = {}
    errors = [0] * len(requests)
    for column in (*ERROR_CLASSES, "errors_other"):
        values = frame[column].tolist()
        errors = [a + b for a, b in zip(errors, values, strict=True)]
        if column in ERROR_CLASSES:
            new[f"rate_{column}"] = [v / r if r else None
                                     for v, r in zip(values, requests, strict=True)]
    new["errors"] = errors
    new["error_rate"] = [e / r if r else None for e, r in zip(errors, requests, strict=True)]
    for prefix, buckets in (("latency", LATENCY_BUCKETS), ("ttft", TTFT_BUCKETS)):
        hists = list(zip(*(frame[b].tolist() for b in buckets), strict=True))
        for name, q in QUANTILES.items():
            new[f"{prefix}_{name}"] = [percentile(h, q) for h in hists]
    base = frame.drop(columns=[*LATENCY_BUCKETS, *TTFT_BUCKETS])
    added = pd.DataFrame({k: pd.Series(v, dtype="float64" if k != "errors" else "int64")
                          for k, v in new.items()}, index=base.index)
    return pd.concat([base, added], axis=1)


def over_time(engine: Engine, view: View, by: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(per period and key, per period overall): counts, rates and percentiles."""
    column = DIMENSIONS[by]
    daily = aggregate(engine, keys=["day", column], start=view.start, end=view.end,
                      filters=_filters(view), counts=_COUNTS, money=())
    daily = daily.rename(columns={column: "key"})
    keyed = fold_periods(daily, view.granularity, keys=["key"])
    overall = fold_periods(daily.drop(columns="key"), view.granularity)
    return _with_rates(keyed), _with_rates(overall)


def by_key(engine: Engine, view: View, by: str) -> pd.DataFrame:
    """One row per model (or endpoint) over the whole range, busiest first."""
    column = DIMENSIONS[by]
    frame = aggregate(engine, keys=[column], start=view.start, end=view.end,
                      filters=_filters(view), counts=_COUNTS, money=())
    frame = _with_rates(frame.rename(columns={column: "key"}))
    return frame.sort_values(["requests", "key"], ascending=[False, True]).reset_index(
        drop=True)


def recent_failures(engine: Engine, view: View, timezone: str, limit: int) -> pd.DataFrame:
    """The latest ``limit`` failed requests in the view's local days, newest first.

    The daily rollup says which days had failures (under the same filters); only
    those days' events are read, newest day first, until ``limit`` is reached, so a
    range with few failures never scans its events."""
    tz = ZoneInfo(timezone)
    filters = _filters(view)
    days = aggregate(engine, keys=["day"], start=view.start, end=view.end, filters=filters,
                     counts=(*ERROR_CLASSES, "errors_other"), money=())
    failing = [d for d, n in zip(days["day"], sum(days[c] for c in (*ERROR_CLASSES,
                                                                      "errors_other")),
                                 strict=True) if n]
    e = usage_events.c
    model = func.coalesce(e.model, e.model_requested, "")
    columns = {"model": model, "team": e.team, "project": e.project, "endpoint": e.endpoint,
               "service_tier": func.coalesce(e.service_tier, "")}
    rows: list[tuple[object, ...]] = []
    with reading(engine) as conn:
        for day in sorted(failing, reverse=True):
            start = dt.datetime.combine(day, dt.time(0), tz).astimezone(dt.UTC)
            end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(0), tz).astimezone(
                dt.UTC)
            query = (select(e.ts, model, e.endpoint, e.team, e.project, e.status_code,
                            e.error_kind, e.error_class, e.attempts, e.latency_ms,
                            e.request_id)
                     .where(e.ts >= start, e.ts < end, e.error_kind.is_not(None))
                     .order_by(e.ts.desc()).limit(limit - len(rows)))
            for name, values in filters.items():
                query = query.where(_matches(columns[name], values))
            rows += [tuple(r) for r in conn.execute(query)]
            if len(rows) >= limit:
                break
    frame = pd.DataFrame(rows, columns=list(_FAILURE_COLUMNS))
    frame["time"] = [ts.astimezone(tz) for ts in frame["time"]]
    return frame


def _matches(column: object, values: Sequence[str]) -> object:
    """``column IN values``; '' (no tag) also matches NULL, as the rollups store it."""
    clause = column.in_(list(values))  # type: ignore[attr-defined]
    if "" in values:
        clause = or_(clause, column.is_(None))  # type: ignore[attr-defined]
    return clause
