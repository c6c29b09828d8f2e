"""The README's main command: `spendwatch demo` loads a living organisation's usage
through the real pipeline (the collector's sink, the rollups), and keeps the story's
promises: a 429 storm on its day, a team over its budget, an unpriced fine-tune that
is never $0, cached tokens, streams, untagged traffic, users; a second run reuses
the data instead of doubling it; nothing generated is lost."""

from __future__ import annotations

import collections
import datetime as dt
import json
import os
import re
import socket
import subprocess
import sys
import time
import tomllib
import urllib.request
from decimal import Decimal
from email import message_from_binary_file, policy
from pathlib import Path

from sqlalchemy import create_engine, text

from models.event_store import EventStore
from models.events import UsageEvent
from models.ids import uuid7
from models.reports import spend_report
from spendwatch.demo import DEMO_MARKER, budget_file
from spendwatch.demo_data import FINE_TUNE, OVERRUN_TEAM, STORM_MODEL

ROOT = Path(__file__).resolve().parents[2]
DAYS = 21  # the full 90 days take ~12 s; 21 hold every part of the story


def _env(data_dir: Path) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SPENDWATCH_DATA_DIR": str(data_dir)}
    for name in ("SPENDWATCH_DATABASE_URL", "SPENDWATCH_SMTP_HOST", "SPENDWATCH_TIMEZONE"):
        env.pop(name, None)
    return env


def run_demo(data_dir: Path, *args: str, url: str | None = None) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "spendwatch.cli"]
    if url is not None:
        argv += ["--database-url", url]
    argv += ["demo", "--no-serve", *args]
    return subprocess.run(argv, env=_env(data_dir), capture_output=True, text=True,
                          timeout=600)


def generated(result: subprocess.CompletedProcess) -> int:
    found = re.search(r"generated ([\d,]+) events", result.stderr)
    assert found, result.stderr
    return int(found.group(1).replace(",", ""))


def q(engine, sql: str, **params) -> tuple:
    """One row; PostgreSQL's sum() of integers (a Decimal) as an int."""
    with engine.connect() as conn:
        row = conn.execute(text(sql), params).one()
    return tuple(int(v) if isinstance(v, Decimal) else v for v in row)


