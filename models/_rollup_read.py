"""The grouped read of the rollups (``models.rollups``): one query per range of days
gives both the daily rows and the per-user rows.

Why one query: on SQLite a GROUP BY is a sort of every row read, and the sort is most
of a rollup's cost (measured on a 111k-event day: ~0.2 us an event to read it through
the timestamp index, ~4 us to sort it by eight keys). The daily rollup and spend per
user used to be two GROUP BYs over the same day; one GROUP BY at the finer grain (the
daily keys plus user, error kind, the streamed and usage flags and the latency and
TTFT buckets) sorts each event once.

The six small keys (latency and TTFT bucket, the streamed, usage and batch flags and the
long-context band) are packed into one integer (``models._rollup_key``, stored with
the event): the sort compares one column instead of six on every tie, which is most
comparisons, since a day's ~100k events fall into a few thousand groups (measured on
a 111k-event day: 327 ms against 375 ms on SQLite; 191 against 210 ms on PostgreSQL).

Two levels: the fine groups (~4,800 a day in the benchmark) are a CTE, grouped again
in the same statement into the daily grain with the packed key and error kind
(~1,500) and into the per-user grain (~450). Python folds ~2,000 rows a day instead
of ~4,800, each into one table instead of two: on a 90-day PostgreSQL rebuild the
Python side took 1.4 s of CPU instead of 2.9 s, the database 0.6-0.8 s more (the
second level costs the database ~7 ms a day; SQLite: nothing measurable). NULL keys
are grouped as they are and folded to '' here, which saves a function call per key
and event in SQL.

On PostgreSQL the same query is a hash aggregate; with no statistics about how few
groups there are, the planner expects one group per event and picks an on-disk sort
(measured: 13 s vs 2.7 s for 2.2M events), so the rollup's transaction turns sorting
off and gives the hash table room (``SET LOCAL``)."""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlalchemy import (
    BigInteger,
    CompoundSelect,
    Connection,
    Date,
    bindparam,
    case,
    cast,
    func,
    literal_column,
    null,
    select,
    union_all,
)
from sqlalchemy.sql.elements import ColumnElement

from models._rollup_key import sql_key, unpack
from models.schema import LATENCY_EDGES_MS, ROLLUP_SUMS, usage_events
from models.types import as_date

__all__ = ["DAILY_KEYS", "TOKEN_COLUMNS", "USER_KEYS", "USER_MEASURES", "Groups", "keyed",
           "read_groups", "tune_postgresql", "utc_date"]

TOKEN_COLUMNS = ("input_tokens", "cached_input_tokens", "cache_write_tokens",
                 "output_tokens", "reasoning_tokens", "audio_input_tokens",
                 "audio_output_tokens")
#: The keys of a daily row, in the order of ``Groups.daily``'s tuples.
DAILY_KEYS = ("day", "price_date", "model", "service_tier", "is_batch", "long_context",
              "endpoint", "team", "project")
#: The keys of a per-user row before pricing (price date, tier, batch and long context
#: set the price).
USER_KEYS = ("day", "user", "team", "project", "model", "price_date", "service_tier",
             "is_batch", "long_context")
#: Per-user measures: requests, errors, then the TOKEN_COLUMNS.
USER_MEASURES = ("requests", "errors", *TOKEN_COLUMNS)

_AT = {name: i for i, name in enumerate(ROLLUP_SUMS)}
_ERROR_AT = {"rate_limit": _AT["errors_rate_limit"], "client": _AT["errors_client"],
             "server": _AT["errors_server"], "network": _AT["errors_network"]}
_OTHER_ERROR = _AT["errors_other"]
_RETRIES, _STREAMED, _MISSING = _AT["retries"], _AT["streamed"], _AT["usage_missing"]
_LAT_N, _LAT_SUM = _AT["latency_count"], _AT["latency_sum_ms"]
_TTFT_N, _TTFT_SUM = _AT["ttft_count"], _AT["ttft_sum_ms"]
_TOKENS_AT = [_AT[name] for name in TOKEN_COLUMNS]
_LAT_AT = [_AT[f"lat_{i:02d}"] for i in range(len(LATENCY_EDGES_MS) + 1)]
_TTFT_AT = [_AT[f"ttft_{i:02d}"] for i in range(len(LATENCY_EDGES_MS) + 1)]


