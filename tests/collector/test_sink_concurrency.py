"""The sink's put takes no lock (``deque.append`` is atomic) and ``flush()`` waits
for a marker queued behind the events put before it: with several threads putting
at once, nothing is lost or counted twice, and a flush returns only once everything
its own thread put before it is stored."""

from __future__ import annotations

import datetime as dt
import threading
from pathlib import Path

from sqlalchemy import text

from collector.sink import EventSink
from models.database import open_database
from models.events import UsageEvent
from models.ids import uuid7
from spendwatch.settings import load_settings

THREADS = 6
PER_THREAD = 400


def _event(provider: str = "openai") -> UsageEvent:
    return UsageEvent(id=uuid7(), ts=dt.datetime.now(dt.UTC), provider=provider,
                      endpoint="chat.completions", model_requested="m", model="m",
                      service_tier=None, usage_reported=True, input_tokens=1,
                      cached_input_tokens=0, cache_write_tokens=0, output_tokens=1,
                      reasoning_tokens=0, audio_input_tokens=0, audio_output_tokens=0,
                      latency_ms=1.0, status_code=200, attempts=1)


def _sink(tmp_path: Path, **settings: object) -> EventSink:
    url = f"sqlite:///{tmp_path}/sink.db"
    open_database(url).dispose()
    return EventSink(load_settings({"database_url": url, "spool_dir": str(tmp_path / "spool"),
                                    **settings}))


def test_concurrent_puts_and_flushes_lose_nothing(tmp_path: Path) -> None:
    # small batches and a long interval: the writer wakes on full batches and flushes
    sink = _sink(tmp_path, batch_size=50, flush_interval=60, queue_size=100_000)
    reader = open_database(f"sqlite:///{tmp_path}/sink.db")
    failures: list[str] = []
    start = threading.Barrier(THREADS)

    def work(n: int) -> None:
        start.wait()
        for i in range(PER_THREAD):
            sink.put(_event(f"thread-{n}"))
            if i % 100 == 99:
                if not sink.flush(30):
                    failures.append("flush timed out")
                # every event this thread put before its flush is in the database,
                # whatever the other threads put meanwhile
                with reader.connect() as conn:
                    stored = conn.execute(text(
                        "SELECT count(*) FROM usage_events WHERE provider = :p"),
                        {"p": f"thread-{n}"}).scalar()
                if stored != i + 1:
                    failures.append(f"thread {n}: {stored} stored after {i + 1} puts")

    threads = [threading.Thread(target=work, args=(n,)) for n in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures
    assert sink.flush(30)
    stats = sink.stats()
    assert (stats.enqueued, stats.written, stats.queued, stats.dropped) == (
        THREADS * PER_THREAD, THREADS * PER_THREAD, 0, 0)
    sink.close()
    with reader.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM usage_events")).scalar() == (
            THREADS * PER_THREAD)
    reader.dispose()


def test_flush_waits_for_what_was_put_before_it(tmp_path: Path) -> None:
    sink = _sink(tmp_path, batch_size=1000, flush_interval=60)
    for _ in range(25):
        sink.put(_event())
    assert sink.stats().enqueued == 25  # nothing taken yet: the writer sleeps 60 s
    assert sink.flush(30)
    assert sink.stats().written == 25
    assert sink.flush(30)  # nothing new: returns at once
    sink.close()
    assert sink.flush(1)  # closed, nothing left in memory
