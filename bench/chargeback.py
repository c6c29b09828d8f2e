"""Benchmark of the chargeback work on one month of events (not a test). Loads N
synthetic events over June 2026 (the fast path of ``bench.rollup``), rolls them up,
then prints, beside a plain ``GROUP BY`` (day, model, team, project) over the same
month measured in the same run:

* the chargeback report (team view; reads rollups), the FOCUS rows of the month;
* ``month close`` (one more rollup of the month, then the snapshot);
* a forced restatement of the closed month (what a late event or a reprice costs),
  and the check that finds nothing changed (what every report pays).

    python -m bench.chargeback [--events 1000000] [--database sqlite|postgresql]
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import text

from bench._postgres import scratch_schema
from bench.rollup import _events, _load

MONTH = dt.date(2026, 6, 1)


def _median(fn: Callable[[], object], runs: int = 3) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def bench(url: str, n: int, label: str) -> None:
    from models.chargeback import chargeback_report
    from models.corrections import post_corrections
    from models.database import open_database
    from models.focus import focus_rows
    from models.months import close_month, month_lines
    from models.pricing import PriceBook
    from models.rollups import RollupEngine

    engine = open_database(url)
    events = _events(n, 0, 30, seed=7)
    _load(engine, events, dt.datetime(2026, 7, 1, tzinfo=dt.UTC))
    del events
    RollupEngine(engine).run()
    day = ("substr(ts, 1, 10)" if engine.dialect.name == "sqlite"
           else "(ts AT TIME ZONE 'UTC')::date")
    sql = (f"SELECT {day}, model, team, project, count(*), sum(input_tokens), "
           f"sum(output_tokens) FROM usage_events WHERE ts >= :a AND ts < :b "
           f"GROUP BY 1, 2, 3, 4")

    def plain() -> None:
        with engine.connect() as conn:
            conn.execute(text(sql), {"a": dt.datetime(2026, 6, 1, tzinfo=dt.UTC),
                                     "b": dt.datetime(2026, 7, 1, tzinfo=dt.UTC)}).all()

    book = PriceBook.load(engine)
    baseline = _median(plain)
    report = _median(lambda: chargeback_report(engine, MONTH))

    def focus() -> None:
        closed, lines = month_lines(engine, MONTH)
        focus_rows(lines, month=MONTH, closed=closed, timezone="UTC",
                   cost_centre_of=lambda t, p, m: "", prices=book)

    focus_time = _median(focus)
    t = time.perf_counter()
    close_month(engine, MONTH, by="bench", today=dt.date(2026, 8, 1), prices=book)
    close_time = time.perf_counter() - t
    restate = _median(lambda: post_corrections(engine, prices=book, force=True))
    check = _median(lambda: post_corrections(engine, prices=book))
    print(f"{label}, {n:,} events in one month; baseline plain GROUP BY {baseline:.2f}s")
    for name, value in (("chargeback report (team view)", report),
                        ("FOCUS rows of the month", focus_time),
                        ("month close (rollup + snapshot)", close_time),
                        ("restate the closed month (late event / reprice)", restate),
                        ("check for corrections, nothing changed", check)):
        print(f"  {name:50s} {value:7.2f}s  ({value / baseline:.2f}x baseline)")
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    args = parser.parse_args()
    if args.database == "sqlite":
        with tempfile.TemporaryDirectory() as folder:
            bench(f"sqlite:///{Path(folder) / 'bench.db'}", args.events, "SQLite")
    else:
        with scratch_schema() as (url, _):
            bench(url, args.events, "PostgreSQL")


if __name__ == "__main__":
    main()