@dataclass
class Groups:
    """Additive measures per daily key (lists in ``ROLLUP_SUMS`` order) and per user
    key (lists in ``USER_MEASURES`` order)."""

    daily: dict[tuple[object, ...], list[float]] = field(default_factory=dict)
    users: dict[tuple[object, ...], list[int]] = field(default_factory=dict)


def tune_postgresql(conn: Connection) -> None:
    """For this transaction only: hash aggregates rather than an on-disk sort (see the
    module's docstring)."""
    conn.exec_driver_sql("SET LOCAL enable_sort = off")
    conn.exec_driver_sql("SET LOCAL work_mem = '128MB'")
    # A day's read can cost more than jit_above_cost; compiling it took ~15 ms of a
    # ~90 ms read and saved nothing measurable.
    conn.exec_driver_sql("SET LOCAL jit = off")


def read_groups(conn: Connection, day: dt.date, start: dt.datetime,
                end: dt.datetime, thresholds: tuple[int, ...] = ()) -> Groups:
    """The events of the local ``day`` (``start <= ts < end``, its UTC bounds),
    grouped and folded. The day is not a key: it is one day. The UTC date (which
    sets the price) is, unless the day is a UTC day; so is the long-context band
    (``models.long_context``) when some price has ``thresholds``."""
    dialect = conn.dialect.name
    utc_day = start == dt.datetime.combine(day, dt.time(0), dt.UTC) and (
        end - start == dt.timedelta(days=1))
    query = _day_query(dialect, utc_day, thresholds)
    params = {"start": start, "end": end}
    rows = conn.execute(query, params).all()  # one fetch: row by row cost ~5 us a row more
    bands = (0, *sorted(thresholds))
    return _fold(rows, day, day if utc_day else None, bands)  # type: ignore[arg-type]


@functools.lru_cache(maxsize=32)
def _day_query(dialect: str, utc_day: bool,
               thresholds: tuple[int, ...]) -> CompoundSelect:
    """The two-level read of one day (see the module's docstring), with the day's
    bounds as the parameters ``start`` and ``end``: built once per shape, not per day
    (building it took ~2 ms a day)."""
    e = usage_events.c
    n_bands = len(thresholds) + 1
    # Highest cardinality first: the sort compares fewer keys per pair of events.
    keys = [e.user.label("u"), func.coalesce(e.model, e.model_requested, "").label("m"),
            e.project.label("p"), e.team.label("t"),
            sql_key(dialect, thresholds).label("k"), e.error_kind.label("e"),
            e.endpoint.label("ep"), e.service_tier.label("st")]
    if not utc_day:
        keys.append(utc_date(dialect, e.ts).label("d"))
    # Whole numbers as BIGINT: PostgreSQL sums bigints as numeric, which Python would
    # fold as Decimals (cast once per group, not per event).
    sums = [func.count().label("n"),
            _int(func.sum(case((e.attempts > 1, e.attempts - 1), else_=0))).label("r"),
            *(_int(func.sum(e[name])).label(f"x{i}") for i, name in enumerate(TOKEN_COLUMNS)),
            func.sum(e.latency_ms).label("ls"), func.sum(e.ttft_ms).label("ts")]
    stamp = usage_events.c.ts.type
    fine = (select(*keys, *sums)
            .where(e.ts >= bindparam("start", type_=stamp), e.ts < bindparam("end", type_=stamp))
            .group_by(*(literal_column(str(i)) for i in range(1, len(keys) + 1)))
            .cte("fine"))
    f = fine.c
    date = [f.d] if not utc_day else []
    tokens = [_int(func.sum(f[f"x{i}"])) for i in range(len(TOKEN_COLUMNS))]
    # The per-user rows need only the batch flag and the band of the packed key (its
    # low bits), and of the error kind only whether there was one.
    low = f.k % literal_column(str(2 * n_bands))
    daily = select(literal_column("0"), f.m, f.p, f.t, f.ep, f.st, f.k, f.e,
                   null(), *date, _int(func.sum(f.n)), _int(func.sum(f.r)), *tokens,
                   func.sum(f.ls), func.sum(f.ts)
                   ).group_by(f.m, f.p, f.t, f.ep, f.st, f.k, f.e, *date)
    users = select(literal_column("1"), f.m, f.p, f.t, null(), f.st, low, null(), f.u,
                   *date, _int(func.sum(f.n)),
                   _int(func.sum(case((f.e.is_(None), 0), else_=f.n))), *tokens,
                   null(), null()).group_by(f.u, f.m, f.p, f.t, f.st, low, *date)
    return union_all(daily, users)


