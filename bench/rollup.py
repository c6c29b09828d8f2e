"""Benchmark of the rollups (not a test). Loads synthetic events spread over 90 days
with the fastest path each database has (sqlite3 executemany, psycopg binary COPY;
not through the collector), then prints in one run:

* one plain ``GROUP BY`` (day, model, team, project) over the whole table: the baseline;
* a full rebuild of the rollups with one grouped read at a time, then with one per
  core (target: <= 1.2x the baseline);
* an incremental rollup after one new day of events arrives, at 1/4, 1/2 and all of
  the history loaded (target: <= 1 s, and flat as history grows).

    python -m bench.rollup [--events 10000000] [--database sqlite|postgresql|both]
    python -m bench.rollup --reuse URL   # re-time the rebuilds on a loaded database
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import statistics
import tempfile
import time

from sqlalchemy import Engine, text

from bench._postgres import scratch_schema

UTC = dt.UTC
DAYS = 90
START = dt.datetime(2026, 6, 1, tzinfo=UTC)
MODELS = ("gpt-4o-mini", "gpt-4o", "gpt-4.1-mini", "gpt-4.1", "o4-mini", "gpt-5-mini",
          "text-embedding-3-small", "ft:gpt-4o-mini-2024-07-18:acme::x1")
TEAMS = {"search": 3, "support": 3, "growth": 2, "platform": 2, "finance": 2, "research": 3}


def _events(n: int, day_from: int, day_to: int, seed: int) -> list:
    """n events spread over [day_from, day_to) (UTC days from START), in time order."""
    from models.events import UsageEvent
    from models.ids import uuid7

    rng = random.Random(seed)
    span = (day_to - day_from) * 86400
    stamps = sorted(rng.random() * span for _ in range(n))
    teams = list(TEAMS)
    out = []
    for s in stamps:
        ts = START + dt.timedelta(days=day_from, seconds=s)
        # 10 people per team; a person works in one of the team's projects (their
        # second one on a fifth of calls) and uses a few models, as in a real org
        team = rng.choice(teams)
        person = rng.randint(1, 10)
        home = (person % TEAMS[team]) + 1
        proj = home if rng.random() < 0.8 else rng.randint(1, TEAMS[team])
        model = MODELS[(person + rng.choice((0, 0, 1, 2))) % len(MODELS)]
        inp = rng.randint(50, 6000)
        out.append(UsageEvent(
            id=uuid7(int(ts.timestamp() * 1e9)), ts=ts, provider="openai",
            endpoint="chat.completions", model=model, service_tier="default",
            usage_reported=True, input_tokens=inp, cached_input_tokens=inp // 3,
            cache_write_tokens=0, output_tokens=rng.randint(10, 800), reasoning_tokens=0,
            audio_input_tokens=0, audio_output_tokens=0, latency_ms=rng.random() * 3000,
            status_code=200, attempts=1, team=team,
            project=f"{team}-p{proj}", user=f"{team}-u{person}"))
    return out


def _load(engine: Engine, events: list, ingested: dt.datetime) -> None:
    """The fastest path, with ingested_at set explicitly (history is old)."""
    from models.event_store import _pg_row, _pg_type, _sqlite_row
    from models.events import event_values
    from models.schema import EVENT_COLUMNS

    cols = ", ".join(f'"{c}"' for c in EVENT_COLUMNS)
    raw = engine.raw_connection()
    try:
        if engine.dialect.name == "sqlite":
            stamp = ingested.strftime("%Y-%m-%d %H:%M:%S.%f")
            sql = (f"INSERT INTO usage_events ({cols}) VALUES "
                   f"({', '.join('?' * len(EVENT_COLUMNS))})")
            cur = raw.cursor()
            for i in range(0, len(events), 100_000):
                cur.execute("BEGIN")
                cur.executemany(sql, [_sqlite_row(event_values(e), stamp)
                                       for e in events[i:i + 100_000]])
                cur.execute("COMMIT")
        else:
            conn = raw.driver_connection
            with conn.cursor() as cur, cur.copy(
                    f"COPY usage_events ({cols}) FROM STDIN (FORMAT BINARY)") as cp:
                cp.set_types([_pg_type(c) for c in EVENT_COLUMNS])
                for e in events:
                    cp.write_row(_pg_row(event_values(e), ingested))
            conn.commit()
    finally:
        raw.close()


def _plain_group_by(engine: Engine, tuned: bool = False) -> float:
    """One plain GROUP BY over the whole table; ``tuned``: in a transaction with the
    rollup's own settings (PostgreSQL: a hash aggregate with 128 MB, no JIT), which
    the rollup's reads get and the plain query does not."""
    from models._rollup_read import tune_postgresql

    day = ("substr(ts, 1, 10)" if engine.dialect.name == "sqlite"
           else "(ts AT TIME ZONE 'UTC')::date")
    sql = (f"SELECT {day}, model, team, project, count(*), sum(input_tokens), "
           f"sum(output_tokens) FROM usage_events GROUP BY 1, 2, 3, 4")
    t = time.perf_counter()
    with engine.connect() as conn, conn.begin():
        if tuned:
            tune_postgresql(conn)
        conn.execute(text(sql)).all()
    return time.perf_counter() - t


