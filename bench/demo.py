"""Benchmark of ``spendwatch demo`` (not a test): how long a newcomer waits before the
dashboard has data. Runs ``spendwatch demo --no-serve`` ROUNDS times, each in a fresh
data folder (SQLite), and prints the median of each phase read from its progress bars
(the history generated into the collector's sink, its rollup, the day-by-day replay
of the current month with a rollup and an alert evaluation per day) and of the whole
command (process start to exit: imports, schema, live SDK calls, budgets and alerts
included).

Baseline, in the same run: copying the same rows into an empty demo database with one
``INSERT INTO ... SELECT`` in SQLite itself, the floor for writing them at all.

    python -m bench.demo [--rounds 3] [--days 90]
"""

from __future__ import annotations

import argparse
import os
import re
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_PHASES = {"generate": r"generating \d+ days of usage",
           "rollup": r"rolling up the history",
           "replay": r"replaying \d+ days \(daily rollup and alerts\)"}


def _last_elapsed(stderr: str, label: str) -> float:
    found = re.findall(rf"{label} \[[#.]+\] \d+/\d+\s+([\d.]+)s", stderr)
    return float(found[-1]) if found else 0.0


def _run(days: int, folder: Path) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SPENDWATCH_DATA_DIR": str(folder)}
    env.pop("SPENDWATCH_DATABASE_URL", None)
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "spendwatch.cli", "demo", "--no-serve",
                             "--days", str(days)], env=env, capture_output=True, text=True,
                            check=True)
    wall = time.perf_counter() - started
    found = re.search(r"generated ([\d,]+) events; loaded and rolled up in ([\d.]+) s",
                      result.stderr)
    assert found, result.stderr
    out = {name: _last_elapsed(result.stderr, label) for name, label in _PHASES.items()}
    out.update(events=float(found.group(1).replace(",", "")), load=float(found.group(2)),
               wall=wall)
    return out


def _baseline(demo_db: Path, empty_db: Path) -> float:
    conn = sqlite3.connect(empty_db, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute(f"ATTACH DATABASE '{demo_db}' AS src")
    started = time.perf_counter()
    conn.execute("BEGIN")
    conn.execute("INSERT INTO main.usage_events SELECT * FROM src.usage_events")
    conn.execute("COMMIT")
    seconds = time.perf_counter() - started
    conn.close()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--days", type=int, default=90)
    args = parser.parse_args()
    from models.database import open_database

    runs: list[dict[str, float]] = []
    baselines: list[float] = []
    for i in range(args.rounds):
        with tempfile.TemporaryDirectory() as tmp:
            runs.append(_run(args.days, Path(tmp)))
            empty = Path(tmp) / "empty.db"
            open_database(f"sqlite:///{empty}").dispose()
            baselines.append(_baseline(Path(tmp) / "demo.db", empty))
        r = runs[-1]
        print(f"round {i + 1}: {r['events']:,.0f} events, load {r['load']:.1f} s "
              f"(history {r['generate']:.1f}, its rollup {r['rollup']:.1f}, replay "
              f"{r['replay']:.1f}), whole command {r['wall']:.1f} s; baseline "
              f"{baselines[-1]:.2f} s", flush=True)

    def med(key: str) -> float:
        return statistics.median(r[key] for r in runs)

    base = statistics.median(baselines)
    print(f"\nspendwatch demo --days {args.days}, median of {args.rounds} rounds:")
    print(f"  events                          {med('events'):,.0f}")
    print(f"  history into the sink           {med('generate'):6.1f} s")
    print(f"  its rollup                      {med('rollup'):6.1f} s")
    print(f"  day-by-day replay of the month  {med('replay'):6.1f} s")
    print(f"  load + rollup (target <= 20 s)  {med('load'):6.1f} s "
          f"({med('events') / med('load'):,.0f} events/s)")
    print(f"  whole command                   {med('wall'):6.1f} s")
    print(f"  baseline: INSERT ... SELECT of the same rows in SQLite  {base:.2f} s "
          f"(load = {med('load') / base:.0f}x)")


if __name__ == "__main__":
    main()