def _int(value: ColumnElement[object]) -> ColumnElement[int]:
    return cast(value, BigInteger)


def _fold(rows: Iterable[tuple[object, ...]], day: dt.date,
          price_day: dt.date | None, bands: tuple[int, ...]) -> Groups:
    """Fold the rows of ``day``'s two-level read (see the module's docstring): a
    daily row per (daily key, packed flags, error kind), a user row per user key.
    ``price_day`` is the UTC date of them all, or None when each row has its own
    after the keys. ``bands`` are 0 and the long-context thresholds, by position."""
    groups = Groups()
    daily, users = groups.daily, groups.users
    n_sums = len(ROLLUP_SUMS)
    n_user = len(USER_MEASURES)
    n_bands = len(bands)
    unpacked: dict[int, tuple[int | None, int | None, int, int, int, int]] = {}
    for r in rows:
        level, model, project, team, endpoint, tier, packed, kind, user = r[:9]
        flags = unpacked.get(packed)  # type: ignore[call-overload]
        if flags is None:
            flags = unpacked[packed] = unpack(int(packed), n_bands)  # type: ignore[call-overload]
        lat, ttft, streamed, reported, batch, band = flags
        long_context = bands[band]
        pos = 9
        if price_day is not None:
            price_date: object = price_day
        else:
            price_date = as_date(r[pos])
            pos += 1
        n, second, *tokens, lat_sum, ttft_sum = r[pos:]
        team = team or ""
        project = project or ""
        tier = tier or ""
        if level:  # a user row: second is its errors
            ukey = (day, user or "", team, project, model, price_date, tier, bool(batch),
                    long_context)
            urow = users.get(ukey)
            if urow is None:  # NULL and '' tags are one key here, two in SQL
                urow = users[ukey] = [0] * n_user
            urow[0] += n
            urow[1] += second
            for i, value in enumerate(tokens, 2):
                if value:
                    urow[i] += value
            continue
        key = (day, price_date, model, tier, bool(batch), long_context, endpoint, team,
               project)
        row = daily.get(key)
        if row is None:
            row = daily[key] = [0] * n_sums
        row[0] += n  # requests
        row[_RETRIES] += second or 0
        if kind:
            row[_ERROR_AT.get(kind, _OTHER_ERROR)] += n  # type: ignore[call-overload]
        if streamed:
            row[_STREAMED] += n
        if not reported:
            row[_MISSING] += n
        for at, value in zip(_TOKENS_AT, tokens, strict=True):
            if value:
                row[at] += value
        if lat is not None:
            row[_LAT_AT[lat]] += n
            row[_LAT_N] += n
            row[_LAT_SUM] += lat_sum or 0.0
        if ttft is not None:
            row[_TTFT_AT[ttft]] += n
            row[_TTFT_N] += n
            row[_TTFT_SUM] += ttft_sum or 0.0
    return groups


def keyed(key: tuple[object, ...], names: tuple[str, ...]) -> dict[str, object]:
    """A grouped key as a row dict."""
    return dict(zip(names, key, strict=True))


def utc_date(dialect: str, ts: ColumnElement[dt.datetime]) -> ColumnElement[object]:
    if dialect == "postgresql":
        return cast(func.timezone("UTC", ts), Date)
    return func.substr(ts, 1, 10)
