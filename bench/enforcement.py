"""Benchmark of budget enforcement in the collector (not a test). Prints, in one run,
the median microseconds per call of an instrumented client against the local fake
API with enforcement off (the default) and on (two block/downgrade budgets cached in
memory, refreshed every 5 s as configured by default), rounds alternating so both
see the same machine, beside the bare client's time as the baseline.

    python -m bench.enforcement [--rounds 15] [--calls 200]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from openai import OpenAI

from bench.collector import _server_process

MSG = [{"role": "user", "content": "hi"}]
BUDGETS = """
[[budget]]
name = "cap"
scope = { team = "search" }
period = "monthly"
amount = "1000"
mode = "block"

[[budget]]
name = "cheap"
scope = { project = "ranker" }
period = "daily"
amount = "100"
mode = "downgrade"
downgrade = { "gpt-4o" = "gpt-4o-mini" }
"""


def _round(client: OpenAI, calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        client.chat.completions.create(model="gpt-4o", messages=MSG)
    return (time.perf_counter() - start) / calls * 1e6


def _event() -> object:
    import datetime as dt

    from models.events import UsageEvent
    from models.ids import uuid7

    return UsageEvent(id=uuid7(), ts=dt.datetime.now(dt.UTC), provider="openai",
                      endpoint="chat.completions", model="gpt-4o", usage_reported=True,
                      input_tokens=1000, output_tokens=100, team="search", project="ranker")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--calls", type=int, default=200)
    args = parser.parse_args()

    import collector
    from alerts import apply_budget_file
    from collector import budget_guard
    from models.database import open_database

    with tempfile.TemporaryDirectory() as tmp, _server_process() as base_url:
        url = f"sqlite:///{tmp}/bench.db"
        settings = collector.configure(database_url=url, spool_dir=f"{tmp}/spool")
        engine = open_database(url)
        (Path(tmp) / "b.toml").write_text(BUDGETS)
        apply_budget_file(engine, Path(tmp) / "b.toml", actor="bench")
        bare = OpenAI(base_url=base_url, api_key="x", max_retries=0)
        wrapped = collector.instrument(OpenAI(base_url=base_url, api_key="x", max_retries=0),
                                       team="search", project="ranker")
        _round(bare, 20)
        _round(wrapped, 20)
        results: dict[str, list[float]] = {"bare": [], "off": [], "on": []}
        guard = budget_guard.enable(settings, engine=engine)
        guard.refresh()  # load the price book and the budgets once, outside the timing
        for r in range(args.rounds):
            order = ["bare", "off", "on"] if r % 2 else ["on", "off", "bare"]
            for kind in order:
                if kind == "on":
                    budget_guard.GUARD = guard
                else:
                    budget_guard.disable()
                results[kind].append(_round(bare if kind == "bare" else wrapped, args.calls))
        info = wrapped.__dict__["_spendwatch"]
        # the check alone, in-process (no HTTP noise): off is the wrapper's one test
        n = 20000
        budget_guard.GUARD = guard
        event = _event()
        start = time.perf_counter()
        for _ in range(n):
            guard._pending.append(event)  # one finished call to price per check
            budget_guard.enforce(info, {"model": "gpt-4o"})
        check_on = (time.perf_counter() - start) / n * 1e6
        budget_guard.disable()
        start = time.perf_counter()
        for _ in range(n):
            if budget_guard.GUARD is not None:
                budget_guard.enforce(info, {"model": "gpt-4o"})
        check_off = (time.perf_counter() - start) / n * 1e6
        collector.flush(10)
        engine.dispose()
    med = {k: statistics.median(v) for k, v in results.items()}
    on_off = statistics.median(a - b for a, b in zip(results["on"], results["off"], strict=True))
    off_bare = statistics.median(a - b for a, b in zip(results["off"], results["bare"],
                                                       strict=True))
    print(f"median µs per call over {args.rounds} rounds x {args.calls} calls "
          f"(deltas: median of per-round differences)")
    print(f"  bare client (baseline)            {med['bare']:8.1f}")
    print(f"  instrumented, enforcement off     {med['off']:8.1f}   ({off_bare:+.1f} vs bare)")
    print(f"  instrumented, enforcement on      {med['on']:8.1f}   ({on_off:+.1f} vs off)")
    print(f"the check alone, {n} calls in-process: off {check_off:.3f} µs, on {check_on:.1f} µs "
          f"(two budgets, pricing one finished call each time)")

if __name__ == "__main__":
    main()
