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
