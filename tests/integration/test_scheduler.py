"""The scheduler's lease and two schedulers against one database."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from sqlalchemy import select

from models.database import open_database
from models.event_store import EventStore
from models.leases import Lease
from models.rollups import RollupEngine
from models.schema import rollup_daily
from tests.integration.test_rollups import Book, ev

UTC = dt.UTC
ROOT = Path(__file__).resolve().parents[2]


def test_lease_one_holder_until_it_expires(database):
    engine = open_database(database.url)
    ttl = dt.timedelta(seconds=30)
    a, b = Lease(engine, "scheduler", ttl, "a"), Lease(engine, "scheduler", ttl, "b")
    t0 = dt.datetime(2026, 1, 1, 12, tzinfo=UTC)
    assert a.acquire(t0).held
    refused = b.acquire(t0 + dt.timedelta(seconds=10))
    assert not refused.held and refused.holder == "a"
    assert a.acquire(t0 + dt.timedelta(seconds=20)).held  # renewed to t0 + 50 s
    assert not b.acquire(t0 + dt.timedelta(seconds=45)).held
    taken = b.acquire(t0 + dt.timedelta(seconds=51))  # a stopped renewing: b takes over
    assert taken.held and taken.holder == "b"
    a.release()  # not a's any more: nothing happens
    assert not a.acquire(t0 + dt.timedelta(seconds=52)).held
    b.release()
    assert a.acquire(t0 + dt.timedelta(seconds=53)).held
    engine.dispose()


def test_concurrent_rollups_do_not_double_count(database):
    engine = open_database(database.url)
    EventStore(engine).insert([ev(dt.datetime(2026, 7, 1, h, tzinfo=UTC)) for h in range(24)])
    errors = []

    def run() -> None:
        try:
            RollupEngine(engine, prices=Book()).run()
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    with engine.connect() as conn:
        rows = conn.execute(select(rollup_daily.c.requests, rollup_daily.c.input_tokens)).all()
    assert rows == [(24, 24_000)]
    engine.dispose()


def _wait_for(paths: list[Path], ready, timeout: float = 90) -> list[str]:
    """Poll the processes' log files until ``ready(logs)``; the logs."""
    deadline = time.monotonic() + timeout
    while True:
        logs = [p.read_text() if p.exists() else "" for p in paths]
        if ready(logs) or time.monotonic() > deadline:
            return logs
        time.sleep(0.2)


def test_two_scheduler_processes_one_works(database, tmp_path):
    engine = open_database(database.url)
    EventStore(engine).insert([ev(dt.datetime(2026, 7, 2, h, tzinfo=UTC)) for h in range(5)])
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SPENDWATCH_DATABASE_URL": database.url,
           "SPENDWATCH_ROLLUP_INTERVAL": "0.5", "SPENDWATCH_DATA_DIR": str(tmp_path)}
    paths = [tmp_path / f"scheduler{i}.log" for i in range(3)]
    procs = []

    def start(i: int) -> None:
        with open(paths[i], "w") as out:
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "spendwatch.cli", "scheduler"], env=env, stdout=out,
                stderr=subprocess.STDOUT, text=True))

    def lines(logs: list[str], text: str) -> int:
        return sum(text in log for log in logs)

    start(0)
    start(1)
    _wait_for(paths, lambda logs: lines(logs, "holds the lease") == 1
              and lines(logs, "standing by") == 1)
    start(2)  # a third, later: stands by too
    logs = _wait_for(paths, lambda logs: lines(logs, "standing by") == 2)
    time.sleep(1.0)  # a few more rounds of the jobs
    for p in procs:
        p.send_signal(signal.SIGTERM)
    for p in procs:
        p.wait(timeout=60)
    logs = [p.read_text() for p in paths]
    assert [p.returncode for p in procs] == [0, 0, 0], logs
    assert lines(logs, "holds the lease") == 1 and lines(logs, "standing by") == 2, logs
    holder = next(log for log in logs if "holds the lease" in log)
    assert "released the lease" in holder
    with engine.connect() as conn:
        rows = conn.execute(select(rollup_daily.c.requests)).all()
    assert rows == [(5,)]  # rolled up once, not three times
    engine.dispose()


def test_nightly_check_rebuilds_yesterday_from_raw_events(database, tmp_path):
    """The nightly job re-aggregates yesterday in full: an event the incremental
    rollup missed (ingested before its watermark, outside the overlap: e.g. written
    by a host whose clock was behind) is counted, and other days are left as they
    are. A scheduler without the lease does nothing."""
    from sqlalchemy import text, update

    from alerts.scheduler import SpendScheduler
    from models.schema import usage_events
    from spendwatch.settings import load_settings

    engine = open_database(database.url)
    settings = load_settings({"database_url": database.url, "timezone": "UTC",
                              "data_dir": str(tmp_path / "data")}, env={})
    now = dt.datetime.now(UTC)
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    yesterday, before = today - dt.timedelta(days=1), today - dt.timedelta(days=2)
    store = EventStore(engine)

    def insert(events: list, hours_ago: int) -> None:
        store.insert(events)
        with engine.begin() as conn:
            conn.execute(update(usage_events)
                         .where(usage_events.c.id.in_([e.id for e in events]))
                         .values(ingested_at=now - dt.timedelta(hours=hours_ago)))

    insert([ev(before + dt.timedelta(hours=1))], 3)
    insert([ev(yesterday + dt.timedelta(hours=h)) for h in (1, 2)], 2)
    insert([ev(today)], 1)
    RollupEngine(engine, prices=Book()).run()
    insert([ev(yesterday + dt.timedelta(hours=3))], 4)  # behind the watermark
    with engine.begin() as conn:  # a day the nightly check must not touch
        conn.execute(text("UPDATE rollup_daily SET requests = 99 WHERE day = :d"),
                     {"d": before.date()})
    RollupEngine(engine, prices=Book()).run()

    def requests() -> dict[dt.date, int]:
        with engine.connect() as conn:
            return dict(conn.execute(select(rollup_daily.c.day, rollup_daily.c.requests)).all())

    assert requests() == {before.date(): 99, yesterday.date(): 2, today.date(): 1}
    worker, standby = SpendScheduler(engine, settings), SpendScheduler(engine, settings)
    result = worker.nightly_job()
    assert result is not None and result.days == [yesterday.date()]
    assert standby.nightly_job() is None  # the lease is the worker's
    worker.lease.release()
    assert requests() == {before.date(): 99, yesterday.date(): 3, today.date(): 1}
    engine.dispose()
