"""The grouped read of the rollups (``models.rollups``): one query per range of days
gives both the daily rows and the per-user rows.

Why one query: on SQLite a GROUP BY is a sort of every row read, and the sort is most
of a rollup's cost (measured on a 111k-event day: ~0.2 us an event to read it through
the timestamp index, ~4 us to sort it by eight keys). The daily rollup and spend per
user used to be two GROUP BYs over the same day; one GROUP BY at the finer grain (the
daily keys plus user, error kind, the streamed and usage flags and the latency and
TTFT buckets) sorts each event once, and Python folds the grouped rows (a few
thousand a day) into both tables. NULL keys are grouped as they are and folded to
'' here, which saves a function call per key and event in SQL.

The six small keys (latency and TTFT bucket, the streamed, usage and batch flags and the
long-context band) are packed into one integer (``_packed``): the sort compares one
column instead of six on every tie, which is most comparisons, since a day's ~100k
events fall into a few thousand groups (measured on a 111k-event day: 327 ms
against 375 ms on SQLite; 191 against 210 ms on PostgreSQL).

On PostgreSQL the same query is a hash aggregate; with no statistics about how few
groups there are, the planner expects one group per event and picks an on-disk sort
(measured: 13 s vs 2.7 s for 2.2M events), so the rollup's transaction turns sorting
off and gives the hash table room (``SET LOCAL``)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlalchemy import (
    BigInteger,
    Connection,
    Date,
    Integer,
    case,
    cast,
    func,
    literal_column,
    select,
)
from sqlalchemy.sql.elements import ColumnElement

from models._rollup_sql import bucket
from models.long_context import band_index_sql
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
_NO_BUCKET = len(LATENCY_EDGES_MS) + 1  # a packed bucket for "no latency" (NULL)


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


def read_groups(conn: Connection, day: dt.date, start: dt.datetime,
                end: dt.datetime, thresholds: tuple[int, ...] = ()) -> Groups:
    """The events of the local ``day`` (``start <= ts < end``, its UTC bounds),
    grouped and folded. The day is not a key: it is one day. The UTC date (which
    sets the price) is, unless the day is a UTC day; so is the long-context band
    (``models.long_context``) when some price has ``thresholds``."""
    dialect = conn.dialect.name
    e = usage_events.c
    utc_day = start == dt.datetime.combine(day, dt.time(0), dt.UTC) and (
        end - start == dt.timedelta(days=1))
    # Highest cardinality first: the sort compares fewer keys per pair of events.
    keys = [e.user, func.coalesce(e.model, e.model_requested, ""), e.project, e.team,
            _packed(dialect, thresholds), e.error_kind, e.endpoint, e.service_tier]
    if not utc_day:
        keys.append(utc_date(dialect, e.ts))
    # Whole numbers as BIGINT: PostgreSQL sums bigints as numeric, which Python would
    # fold as Decimals (cast once per group, not per event).
    sums = [func.count(), cast(func.sum(case((e.attempts > 1, e.attempts - 1), else_=0)),
                               BigInteger),
            *(cast(func.sum(e[name]), BigInteger) for name in TOKEN_COLUMNS),
            func.sum(e.latency_ms), func.sum(e.ttft_ms)]
    query = select(*keys, *sums).where(e.ts >= start, e.ts < end).group_by(*keys)
    rows = conn.execute(query).all()  # one fetch: row by row cost ~5 us a row more
    bands = (0, *sorted(thresholds))
    return _fold(rows, day, day if utc_day else None, bands)  # type: ignore[arg-type]


def _packed(dialect: str, thresholds: tuple[int, ...]) -> ColumnElement[int]:
    """One integer for the latency bucket, the TTFT bucket (each 0-19, 20 for none),
    the streamed, usage and batch flags and the long-context band's position (0 for
    none); :func:`_unpack` reverses it. Constants inline, not bound parameters, so that
    PostgreSQL sees the select expression and the GROUP BY one as the same."""
    def n(value: int) -> ColumnElement[int]:
        return literal_column(str(value))

    def flag(col: ColumnElement[bool]) -> ColumnElement[int]:
        return cast(col, Integer)

    none = n(_NO_BUCKET)
    lat = func.coalesce(_bucket(dialect, usage_events.c.latency_ms), none)
    ttft = func.coalesce(_bucket(dialect, usage_events.c.ttft_ms), none)
    e = usage_events.c
    packed = ((((lat * n(_NO_BUCKET + 1) + ttft) * n(2) + flag(e.streamed)) * n(2)
               + flag(e.usage_reported)) * n(2) + flag(e.is_batch))
    if thresholds:
        packed = packed * n(len(thresholds) + 1) + band_index_sql(e.input_tokens, thresholds)
    return packed


def _unpack(packed: int, n_bands: int) -> tuple[int | None, int | None, int, int, int, int]:
    """(latency bucket, TTFT bucket, streamed, usage reported, batch, band position)."""
    rest, band = divmod(packed, n_bands)
    rest, batch = divmod(rest, 2)
    rest, reported = divmod(rest, 2)
    rest, streamed = divmod(rest, 2)
    lat, ttft = divmod(rest, _NO_BUCKET + 1)
    return (None if lat == _NO_BUCKET else lat, None if ttft == _NO_BUCKET else ttft,
            streamed, reported, batch, band)


def _fold(rows: Iterable[tuple[object, ...]], day: dt.date,
          price_day: dt.date | None, bands: tuple[int, ...]) -> Groups:
    """Fold the grouped rows of ``day``; ``price_day`` is the UTC date of them all,
    or None when each row has its own after the keys. ``bands`` are 0 and the
    long-context thresholds, by band position."""
    groups = Groups()
    daily, users = groups.daily, groups.users
    n_sums = len(ROLLUP_SUMS)
    n_user = len(USER_MEASURES)
    n_bands = len(bands)
    unpacked: dict[int, tuple[int | None, int | None, int, int, int, int]] = {}
    for r in rows:
        user, model, project, team, packed, kind, endpoint, tier = r[:8]
        flags = unpacked.get(packed)  # type: ignore[call-overload]
        if flags is None:
            flags = unpacked[packed] = _unpack(int(packed), n_bands)  # type: ignore[call-overload]
        lat, ttft, streamed, reported, batch, band = flags
        long_context = bands[band]
        pos = 8
        if price_day is not None:
            price_date: object = price_day
        else:
            price_date = as_date(r[pos])
            pos += 1
        n, retries, *tokens, lat_sum, ttft_sum = r[pos:]
        team = team or ""
        project = project or ""
        tier = tier or ""
        key = (day, price_date, model, tier, bool(batch), long_context, endpoint, team,
               project)
        row = daily.get(key)
        if row is None:
            row = daily[key] = [0] * n_sums
        row[0] += n  # requests
        row[_RETRIES] += retries or 0
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
        ukey = (day, user or "", team, project, model, price_date, tier, bool(batch),
                long_context)
        urow = users.get(ukey)
        if urow is None:
            urow = users[ukey] = [0] * n_user
        urow[0] += n
        if kind:
            urow[1] += n
        for i, value in enumerate(tokens, 2):
            if value:
                urow[i] += value
    return groups


def keyed(key: tuple[object, ...], names: tuple[str, ...]) -> dict[str, object]:
    """A grouped key as a row dict."""
    return dict(zip(names, key, strict=True))


def _bucket(dialect: str, col: ColumnElement[float]) -> ColumnElement[object]:
    if dialect == "postgresql":  # same buckets as models._rollup_sql.bucket, in C
        edges = ", ".join(str(edge) for edge in LATENCY_EDGES_MS)
        return func.width_bucket(col, literal_column(f"ARRAY[{edges}]::float8[]"))
    return bucket(col)


def utc_date(dialect: str, ts: ColumnElement[dt.datetime]) -> ColumnElement[object]:
    if dialect == "postgresql":
        return cast(func.timezone("UTC", ts), Date)
    return func.substr(ts, 1, 10)
