"""Benchmark of the collector (not a test). Prints, in one run:

1. the median microseconds ``instrument()`` adds to a call against a bare client,
   on the same local OpenAI-compatible server (sync, async, streaming); rounds of
   bare and instrumented calls alternate so both see the same machine;
2. the sink's events/s into SQLite and PostgreSQL beside the raw driver baseline
   measured in the same run (sqlite3 ``executemany``; psycopg binary ``COPY``).

    python -m bench.collector [--rounds 15] [--calls 200] [--events 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from openai import AsyncOpenAI, OpenAI

from bench._postgres import scratch_schema

MSG = [{"role": "user", "content": "hi"}]


def _median_added(bare: Callable[[], float], instrumented: Callable[[], float],
                  rounds: int) -> tuple[float, float, float]:
    """(median bare µs/call, median instrumented µs/call, median of per-round deltas)."""
    b, i, d = [], [], []
    for r in range(rounds):
        if r % 2:
            x, y = bare(), instrumented()
        else:
            y, x = instrumented(), bare()
        b.append(x)
        i.append(y)
        d.append(y - x)
    return statistics.median(b), statistics.median(i), statistics.median(d)


@contextlib.contextmanager
def _server_process() -> Iterator[str]:
    """The fake API in its own process, as a real API is remote: a server in this
    process would compete with the client and the sink for one GIL."""
    proc = subprocess.Popen([sys.executable, "-m", "spendwatch.fake_openai"],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        yield proc.stdout.readline().strip()
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def bench_calls(rounds: int, calls: int) -> None:
    import collector

    tmp = tempfile.mkdtemp()
    collector.configure(database_url=f"sqlite:///{tmp}/bench.db", spool_dir=f"{tmp}/spool")
    with _server_process() as base_url:
        bare = OpenAI(base_url=base_url, api_key="x")
        inst = collector.instrument(OpenAI(base_url=base_url, api_key="x"))
        abare = AsyncOpenAI(base_url=base_url, api_key="x")
        ainst = collector.instrument(AsyncOpenAI(base_url=base_url, api_key="x"))

        def sync_round(client: OpenAI) -> Callable[[], float]:
            def run() -> float:
                t = time.perf_counter()
                for _ in range(calls):
                    client.chat.completions.create(model="m", messages=MSG)
                return (time.perf_counter() - t) / calls * 1e6
            return run

        def stream_round(client: OpenAI, **kwargs: object) -> Callable[[], float]:
            def run() -> float:
                t = time.perf_counter()
                for _ in range(calls):
                    for _ in client.chat.completions.create(model="m", messages=MSG,
                                                            stream=True, **kwargs):
                        pass
                return (time.perf_counter() - t) / calls * 1e6
            return run

        loop = asyncio.new_event_loop()

        def async_round(client: AsyncOpenAI) -> Callable[[], float]:
            async def go() -> None:
                for _ in range(calls):
                    await client.chat.completions.create(model="m", messages=MSG)

            def run() -> float:
                t = time.perf_counter()
                loop.run_until_complete(go())
                return (time.perf_counter() - t) / calls * 1e6
            return run

        for fn in (sync_round(bare), sync_round(inst)):  # warm up both
            fn()
        print(f"\n1. added per call: {rounds} alternating rounds of {calls} calls, "
              f"medians (target <= 15 us)")
        print(f"   {'kind':<10}{'bare us/call':>14}{'instrumented':>14}{'added us':>10}")
        with_usage = {"stream_options": {"include_usage": True}}
        bare2 = OpenAI(base_url=base_url, api_key="x")
        for kind, b, i in (("A/A", sync_round(bare), sync_round(bare2)),
                           ("sync", sync_round(bare), sync_round(inst)),
                           ("async", async_round(abare), async_round(ainst)),
                           ("streaming", stream_round(bare, **with_usage), stream_round(inst)),
                           ("stream*", stream_round(bare), stream_round(inst))):
            mb, mi, md = _median_added(b, i, rounds)
            print(f"   {kind:<10}{mb:>14.0f}{mi:>14.0f}{md:>10.1f}")
            collector.flush(30)
        loop.close()
        print("   A/A: two bare clients, i.e. the noise floor of this comparison. streaming:\n"
              "   the bare client asks for usage too (include_usage), as the wrapper does for\n"
              "   you; stream*: against one that does not (adds the usage chunk's parsing).")
        bench_in_memory(rounds)
        # The part of the added cost that is ours alone, without the network's noise:
        # build the event and enqueue it, as the wrapper does after the call returns.
        from openai.types.chat import ChatCompletion

        from collector._recorder import Call, ClientInfo
        from collector.targets import TARGETS

        result = inst.chat.completions.create(model="m", messages=MSG)
        assert isinstance(result, ChatCompletion)
        info = ClientInfo("bench", {"team": "t"}, False, True, sink_put=lambda e: None)
        n = 20000
        t = time.perf_counter()
        for _ in range(n):
            c = Call(TARGETS[0], info, {"model": "m"})
            c.succeed_plain(result)
        per = (time.perf_counter() - t) / n * 1e6
        print(f"   recorder alone (build the event from a ChatCompletion): {per:.1f} us/call")
    collector.get_sink().close()


def bench_in_memory(rounds: int, calls: int = 2000) -> None:
    """The real SDK over an in-memory httpx transport: no sockets, no server, so the
    difference that instrument() makes is far above the noise."""
    import json

    import httpx2

    import collector
    from spendwatch.fake_openai import CHAT_USAGE

    body = json.dumps({"id": "c", "object": "chat.completion", "created": 1, "model": "m",
                       "choices": [{"index": 0, "finish_reason": "stop", "message": {
                           "role": "assistant", "content": "hi"}}],
                       "usage": CHAT_USAGE}).encode()

    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, content=body, headers={
            "content-type": "application/json", "x-request-id": "req_1"})

    def make() -> OpenAI:
        return OpenAI(base_url="http://api.invalid/v1", api_key="x",
                      http_client=httpx2.Client(transport=httpx2.MockTransport(handler)))

    bare, bare2 = make(), make()
    inst = collector.instrument(make())

    def run(client: OpenAI) -> Callable[[], float]:
        def go() -> float:
            t = time.perf_counter()
            for _ in range(calls):
                client.chat.completions.create(model="m", messages=MSG)
            return (time.perf_counter() - t) / calls * 1e6
        return go

    run(bare)()
    run(inst)()
    _, _, aa = _median_added(run(bare), run(bare2), rounds)
    mb, mi, md = _median_added(run(bare), run(inst), rounds)
    print(f"   in-memory transport (real SDK, no socket), {rounds} rounds of {calls}: "
          f"bare {mb:.0f} us, instrumented {mi:.0f} us, added {md:.1f} us "
          f"(A/A {aa:+.1f} us); sink writes to SQLite meanwhile")
    collector.flush(30)


def _events(n: int) -> list:
    from models.events import UsageEvent
    from models.ids import uuid7

    now = dt.datetime.now(dt.UTC)
    return [UsageEvent(id=uuid7(), ts=now, provider="openai", endpoint="chat.completions",
                       model_requested="gpt-4o-mini", model="gpt-4o-mini-2024-07-18",
                       service_tier="default", usage_reported=True, input_tokens=20,
                       cached_input_tokens=5, cache_write_tokens=0, output_tokens=10,
                       reasoning_tokens=0, audio_input_tokens=0, audio_output_tokens=0,
                       latency_ms=12.5, status_code=200, attempts=1, request_id="req_x",
                       team="search", project="ranker", user="u-1", feature="f",
                       environment="bench", tags={"k": "v"}) for _ in range(n)]


def _sink_rate(url: str, events: list, spool: str) -> float:
    from collector.sink import EventSink
    from models.database import open_database
    from spendwatch.settings import load_settings

    open_database(url).dispose()
    sink = EventSink(load_settings({"database_url": url, "spool_dir": spool,
                                    "queue_size": len(events) + 1}))
    t = time.perf_counter()
    for e in events:
        sink.put(e)
    assert sink.flush(300)
    rate = len(events) / (time.perf_counter() - t)
    assert sink.stats().written == len(events), sink.stats()
    sink.close()
    return rate


def _sqlite_raw(path: str, events: list) -> float:
    import sqlite3

    from models.event_store import _sqlite_row
    from models.schema import EVENT_COLUMNS

    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    cols = ", ".join(f'"{c}"' for c in EVENT_COLUMNS)
    conn.execute("CREATE TABLE raw_events AS SELECT * FROM usage_events WHERE 0")
    conn.execute("CREATE UNIQUE INDEX raw_pk ON raw_events(id)")
    conn.execute("CREATE INDEX raw_ts ON raw_events(ts)")
    conn.execute("CREATE INDEX raw_ing ON raw_events(ingested_at)")
    sql = f"INSERT INTO raw_events ({cols}) VALUES ({', '.join('?' * len(EVENT_COLUMNS))})"
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    t = time.perf_counter()
    rows = [_sqlite_row(e, now) for e in events]  # the raw baseline builds tuples too
    for i in range(0, len(rows), 1000):
        conn.execute("BEGIN")
        conn.executemany(sql, rows[i:i + 1000])
        conn.execute("COMMIT")
    rate = len(events) / (time.perf_counter() - t)
    conn.close()
    return rate


def _pg_raw(url: str, events: list) -> float:
    import psycopg

    from models.event_store import _pg_row, _pg_type
    from models.schema import EVENT_COLUMNS

    conninfo = url.replace("postgresql+psycopg://", "postgresql://")
    cols = ", ".join(f'"{c}"' for c in EVENT_COLUMNS)
    now = dt.datetime.now(dt.UTC)
    with psycopg.connect(conninfo) as conn:
        conn.execute("CREATE TABLE raw_events (LIKE usage_events INCLUDING ALL)")
        conn.commit()
        t = time.perf_counter()
        rows = [_pg_row(e, now) for e in events]
        for i in range(0, len(rows), 1000):
            with conn.cursor() as cur, cur.copy(
                    f"COPY raw_events ({cols}) FROM STDIN (FORMAT BINARY)") as cp:
                cp.set_types([_pg_type(c) for c in EVENT_COLUMNS])
                for row in rows[i:i + 1000]:
                    cp.write_row(row)
            conn.commit()
        rate = len(events) / (time.perf_counter() - t)
        conn.execute("DROP TABLE raw_events")
    return rate


def bench_sink(n: int, repeats: int) -> None:

    print(f"\n2. sink throughput: {n:,} events, median of {repeats} "
          f"(targets: >= 60 % of sqlite3, >= 50 % of binary COPY)")
    print(f"   {'database':<12}{'sink ev/s':>12}{'raw ev/s':>12}{'ratio':>8}")
    tmp = Path(tempfile.mkdtemp())
    sink_r, raw_r = [], []
    for r in range(repeats):
        url = f"sqlite:///{tmp}/sink{r}.db"
        sink_r.append(_sink_rate(url, _events(n), str(tmp / "spool")))
        raw_r.append(_sqlite_raw(str(tmp / f"sink{r}.db"), _events(n)))
    s, w = statistics.median(sink_r), statistics.median(raw_r)
    print(f"   {'SQLite':<12}{s:>12,.0f}{w:>12,.0f}{s / w:>8.0%}")
    try:
        sink_r, raw_r = [], []
        for _ in range(repeats):
            with scratch_schema() as (url, _):  # a fresh schema: every table, every repeat
                sink_r.append(_sink_rate(url, _events(n), str(tmp / "spool")))
                raw_r.append(_pg_raw(url, _events(n)))
        s, w = statistics.median(sink_r), statistics.median(raw_r)
        print(f"   {'PostgreSQL':<12}{s:>12,.0f}{w:>12,.0f}{s / w:>8.0%}")
    except Exception as exc:
        print(f"   PostgreSQL: not measured ({type(exc).__name__}: {exc})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    bench_calls(args.rounds, args.calls)
    bench_sink(args.events, args.repeats)


if __name__ == "__main__":
    main()
