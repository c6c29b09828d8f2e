"""The rollup key of an event: its latency and TTFT histogram buckets and its
streamed, usage and batch flags packed into one small integer, as the rollups group
events (``models._rollup_read``).

The event's row stores it (``usage_events.rollup_key``), computed by the writer when
the event is inserted (:func:`event_key`), so that a rollup does not compute it for
every event it reads again: a 111k-event day's grouped read took 186 ms instead of
208 ms on SQLite, 75 instead of 81-90 ms on PostgreSQL (10M-event benchmark
database). :func:`sql_key` computes the same value in SQL for rows without one
(events written before migration 0009, or inserted by other means), so the stored
value only saves time: it never changes a result. A test holds the two equal on both
databases, edges included.

Layout: ``((((latency bucket * 21 + TTFT bucket) * 2 + streamed) * 2 + usage
reported) * 2 + batch)``, buckets 0-19 (``LATENCY_EDGES_MS``: bucket i holds values
from edge i-1 up to, not including, edge i) and 20 for none; at most 3,527. The read
appends the long-context band (which depends on the prices, so it is not stored):
``key * bands + band position``; :func:`unpack` reverses it all.
"""

from __future__ import annotations

from bisect import bisect_right

from sqlalchemy import Integer, case, cast, func, literal_column, null
from sqlalchemy.sql.elements import ColumnElement

from models.long_context import band_index_sql
from models.schema import LATENCY_EDGES_MS, usage_events

__all__ = ["NO_BUCKET", "event_key", "sql_key", "unpack"]

#: The bucket number of "no latency" (NULL).
NO_BUCKET = len(LATENCY_EDGES_MS) + 1
_WIDTH = NO_BUCKET + 1


def event_key(latency_ms: float | None, ttft_ms: float | None, streamed: bool,
              usage_reported: bool, is_batch: bool) -> int | None:
    """The rollup key of one event, as :func:`sql_key` computes it from its columns.
    None (computed when read) for a NaN, which the databases bucket differently
    (SQLite stores it as NULL, PostgreSQL puts it above the last edge)."""
    lat = _bucket_of(latency_ms)
    ttft = _bucket_of(ttft_ms)
    if lat is None or ttft is None:
        return None
    return (((lat * _WIDTH + ttft) * 2 + bool(streamed)) * 2 + bool(usage_reported)) * 2 + (
        bool(is_batch))


def _bucket_of(ms: float | None) -> int | None:
    """The histogram bucket of ``ms`` as :func:`sql_key` computes it (``NO_BUCKET`` for
    none); None for NaN."""
    if ms is None:
        return NO_BUCKET
    if ms != ms:
        return None
    return bisect_right(LATENCY_EDGES_MS, ms)


def sql_key(dialect: str, thresholds: tuple[int, ...]) -> ColumnElement[int]:
    """The stored rollup key, or the same computed from the columns where none is
    stored, followed by the long-context band's position (0 for none) when some
    price has ``thresholds``. Constants inline, not bound parameters, so that
    PostgreSQL sees the select expression and a GROUP BY one as the same."""
    def n(value: int) -> ColumnElement[int]:
        return literal_column(str(value))

    def flag(col: ColumnElement[bool]) -> ColumnElement[int]:
        return cast(col, Integer)

    e = usage_events.c
    lat = func.coalesce(_bucket(dialect, e.latency_ms), n(NO_BUCKET))
    ttft = func.coalesce(_bucket(dialect, e.ttft_ms), n(NO_BUCKET))
    computed = ((((lat * n(_WIDTH) + ttft) * n(2) + flag(e.streamed)) * n(2)
                 + flag(e.usage_reported)) * n(2) + flag(e.is_batch))
    key = func.coalesce(e.rollup_key, computed)
    if thresholds:
        key = key * n(len(thresholds) + 1) + band_index_sql(e.input_tokens, thresholds)
    return key


def unpack(key: int, n_bands: int) -> tuple[int | None, int | None, int, int, int, int]:
    """(latency bucket, TTFT bucket, streamed, usage reported, batch, band position)
    of a key :func:`sql_key` read with ``n_bands`` bands (1: no thresholds)."""
    rest, band = divmod(key, n_bands)
    rest, batch = divmod(rest, 2)
    rest, reported = divmod(rest, 2)
    rest, streamed = divmod(rest, 2)
    lat, ttft = divmod(rest, _WIDTH)
    return (None if lat == NO_BUCKET else lat, None if ttft == NO_BUCKET else ttft,
            streamed, reported, batch, band)


def _bucket(dialect: str, col: ColumnElement[float]) -> ColumnElement[object]:
    """The histogram bucket of a latency in SQL: 0 below the first edge, ..., the
    last bucket at or above the last edge; NULL for NULL (:func:`_bucket_of` in
    Python)."""
    if dialect == "postgresql":  # the same buckets, in C
        edges = ", ".join(str(edge) for edge in LATENCY_EDGES_MS)
        return func.width_bucket(col, literal_column(f"ARRAY[{edges}]::float8[]"))
    # Constants inline (not bound parameters), so that the same CASE in the select
    # list and in a GROUP BY is one expression.
    whens = [(col.is_(None), null())]
    whens += [(col < literal_column(str(edge)), literal_column(str(i)))
              for i, edge in enumerate(LATENCY_EDGES_MS)]
    return case(*whens, else_=literal_column(str(len(LATENCY_EDGES_MS))))