def test_demo_keeps_its_promises(database, tmp_path):
    # SQLite: the default demo database in the data folder; PostgreSQL: --database-url
    url = None if database.kind == "sqlite" else database.url
    first = run_demo(tmp_path, "--days", str(DAYS), url=url)
    assert first.returncode == 0, first.stderr
    if url is None:
        assert (tmp_path / "demo.db").exists()  # a separate demo database
        assert not (tmp_path / "spendwatch.db").exists()
        engine = create_engine(f"sqlite:///{tmp_path / 'demo.db'}")
    else:
        engine = database.engine
    n = generated(first)
    assert re.search(r"(generating|replaying) 21 days", first.stderr)  # a progress bar
    assert n > 30_000

    # nothing lost: every generated event is in the database, once
    assert q(engine, "SELECT count(*) FROM usage_events")[0] == n
    assert q(engine, "SELECT count(DISTINCT id) FROM usage_events")[0] == n
    facts = json.loads(q(engine, "SELECT value FROM rollup_state WHERE name = :n",
                         n=DEMO_MARKER)[0])
    assert facts["events"] == n and facts["days"] == DAYS
    # ... and all of it went through the rollups
    assert q(engine, "SELECT sum(requests) FROM rollup_daily")[0] == n

    # the 429 storm: rate-limit errors for its model on its day, many times any other day
    storm = q(engine, "SELECT sum(errors_rate_limit), sum(retries) FROM rollup_daily "
                      "WHERE model = :m AND day = :d", m=STORM_MODEL, d=facts["storm_day"])
    worst_other = q(engine, "SELECT max(e) FROM (SELECT sum(errors_rate_limit) AS e FROM "
                            "rollup_daily WHERE model = :m AND day <> :d GROUP BY day) x",
                    m=STORM_MODEL, d=facts["storm_day"])[0]
    assert storm[0] >= 20 and storm[0] > 5 * (worst_other or 0), (storm, worst_other)
    assert storm[1] > storm[0]  # most storm calls were retried by the SDK, not failed
    hours = q(engine, "SELECT min(ts), max(ts) FROM usage_events WHERE model_requested = :m "
                      "AND error_kind = 'rate_limit' AND status_code = 429 AND attempts = 3 "
                      "AND ts >= :lo AND ts < :hi", m=STORM_MODEL,
              lo=dt.datetime.fromisoformat(facts["storm_day"] + "T13:00:00+00:00"),
              hi=dt.datetime.fromisoformat(facts["storm_day"] + "T17:00:00+00:00"))
    assert hours[0] is not None

    # a team over its monthly budget (the amount in the demo's budget file)
    with budget_file().open("rb") as f:
        budgets = tomllib.load(f)["budget"]
    limit = next(Decimal(b["amount"]) for b in budgets
                 if b.get("scope") == {"team": OVERRUN_TEAM} and b["period"] == "monthly")
    today = dt.datetime.now(dt.UTC).date()
    spent = {r.keys["team"]: r.cost_contract or Decimal(0) for r in spend_report(
        engine, by=["team"], period="month", since=today.replace(day=1), until=today)}
    assert spent[OVERRUN_TEAM] > limit, (spent, limit)
    others = [b for b in budgets if list(b.get("scope", {})) == ["team"]
              and b["period"] == "monthly" and b["scope"]["team"] != OVERRUN_TEAM]
    assert len(others) == 5
    for b in others:  # ... and only that one
        assert spent.get(b["scope"]["team"], Decimal(0)) < Decimal(b["amount"]), (b, spent)

    # the fine-tune is unpriced: tokens counted, cost NULL in every row, never $0
    ft = q(engine, "SELECT count(*), sum(unpriced_tokens), count(cost_list), "
                   "count(cost_contract) FROM rollup_daily WHERE model = :m", m=FINE_TUNE)
    assert ft[0] > 0 and ft[1] > 0 and ft[2] == 0 and ft[3] == 0, ft
    priced = q(engine, "SELECT count(*) FROM rollup_daily WHERE model <> :m AND "
                       "input_tokens > 0 AND cost_contract IS NULL", m=FINE_TUNE)[0]
    assert priced == 0  # every other model has a price

    # cached-token heavy workloads, a streamed share with time to first token
    tok = q(engine, "SELECT sum(cached_input_tokens), sum(input_tokens), sum(streamed), "
                    "sum(requests), sum(ttft_count) FROM rollup_daily")
    assert tok[0] > 0.1 * tok[1], tok  # (the runaway agent loop caches nothing)
    assert 0.1 < tok[2] / tok[3] < 0.6 and tok[4] > 0.9 * tok[2] - 50, tok
    for project in ("helpdesk-bot", "ranker"):
        heavy = q(engine, "SELECT sum(cached_input_tokens), sum(input_tokens) FROM "
                          "rollup_daily WHERE project = :p", p=project)
        assert heavy[0] > 0.4 * heavy[1], (project, heavy)

    # untagged traffic for the chargeback's unallocated line; users to group by
    unallocated = q(engine, "SELECT sum(requests) FROM rollup_daily WHERE team = ''")[0]
    assert 0.02 * n < unallocated < 0.1 * n
    assert q(engine, 'SELECT count(DISTINCT "user") FROM usage_events')[0] >= 30
    teams = q(engine, "SELECT count(DISTINCT team), count(DISTINCT project), "
                      "count(DISTINCT model) FROM rollup_daily WHERE team <> ''")
    assert tuple(teams) == (6, 15, 8)

    # today's newest events were recorded live by the instrumented openai SDK
    live = q(engine, "SELECT count(*), max(attempts), sum(CASE WHEN streamed THEN 1 ELSE 0 "
                     "END) FROM usage_events WHERE provider LIKE '127.0.0.1:%'")
    assert live[0] == 40 and live[1] == 2 and live[2] > 0, tuple(live)
    newest = q(engine, "SELECT provider FROM usage_events ORDER BY ts DESC LIMIT 1")[0]
    assert newest.startswith("127.0.0.1:")

    # the summary: spend by team this month, the dashboard's URL
    assert "Spend by team this month" in first.stdout and OVERRUN_TEAM in first.stdout
    assert "(unallocated)" in first.stdout and "http://127.0.0.1:8050/" in first.stdout
    assert "not started (--no-serve)" in first.stdout

    # the example budgets were applied and the alerts ran: the overrun team's email is in
    # the demo's outbox (no SMTP server, no webhook; apart from a real installation's)
    outbox = tmp_path / "demo" / "outbox"
    subjects = [_subject(p) for p in sorted(outbox.glob("*.eml"))]
    over = [s for s in subjects if f"research-monthly (team={OVERRUN_TEAM}) crossed 100%"
            in s]
    assert len(over) == 1, subjects
    assert any("has no price" in s and FINE_TUNE in s for s in subjects), subjects
    assert f"Alert emails ({len(subjects)}, written to {outbox})" in first.stdout
    # the day-by-day replay: the storm's error-rate alert, then its resolution
    storm_alerts = [s for s in subjects if "429" in s and STORM_MODEL in s]
    assert len(storm_alerts) == 2 and any(s.startswith("[spendwatch] Resolved")
                                          for s in storm_alerts), subjects
    assert not (tmp_path / "outbox").exists()

    # a second run reuses the data instead of doubling it
    second = run_demo(tmp_path, "--days", str(DAYS), url=url)
    assert second.returncode == 0, second.stderr
    assert "reusing the demo data" in second.stderr and "generated" not in second.stderr
    assert q(engine, "SELECT count(*) FROM usage_events")[0] == n
    assert q(engine, "SELECT sum(requests) FROM rollup_daily")[0] == n
    # exactly once per crossing, across runs
    again = [_subject(p) for p in sorted(outbox.glob("*.eml"))]
    assert set(subjects) <= set(again), again
    assert len([s for s in again if s in over]) == 1, again

    # --reset generates it again, over the two days asked for. (Not a share of the
    # first run's count: the runaway loop spends its fixed overrun inside the current
    # month, so on a month's first days it fills two days as much as 21.)
    yesterday = (dt.datetime.now(dt.UTC) - dt.timedelta(days=1)).date().isoformat()
    third = run_demo(tmp_path, "--days", "2", "--reset", url=url)
    assert third.returncode == 0, third.stderr
    m = generated(third)
    assert m < n
    assert str(q(engine, "SELECT min(ts) FROM usage_events")[0])[:10] >= yesterday
    assert q(engine, "SELECT count(*) FROM usage_events")[0] == m
    assert q(engine, "SELECT sum(requests) FROM rollup_daily")[0] == m
    engine.dispose()


