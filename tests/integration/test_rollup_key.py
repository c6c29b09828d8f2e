"""The rollup key the writer stores with each event (``models._rollup_key``) equals
the one SQL computes from the event's columns, and the rollups come out the same
whether events have it or not (events written before migration 0009 have none), on
SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import itertools

import pytest
from sqlalchemy import select, update

from models._rollup_key import NO_BUCKET, event_key, sql_key, unpack
from models.database import open_database
from models.event_store import EventStore
from models.rollups import RollupEngine
from models.schema import LATENCY_EDGES_MS, rollup_daily, rollup_daily_user, usage_events
from tests.integration.test_rollups import BandedBook, Book, ev

UTC = dt.UTC
T0 = dt.datetime(2026, 5, 4, 9, tzinfo=UTC)

#: Every edge, just below and just above it, below the first, far above the last.
_LATENCIES = sorted({v for edge in LATENCY_EDGES_MS
                     for v in (edge - 0.001, float(edge), edge + 0.001)} | {0.0, 1e9})


@pytest.fixture
def engine(database):
    engine = open_database(database.url)
    yield engine
    engine.dispose()


def _events() -> list:
    out = []
    flags = itertools.cycle(itertools.product((False, True), repeat=3))
    for i, lat in enumerate([*_LATENCIES, None]):
        for ttft in (None, lat, 12.5):
            streamed, reported, batch = next(flags)
            out.append(ev(T0 + dt.timedelta(minutes=i), latency_ms=lat, ttft_ms=ttft,
                          streamed=streamed, usage_reported=reported, is_batch=batch,
                          input_tokens=500 + 100 * i, user=f"u{i % 3}"))
    return out


def test_python_buckets_are_the_edges() -> None:
    # bucket i holds values from edge i-1 up to, not including, edge i
    assert unpack(event_key(9.999, None, False, True, False), 1)[:2] == (0, None)
    assert unpack(event_key(10.0, 10.0, False, True, False), 1)[:2] == (1, 1)
    assert unpack(event_key(59999.0, 60000.0, False, True, False), 1)[:2] == (18, 19)
    assert unpack(event_key(1e12, None, True, False, True), 1) == (19, None, 1, 0, 1, 0)
    assert event_key(None, None, True, True, True) == ((NO_BUCKET * 21 + NO_BUCKET) * 8 + 7)
    assert event_key(float("nan"), None, False, True, False) is None  # left to SQL


def test_stored_key_equals_the_sql_one(engine) -> None:
    events = _events()
    EventStore(engine).insert(events)
    with engine.begin() as conn:
        stored = dict(conn.execute(select(usage_events.c.id, usage_events.c.rollup_key)).all())
        assert None not in stored.values() and len(stored) == len(events)
        conn.execute(update(usage_events).values(rollup_key=None))
        computed = dict(conn.execute(select(usage_events.c.id,
                                            sql_key(engine.dialect.name, ()))).all())
    assert computed == stored


@pytest.mark.parametrize("book", [Book(), BandedBook()], ids=["plain", "long-context"])
def test_rollups_are_the_same_without_stored_keys(engine, book) -> None:
    events = _events()
    EventStore(engine).insert(events)

    def rollups() -> tuple[list[dict[str, object]], list[dict[str, object]]]:
        RollupEngine(engine, prices=book).run(rebuild=True)
        with engine.connect() as conn:
            return tuple(sorted((dict(r._mapping) for r in conn.execute(select(table))),
                                key=repr) for table in (rollup_daily, rollup_daily_user))

    with_keys = rollups()
    daily = with_keys[0]
    assert sum(r["latency_count"] for r in daily) == sum(
        e.latency_ms is not None for e in events)
    assert sum(r["ttft_count"] for r in daily) == sum(e.ttft_ms is not None for e in events)
    assert sum(r["streamed"] for r in daily) == sum(e.streamed for e in events)
    assert sum(r["usage_missing"] for r in daily) == sum(not e.usage_reported for e in events)
    assert {r["is_batch"] for r in daily} == {False, True}
    with engine.begin() as conn:
        conn.execute(update(usage_events).values(rollup_key=None))
    assert rollups() == with_keys
