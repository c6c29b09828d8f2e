"""Reads for the dashboard, each returning a pandas DataFrame, all from the rollup
tables (never a scan of raw events; the one exception, the latest failed requests,
reads events through the timestamp index with a limit).

* Money is summed exactly: PostgreSQL's ``SUM(numeric)``, and on SQLite (where
  :class:`models.types.Money` is decimal text) an aggregate written in Python over
  ``Decimal``. Money columns of the frames hold ``Decimal`` or ``None`` (``None``
  when every row of the group is unpriced: its cost is unknown, not zero).
* Filters are bind parameters; no value from a URL is ever part of the SQL text.
* Latency percentiles come from the merged 20-bucket histograms
  (:data:`models.schema.LATENCY_EDGES_MS`), interpolated inside the bucket.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal

import pandas as pd
from sqlalchemy import Connection, Engine, Table, func, inspect, select
from sqlalchemy.sql.elements import ColumnElement

from models.schema import (
    LATENCY_BUCKETS,
    LATENCY_EDGES_MS,
    TTFT_BUCKETS,
    rollup_daily,
    rollup_monthly,
    rollup_state,
    usage_events,
)
from models.types import Money, as_date

__all__ = ["COUNTS", "ERROR_CLASSES", "MONEY", "USER_COUNTS", "DataStatus", "add_money",
           "aggregate", "data_status", "dimension_values", "fold_periods", "has_user_rollup",
           "months_with_data", "percentile", "period_start", "reading", "user_table"]

#: Money measures: ``cost`` is what the organisation pays (the contracted price where
#: there is one, else the list price); ``cost_list`` is at list prices.
MONEY = ("cost", "cost_list")
_MONEY_SOURCE = {"cost": "cost_contract", "cost_list": "cost_list"}
#: Additive counts of ``rollup_daily`` the pages use.
COUNTS = ("requests", "errors_rate_limit", "errors_client", "errors_server", "errors_network",
          "errors_other", "retries", "streamed", "input_tokens", "cached_input_tokens",
          "cache_write_tokens", "output_tokens", "reasoning_tokens", "unpriced_tokens",
          "latency_count", "ttft_count", *LATENCY_BUCKETS, *TTFT_BUCKETS)
#: Error classes as the reliability page names them.
ERROR_CLASSES = {"errors_rate_limit": "429 rate limit", "errors_client": "other 4xx",
                 "errors_server": "5xx", "errors_network": "network"}
#: Counts of ``rollup_daily_user``.
USER_COUNTS = ("requests", "errors", "input_tokens", "cached_input_tokens", "output_tokens",
                "reasoning_tokens", "unpriced_tokens")


class _DecimalSum:
    """SQLite aggregate: the exact sum of decimal text, NULL when every value is."""

    def __init__(self) -> None:
        self.total: Decimal | None = None

    def step(self, value: object) -> None:
        if value is not None:
            self.total = (self.total or Decimal(0)) + Decimal(value)  # type: ignore[arg-type]

    def finalize(self) -> str | None:
        return None if self.total is None else format(self.total, "f")


@contextmanager
def reading(engine: Engine) -> Iterator[Connection]:
    """A connection for reads; on SQLite it knows ``sw_decimal_sum``."""
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            info = conn.connection.info
            if not info.get("sw_decimal_sum"):
                conn.connection.driver_connection.create_aggregate(  # type: ignore[union-attr]
                    "sw_decimal_sum", 1, _DecimalSum)
                info["sw_decimal_sum"] = True
        yield conn


def _money_sum(dialect: str, column: ColumnElement[Decimal]) -> ColumnElement[Decimal]:
    if dialect == "sqlite":
        return func.sw_decimal_sum(column, type_=Money())
    return func.sum(column, type_=Money())


def add_money(a: Decimal | None, b: Decimal | None) -> Decimal | None:
    """None-preserving sum: unknown + unknown stays unknown."""
    if a is None:
        return b
    return a if b is None else a + b


def has_user_rollup(engine: Engine) -> bool:
    """Whether ``rollup_daily_user`` (migration 0006) exists in this database."""
    return inspect(engine).has_table("rollup_daily_user")


def user_table(engine: Engine) -> Table | None:
    if not has_user_rollup(engine):
        return None
    from models import schema

    return getattr(schema, "rollup_daily_user", None)


def aggregate(engine: Engine, *, keys: Sequence[str], start: dt.date, end: dt.date,
              filters: Mapping[str, Sequence[str]] | None = None,
              counts: Sequence[str] = ("requests",), money: Sequence[str] = MONEY,
              table: Table = rollup_daily) -> pd.DataFrame:
    """Sums of ``counts`` and ``money`` per ``keys`` over the local days start..end of
    ``table`` (``rollup_daily``, ``rollup_daily_user``, or ``rollup_monthly`` whose
    months are their first days), with ``filters`` (column -> allowed values) as bind
    parameters. Sorted by the keys."""
    t = table
    dialect = engine.dialect.name
    cols: list[ColumnElement[object]] = [t.c[k].label(k) for k in keys]
    cols += [func.coalesce(func.sum(t.c[c]), 0).label(c) for c in counts]
    cols += [_money_sum(dialect, t.c[_MONEY_SOURCE[m]]).label(m) for m in money]
    when = t.c.day if "day" in t.c else t.c.month
    query = select(*cols).where(when >= start, when <= end)
    for column, values in (filters or {}).items():
        if values:
            query = query.where(t.c[column].in_(list(values)))
    if keys:
        query = query.group_by(*(t.c[k] for k in keys)).order_by(*(t.c[k] for k in keys))
    with reading(engine) as conn:
        rows = conn.execute(query).all()
    frame = pd.DataFrame([tuple(r) for r in rows], columns=[*keys, *counts, *money])
    for c in counts:
        frame[c] = frame[c].astype("int64")
    for m in money:
        frame[m] = frame[m].astype(object)
    for when_key in ("day", "month", "price_date"):
        if when_key in keys:
            frame[when_key] = [as_date(d) for d in frame[when_key]]
    if "is_batch" in keys:
        frame["is_batch"] = frame["is_batch"].astype(bool)
    return frame


def period_start(day: dt.date, granularity: str) -> dt.date:
    """The first day of the week (Monday) or month that holds ``day``."""
    if granularity == "week":
        return day - dt.timedelta(days=day.weekday())
    if granularity == "month":
        return day.replace(day=1)
    return day


def fold_periods(frame: pd.DataFrame, granularity: str, keys: Sequence[str] = ()
                 ) -> pd.DataFrame:
    """Daily rows (a ``day`` column plus ``keys``) summed into ``period`` rows; money
    stays Decimal (None only when every day of the group is unpriced)."""
    columns = [c for c in frame.columns if c != "day" and c not in keys]
    money = {i for i, c in enumerate(columns) if c in MONEY}
    days = frame["day"].tolist()
    key_lists = [frame[k].tolist() for k in keys]
    value_lists = [frame[c].tolist() for c in columns]
    acc: dict[tuple[object, ...], list[object]] = {}
    for i, day in enumerate(days):
        key = (period_start(day, granularity), *(kl[i] for kl in key_lists))
        current = acc.get(key)
        if current is None:
            acc[key] = [vl[i] for vl in value_lists]
            continue
        for j, vl in enumerate(value_lists):
            if j in money:
                current[j] = add_money(current[j], vl[i])  # type: ignore[arg-type]
            else:
                current[j] += vl[i]  # type: ignore[operator]
    out = pd.DataFrame([(*k, *v) for k, v in sorted(acc.items(), key=lambda kv: kv[0])],  # type: ignore[arg-type, return-value]
                       columns=["period", *keys, *columns])
    for c in columns:
        if c in MONEY:
            out[c] = out[c].astype(object)
    return out


def percentile(counts: Sequence[int], q: float) -> float | None:
    """The ``q`` quantile (0..1) of a merged latency histogram, in ms: linear inside
    its bucket; the open last bucket reports its lower edge. None without samples."""
    total = sum(counts)
    if total <= 0:
        return None
    rank = q * total
    seen = 0
    for i, raw in enumerate(counts):
        n = int(raw)
        if n and seen + n >= rank:
            low = 0.0 if i == 0 else float(LATENCY_EDGES_MS[i - 1])
            if i == len(LATENCY_EDGES_MS):
                return low
            high = float(LATENCY_EDGES_MS[i])
            return low + (high - low) * max(rank - seen, 0) / n
        seen += n
    return float(LATENCY_EDGES_MS[-1])  # pragma: no cover - rank <= total always hits


@dataclass(frozen=True)
class DataStatus:
    """What the database holds, for empty states and warnings."""

    has_events: bool
    has_rollups: bool
    first_day: dt.date | None
    last_day: dt.date | None
    rollup_timezone: str | None


def data_status(engine: Engine) -> DataStatus:
    with reading(engine) as conn:
        first, last = conn.execute(select(func.min(rollup_daily.c.day),
                                          func.max(rollup_daily.c.day))).one()
        has_events = first is not None or conn.execute(
            select(usage_events.c.id).limit(1)).first() is not None
        tz = conn.execute(select(rollup_state.c.value).where(
            rollup_state.c.name == "timezone")).scalar()
    return DataStatus(has_events=bool(has_events), has_rollups=first is not None,
                      first_day=as_date(first) if first is not None else None,
                      last_day=as_date(last) if last is not None else None,
                      rollup_timezone=tz)


def dimension_values(engine: Engine) -> dict[str, list[str]]:
    """Every value each dimension has in the monthly rollups (small), plus users from
    the per-user rollup when it exists. Keys are URL parameter names."""
    m = rollup_monthly.c
    out: dict[str, list[str]] = {}
    with reading(engine) as conn:
        for param, column in (("model", m.model), ("team", m.team), ("project", m.project),
                              ("endpoint", m.endpoint), ("tier", m.service_tier)):
            out[param] = [v for (v,) in conn.execute(
                select(column).distinct().order_by(column))]
    users = user_table(engine)
    if users is not None:
        with reading(engine) as conn:
            out["user"] = [v for (v,) in conn.execute(
                select(users.c.user).distinct().order_by(users.c.user))]
    else:
        out["user"] = []
    return out


def months_with_data(engine: Engine) -> list[dt.date]:
    """First days of the months the monthly rollup has rows for, newest first."""
    m = rollup_monthly.c.month
    with reading(engine) as conn:
        return [as_date(v) for (v,) in conn.execute(select(m).distinct().order_by(m.desc()))]




