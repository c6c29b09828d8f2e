"""Usage for dashboard tests, recorded through the real pipeline: events into the
event store (as the collector's sink writes them), then the real rollups."""

from __future__ import annotations

import datetime as dt
import random
from decimal import Decimal

from sqlalchemy import Engine

from models.event_store import EventStore
from models.events import UsageEvent
from models.ids import uuid7
from models.rollups import RollupEngine
from tests.prices import FixedBook, Price

UTC = dt.UTC


class Book(FixedBook):
    """gpt-4o: $2.50 in / $10 out / $1.25 cached per M tokens; gpt-4o-mini: $0.15 /
    $0.60 / $0.075; 'mystery-ft' is unpriced. No contracts."""

    PRICES = {
        "gpt-4o": Price("list gpt-4o", Decimal("2.50"), Decimal("10"), Decimal("1.25")),
        "gpt-4o-mini": Price("list gpt-4o-mini", Decimal("0.15"), Decimal("0.60"),
                             Decimal("0.075")),
    }


def event(ts: dt.datetime, *, model: str = "gpt-4o", team: str | None = "search",
          project: str | None = "ranker", user: str | None = "u1", **kw) -> UsageEvent:
    base = dict(provider="openai", endpoint="chat.completions", model=model,
                usage_reported=True, input_tokens=1000, cached_input_tokens=0,
                cache_write_tokens=0, output_tokens=100, reasoning_tokens=0,
                audio_input_tokens=0, audio_output_tokens=0, latency_ms=120.0,
                status_code=200, attempts=1, team=team, project=project, user=user,
                service_tier="default")
    base.update(kw)
    return UsageEvent(id=uuid7(), ts=ts, **base)


def record(engine: Engine, events: list[UsageEvent], *, timezone: str = "UTC",
           prices: object | None = None) -> None:
    EventStore(engine).insert(events)
    RollupEngine(engine, timezone=timezone, prices=prices or Book()).run()


TEAMS = {"search": ("ranker", "snippets"), "support": ("helpdesk-bot",),
         "growth": ("email-copy",)}
MODELS = ("gpt-4o", "gpt-4o-mini", "mystery-ft")


def busy_org(today: dt.date, *, days: int = 45, per_day: int = 40, seed: int = 5
             ) -> list[UsageEvent]:
    """Random but reproducible traffic over the ``days`` before and including today
    (UTC), with errors of every class, streams, cached tokens and no-team events."""
    rng = random.Random(seed)
    out = []
    first = dt.datetime.combine(today - dt.timedelta(days=days - 1), dt.time(0), UTC)
    now = dt.datetime.now(UTC)
    for d in range(days):
        for _ in range(per_day):
            ts = first + dt.timedelta(days=d, seconds=rng.randint(0, 86399))
            if ts > now:
                ts = now - dt.timedelta(seconds=rng.randint(1, 600))
            team = rng.choice([*TEAMS, None])
            project = rng.choice(TEAMS[team]) if team else None
            status, kind = rng.choice([(200, None)] * 12 + [(429, "rate_limit"),
                                      (400, "client"), (500, "server"), (None, "network")])
            streamed = rng.random() < 0.3
            inp = rng.randint(100, 5000)
            out.append(event(ts, model=rng.choice(MODELS), team=team, project=project,
                             user=f"u{rng.randint(1, 6)}", input_tokens=inp,
                             cached_input_tokens=rng.randint(0, inp // 2),
                             output_tokens=rng.randint(10, 900),
                             reasoning_tokens=rng.choice([0, 0, 50]),
                             latency_ms=rng.uniform(50, 4000), streamed=streamed,
                             ttft_ms=rng.uniform(20, 600) if streamed else None,
                             status_code=status, error_kind=kind,
                             error_class="APIError" if kind else None,
                             attempts=rng.choice([1, 1, 1, 2, 3]),
                             endpoint=rng.choice(["chat.completions", "responses"])))
    return out