def _subject(path: Path) -> str:
    with path.open("rb") as f:
        return " ".join(str(message_from_binary_file(f, policy=policy.default)["Subject"])
                        .split())


def test_demo_refuses_a_database_with_real_events(tmp_path):
    url = f"sqlite:///{tmp_path / 'prod.db'}"
    from models.database import open_database

    engine = open_database(url)
    EventStore(engine).insert([UsageEvent(id=uuid7(), ts=dt.datetime.now(dt.UTC),
                                          provider="openai", endpoint="chat.completions",
                                          environment="production")])
    result = run_demo(tmp_path, "--reset", url=url)
    assert result.returncode == 2
    assert "spendwatch: error:" in result.stderr and "did not make" in result.stderr
    assert "Traceback" not in result.stderr
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM usage_events")).scalar() == 1
    engine.dispose()


def test_demo_refuses_bad_days(tmp_path):
    result = run_demo(tmp_path, "--days", "0")
    assert result.returncode == 2 and "--days 0" in result.stderr
    assert not (tmp_path / "demo.db").exists()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_demo_serves_the_dashboard(tmp_path):
    port = _free_port()
    argv = [sys.executable, "-m", "spendwatch.cli", "demo", "--days", "2", "--port", str(port)]
    proc = subprocess.Popen(argv, env=_env(tmp_path), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        status = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
                    status = r.status
                    body = r.read().decode()
                break
            except OSError:
                time.sleep(0.5)
        assert proc.poll() is None, proc.communicate()[1]
        assert status == 200 and "<html" in body.lower()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:  # pragma: no cover
            proc.kill()
            proc.wait()


def test_demo_on_a_busy_port_says_which_port_to_use(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run([sys.executable, "-m", "spendwatch.cli", "demo", "--days", "1",
                                 "--port", str(port)], env=_env(tmp_path),
                                capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr
    assert f"port {port} is in use" in result.stderr and f"--port {port + 1}" in result.stderr
    assert "Traceback" not in result.stderr
    assert "generating" not in result.stderr  # refused before loading anything


def test_the_generator_is_seeded_and_keeps_its_story():
    from spendwatch.demo_data import RUNAWAY, generate, make_plan

    now = dt.datetime(2026, 3, 3, 10, 30, tzinfo=dt.UTC)  # early in a month
    plan = make_plan(now, 30, "Europe/Paris", 7, overrun_budget_usd=Decimal("300"),
                     runaway_call_usd=Decimal("0.0624"))
    events = [e for hour in generate(plan) for e in hour]
    again = [e for hour in generate(make_plan(now, 30, "Europe/Paris", 7,
                                              overrun_budget_usd=Decimal("300"),
                                              runaway_call_usd=Decimal("0.0624")))
             for e in hour]
    assert events == again  # same seed, same moment: the same events, ids included
    other = [e for hour in generate(make_plan(now, 30, "Europe/Paris", 8)) for e in hour]
    assert [e.id for e in other[:100]] != [e.id for e in events[:100]]
    ids = [e.id for e in events]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert all(e.id.version == 7 for e in events[:1000])
    assert all(plan.start <= e.ts < plan.end for e in events)
    assert plan.start == dt.datetime(2026, 2, 1, 23, 0, tzinfo=dt.UTC)  # Paris midnight

    # the storm: rate-limit failures of its model pile up in its hours only
    def storm(e) -> bool:
        return e.ts.date() == plan.storm_day and 13 <= e.ts.hour < 17

    limited = [e for e in events if e.error_kind == "rate_limit" and e.model_requested ==
               STORM_MODEL]
    in_storm = sum(storm(e) for e in limited)
    per_day = collections.Counter(e.ts.date() for e in limited if not storm(e))
    assert in_storm >= 20 and in_storm > 5 * max(per_day.values()), (in_storm, per_day)
    assert all(e.attempts == 3 and e.status_code == 429 and not e.usage_reported
               and e.input_tokens is None for e in limited)
    # the runaway loop runs inside this month (3 days in) and costs 1.25x the budget:
    # 375 / 0.0624 = ~6,010 calls of 30,000 input and 300 output tokens (medians)
    loop = [e for e in events if e.feature == RUNAWAY.feature]
    month_start = dt.datetime(2026, 2, 28, 23, 0, tzinfo=dt.UTC)
    assert all(e.ts >= month_start for e in loop)
    assert 5_400 < len(loop) < 6_600
    # at 00:10 on the first of a month, the whole loop still falls in that month
    early = make_plan(dt.datetime(2026, 4, 1, 0, 10, tzinfo=dt.UTC), 30, "UTC", 7,
                      overrun_budget_usd=Decimal("300"), runaway_call_usd=Decimal("0.0624"))
    loop = [e for hour in generate(early) for e in hour if e.feature == RUNAWAY.feature]
    assert 5_400 < len(loop) < 6_600
    assert all(e.ts >= dt.datetime(2026, 4, 1, tzinfo=dt.UTC) for e in loop)

    # streams have a time to first token below their latency; failures have none
    streamed = [e for e in events if e.streamed]
    assert streamed and all(0 < e.ttft_ms < e.latency_ms for e in streamed)
    assert all(e.ttft_ms is None for e in events if e.error_kind)
    # reasoning and cached tokens stay inside their totals
    assert all(e.reasoning_tokens <= e.output_tokens and e.cached_input_tokens <=
               e.input_tokens for e in events if e.usage_reported and e.output_tokens)


def test_an_interrupted_load_is_started_afresh(tmp_path):
    import signal

    argv = [sys.executable, "-m", "spendwatch.cli", "demo", "--no-serve", "--days", "60"]
    # A run started in the background (CI) ignores SIGINT, and so would the demo, which
    # inherits that: with a handler here instead, exec gives the demo the default.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        proc = subprocess.Popen(argv, env=_env(tmp_path), stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
    finally:
        signal.signal(signal.SIGINT, previous)
    db = tmp_path / "demo.db"
    # Interrupted by its own progress, a fifth of the way through the generation, not
    # when a poll of the database first sees rows: that depended on the poll's timing.
    assert proc.stderr is not None
    seen = []
    for line in proc.stderr:
        seen.append(line)
        progress = re.search(r"generating .*\] (\d+)/(\d+)", line)
        if progress and int(progress.group(1)) * 5 >= int(progress.group(2)):
            break
    proc.send_signal(signal.SIGINT)
    _, rest = proc.communicate(timeout=60)
    err = "".join(seen) + rest
    assert proc.returncode == 130, err  # interrupted while loading, not finished
    engine = create_engine(f"sqlite:///{db}")
    left = q(engine, "SELECT count(*) FROM usage_events")[0]
    assert left > 0
    assert q(engine, "SELECT count(*) FROM rollup_state WHERE name = :n", n=DEMO_MARKER)[0] == 0

    again = run_demo(tmp_path, "--days", "3")
    assert again.returncode == 0, again.stderr
    assert "an earlier load did not finish" in again.stderr
    assert q(engine, "SELECT count(*) FROM usage_events")[0] == generated(again)
    engine.dispose()
