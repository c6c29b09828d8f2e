"""Benchmark of the dashboard (not a test). Loads synthetic events over the 90 days
that end today with bench.rollup's loader (3 % of them failed, a third streamed),
rolls them up, starts ``spendwatch serve`` in its own process and prints, in one
run, for each size:

* the median time of every page's callbacks over HTTP (what the browser waits for:
  routing the page, then its data callbacks; the slowest when a page has several),
  target <= 150 ms;
* the median full page load over HTTP (index, layout, dependencies, the routing
  callback, then the page's callbacks; JavaScript bundles excluded: a browser caches
  them after the first visit), target <= 1 s;
* beside them, one ``SELECT count(*) FROM rollup_daily`` in the same run (baseline);
* the dashboard process's resident memory after serving every page, per number of
  events loaded (target: flat).

    python -m bench.dashboard [--events 100000,1000000] [--database sqlite|postgresql]
                              [--rounds 15]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import Engine, text

import bench.rollup as loader
from bench._postgres import scratch_schema

UTC = dt.UTC
DAYS = loader.DAYS
ROOT = Path(__file__).resolve().parents[1]


def _realistic(events: list, rng: random.Random) -> list:
    """bench.rollup's events are all successes; make 3 % fail and a third stream."""
    for e in events:
        roll = rng.random()
        if roll < 0.03:
            e.status_code, e.error_kind = rng.choice(
                ((429, "rate_limit"), (400, "client"), (500, "server"), (None, "network")))
            e.error_class = "APIError"
            e.attempts = rng.choice((1, 2, 3))
        if rng.random() < 0.33:
            e.streamed, e.ttft_ms = True, rng.random() * 800
    return events