def _rebuilds(engine: Engine, prices: object) -> tuple[float, dict[int, float]]:
    """(median of 3 plain GROUP BYs, {readers: seconds of a full rebuild}) with one
    grouped read at a time, then one reader per core. On PostgreSQL it also prints
    the plain GROUP BY with the rollup's settings, for comparison."""
    from models import rollups
    from models.rollups import RollupEngine

    baseline = statistics.median(_plain_group_by(engine) for _ in range(3))
    if engine.dialect.name == "postgresql":
        tuned = statistics.median(_plain_group_by(engine, tuned=True) for _ in range(3))
        print(f"   plain GROUP BY with the rollup's settings (hash aggregate, not the "
              f"target's baseline): {tuned:.2f} s")
    rebuilds = {}
    default = rollups._MAX_READERS
    for readers in (1, default):
        rollups._MAX_READERS = readers
        t = time.perf_counter()
        RollupEngine(engine, prices=prices).run(rebuild=True)  # type: ignore[arg-type]
        rebuilds[min(readers, os.cpu_count() or 1)] = time.perf_counter() - t
    rollups._MAX_READERS = default
    return baseline, rebuilds


def _print_rebuilds(baseline: float, rebuilds: dict[int, float]) -> None:
    print(f"   plain GROUP BY (baseline)      {baseline:8.2f} s")
    for readers, rebuild in rebuilds.items():
        print(f"   full rebuild, {readers} reader{'s' if readers > 1 else ' '}         "
              f"{rebuild:8.2f} s   {rebuild / baseline:.2f}x the baseline (target <= 1.2x)")


def reuse(url: str) -> None:
    """Re-time the baseline and the rebuilds on a database an earlier run loaded."""
    from models.database import open_database
    from models.pricing import PriceBook

    engine = open_database(url)
    with engine.connect() as conn:
        n = conn.execute(text("SELECT count(*) FROM usage_events")).scalar() or 0
    print(f"{n:,} events (load average {os.getloadavg()[0]:.2f})")
    _print_rebuilds(*_rebuilds(engine, PriceBook.load(engine)))
    engine.dispose()


def bench(url: str, n: int, label: str) -> None:
    from models.database import open_database
    from models.pricing import PriceBook
    from models.rollups import RollupEngine

    engine = open_database(url)
    prices = PriceBook.load(engine)
    history_days = DAYS - 1
    incremental: list[tuple[int, float]] = []
    loaded = 0
    t_load = time.perf_counter()
    # A simulated clock: each day's events are ingested at the end of that day, so the
    # watermark moves the way it does in production. The history of each part is
    # brought up to date by an (untimed) incremental run; then one new day arrives and
    # the next incremental run is timed. It re-aggregates the new day; the day before
    # (ingested within the watermark's 5-minute overlap) is only counted, found
    # complete and not re-read.
    per_day = n // DAYS
    for part, (d0, d1) in enumerate(((0, 22), (23, 44), (45, history_days))):
        for day in range(d0, d1):  # a day at a time: 10M events do not fit in memory
            _load(engine, _events(per_day, day, day + 1, seed=part * 1000 + day),
                  START + dt.timedelta(days=day + 1))
            loaded += per_day
            print(f"\r   loading {label}: {loaded:,} events", end="", flush=True)
        print()
        if engine.dialect.name == "postgresql":
            with engine.begin() as conn:
                conn.execute(text("ANALYZE usage_events"))
        roll = RollupEngine(engine, prices=prices)
        roll.run()  # bring the rollups up to date with the history
        day = d1  # one new day arrives, then the incremental run is timed
        _load(engine, _events(per_day, day, day + 1, seed=100 + part),
              START + dt.timedelta(days=day + 1))
        t = time.perf_counter()
        result = roll.run()
        incremental.append((loaded, time.perf_counter() - t))
        loaded += per_day
        assert result.days[-1] == (START + dt.timedelta(days=day)).date(), result.days
    load_s = time.perf_counter() - t_load
    baseline, rebuilds = _rebuilds(engine, prices)
    print(f"\n{label}: {loaded:,} events over {DAYS} days (loaded in {load_s:.0f}s)")
    _print_rebuilds(baseline, rebuilds)
    for size, secs in incremental:
        print(f"   incremental, one new day, history {size:>11,}: {secs:6.2f} s (target <= 1 s)")
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--reuse", metavar="URL",
                        help="only re-time the baseline and the rebuilds on a database an "
                             "earlier run loaded (its SQLite file or PostgreSQL schema)")
    parser.add_argument("--database", choices=("sqlite", "postgresql", "both"),
                        default="both")
    args = parser.parse_args()
    if args.reuse:
        reuse(args.reuse)
        return
    if args.database in ("sqlite", "both"):
        path = tempfile.mkdtemp()
        bench(f"sqlite:///{path}/rollup.db", args.events, "SQLite")
    if args.database in ("postgresql", "both"):
        with scratch_schema() as (url, _):
            bench(url, args.events, "PostgreSQL")


if __name__ == "__main__":
    main()