def load(engine: Engine, n: int, seed: int) -> None:
    """n more events over the 90 days ending today (loaded a day at a time)."""
    from spendwatch.progress import ProgressBar

    rng = random.Random(seed)
    bar = ProgressBar("   loading")
    for day in range(DAYS):
        events = _realistic(loader._events(n // DAYS, day, day + 1, seed=seed * 1000 + day),
                            rng)
        loader._load(engine, events, dt.datetime.now(UTC))
        bar(day + 1, DAYS)


def _body(outputs: list[tuple[str, str]], inputs: list[tuple[str, str, object]],
          state: list[tuple[str, str, object]] = ()) -> bytes:
    output = (f"{outputs[0][0]}.{outputs[0][1]}" if len(outputs) == 1 else
              ".." + "...".join(f"{i}.{p}" for i, p in outputs) + "..")
    specs = [{"id": i, "property": p} for i, p in outputs]
    return json.dumps({  # as the renderer sends it: one output is a dict, not a list
        "output": output, "outputs": specs[0] if len(specs) == 1 else specs,
        "inputs": [{"id": i, "property": p, "value": v} for i, p, v in inputs],
        "state": [{"id": i, "property": p, "value": v} for i, p, v in state],
        "changedPropIds": [],
    }).encode()


def page_requests(today: dt.date) -> dict[str, list[tuple[str, bytes]]]:
    """For each page: its routing callback, then its data callbacks, with the values
    its controls have by default (the views a user opens first)."""
    from dashboard.pages import costs, reliability

    def route(path: str) -> tuple[str, bytes]:
        return ("route", _body([("_pages_content", "children"), ("_pages_store", "data")],
                               [("_pages_location", "pathname", path),
                                ("_pages_location", "search", "")]))

    month = today.replace(day=1)
    costs_defaults = {"start": str(today - dt.timedelta(days=29)), "end": str(today),
                      "granularity": "day", "by": "model"}
    rel_defaults = {"start": str(today - dt.timedelta(days=13)), "end": str(today),
                    "granularity": "day", "by": "model", "limit": "20"}
    return {
        "overview": [route("/"), ("data", _body(
            [("overview-messages", "children"), ("overview-headlines", "children"),
             ("overview-trend", "figure"), ("overview-top", "children")],
            [("overview-by", "value", "model"),
             ("overview-refresh", "n_intervals", None)]))],
        "costs": [route("/costs"), ("data", _body(
            [("costs-messages", "children"), ("costs-summary", "children"),
             ("costs-graph", "figure"), ("costs-tokens", "figure"),
             ("costs-table", "children")],
            [(c, p, costs_defaults.get(n, [])) for n, c, p in costs.CONTROLS]))],
        "reliability": [route("/reliability"), ("data", _body(
            [("rel-messages", "children"), ("rel-summary", "children"),
             ("rel-volume", "figure"), ("rel-errors", "figure"), ("rel-latency", "figure"),
             ("rel-table", "children"), ("rel-failures", "children")],
            [(c, p, rel_defaults.get(n, [])) for n, c, p in reliability.CONTROLS]))],
        "budgets": [route("/budgets"), ("data", _body(
            [("budgets-messages", "children"), ("budgets-content", "children"),
             ("budgets-history", "children")], [("budgets-load", "data", None)]))],
        "chargeback": [route("/chargeback"), ("data", _body(
            [("chargeback-messages", "children"), ("chargeback-summary", "children"),
             ("chargeback-table", "children")],
            [("chargeback-month", "value", f"{month:%Y-%m}")])),
            ("data", _body([("chargeback-extra", "children")],
                           [("chargeback-month", "value", f"{month:%Y-%m}")]))],
    }


def _post(url: str, body: bytes) -> None:
    request = urllib.request.Request(url + "/_dash-update-component", data=body,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as response:
        payload = response.read()
        if response.status != 200 or b'"response"' not in payload:
            raise RuntimeError(f"callback failed: {payload[:300]!r}")


def _get(url: str) -> None:
    with urllib.request.urlopen(url, timeout=120) as response:
        response.read()


def _timed(fn: Callable[[], None]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def _rss_kb(pid: int) -> tuple[int, int]:
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text()
                  .splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])


def measure(url: str, engine: Engine, rounds: int, label: str) -> dict[str, float]:
    env = {**os.environ, "SPENDWATCH_DATABASE_URL": url, "SPENDWATCH_DASHBOARD_USER": "",
           "SPENDWATCH_DASHBOARD_PASSWORD": ""}
    proc = subprocess.Popen([sys.executable, "-m", "spendwatch.cli", "serve", "--port", "0"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        line = ""
        while "dashboard: http" not in line:
            line = proc.stdout.readline()  # type: ignore[union-attr]
            if not line:
                raise RuntimeError(proc.stderr.read())  # type: ignore[union-attr]
        base = line.split()[1].rstrip("/")
        today = dt.datetime.now(UTC).date()
        pages = page_requests(today)
        paths = {"overview": "/", "costs": "/costs", "reliability": "/reliability",
                 "budgets": "/budgets", "chargeback": "/chargeback"}
        for name, requests in pages.items():  # warm up: imports, first queries
            _get(base + paths[name])
            for _, body in requests:
                _post(base, body)
        with engine.connect() as conn:
            count_sql = text("SELECT count(*) FROM rollup_daily")
            baseline = statistics.median(_timed(lambda: conn.execute(count_sql).scalar())
                                         for _ in range(rounds))
            rows = conn.execute(count_sql).scalar()
        load1, _, _ = os.getloadavg()
        print(f"\n{label}: rollup_daily has {rows:,} rows; SELECT count(*) on it "
              f"(baseline) {baseline * 1000:.2f} ms; machine load average {load1:.1f} "
              f"on {os.cpu_count()} CPUs")
        print(f"   {'page':<12} {'routing':>9} {'data callback':>14} {'full load':>10}")
        figures: dict[str, float] = {"baseline": baseline}
        for name, requests in pages.items():
            medians = [statistics.median(_timed(lambda b=body: _post(base, b))
                                         for _ in range(rounds)) for _, body in requests]

            def full(name: str = name, requests: list = requests) -> None:
                _get(base + paths[name])
                _get(base + "/_dash-layout")
                _get(base + "/_dash-dependencies")
                for _, body in requests:
                    _post(base, body)

            page = statistics.median(_timed(full) for _ in range(rounds))
            # a page with several data callbacks: the slowest (the browser runs them
            # in parallel), each printed
            slowest = max(medians[1:])
            figures[f"{name}.route"], figures[f"{name}.data"] = medians[0], slowest
            figures[f"{name}.page"] = page
            each = (" (" + " + ".join(f"{m * 1000:.1f}" for m in medians[1:]) + ")"
                    if len(medians) > 2 else "")
            print(f"   {name:<12} {medians[0] * 1000:7.1f} ms {slowest * 1000:11.1f} ms "
                  f"{page * 1000:7.1f} ms{each}")
        rss, peak = _rss_kb(proc.pid)
        figures["rss_mb"], figures["peak_mb"] = rss / 1024, peak / 1024
        print(f"   dashboard process memory: {rss / 1024:.0f} MB resident, "
              f"peak {peak / 1024:.0f} MB")
        return figures
    except Exception:
        proc.terminate()
        print(proc.communicate(timeout=30)[1][-3000:], file=sys.stderr)  # the server's log
        raise
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.communicate(timeout=30)


def run(url: str, sizes: list[int], rounds: int, label: str) -> None:
    from models.database import open_database
    from models.rollups import RollupEngine

    loader.START = dt.datetime.combine(dt.datetime.now(UTC).date()
                                       - dt.timedelta(days=DAYS - 1), dt.time(0), UTC)
    engine = open_database(url)
    loaded = 0
    summary = []
    for i, size in enumerate(sizes):
        print(f"{label}: loading {size - loaded:,} events to reach {size:,}")
        t = time.perf_counter()
        load(engine, size - loaded, seed=i + 1)
        loaded = size
        if engine.dialect.name == "postgresql":
            with engine.begin() as conn:
                conn.execute(text("ANALYZE"))
        RollupEngine(engine).run(rebuild=True)
        print(f"   loaded and rolled up in {time.perf_counter() - t:.0f} s")
        summary.append((size, measure(url, engine, rounds, f"{label}, {size:,} events")))
    print(f"\n{label}: dashboard process memory by events loaded")
    for size, figures in summary:
        print(f"   {size:>12,} events: {figures['rss_mb']:6.0f} MB resident "
              f"(peak {figures['peak_mb']:.0f} MB)")
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", default="100000,1000000",
                        help="comma-separated cumulative sizes (default 100000,1000000)")
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    sizes = sorted(int(s) for s in args.events.split(","))
    if args.database == "sqlite":
        with tempfile.TemporaryDirectory() as folder:  # 10M events take ~3 GB
            run(f"sqlite:///{folder}/dashboard.db", sizes, args.rounds, "SQLite")
        return
    with scratch_schema() as (url, _):
        run(url, sizes, args.rounds, "PostgreSQL")


if __name__ == "__main__":
    main()
