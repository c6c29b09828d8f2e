"""A hand-built month (March 2026) recorded through the event store, priced from the
organisation's price table and rolled up by the real RollupEngine, on SQLite and
PostgreSQL.

acme-1 (list, from 2026-01-01): input $2.00/M, cached input $1.00/M, output $8.00/M;
"mystery" has no price.

| team / project        | events | each: input (cached) / output        | cost each | total     |
|-----------------------|--------|--------------------------------------|-----------|-----------|
| search / ranker       | 3      | 1,000,000 / 500,000 (u-1 twice, u-2) | 2 + 4     | 18.00     |
| search / indexer      | 1      | 250,000 / 100,000                    | 0.5 + 0.8 | 1.30      |
| ads / bidder          | 2      | 1,000,000 (400,000) / 250,000        | 1.2+0.4+2 | 7.20      |
| platform / gateway    | 1      | 500,000 / 125,000                    | 1 + 1     | 2.00      |
| (no team) / (none)    | 1      | 1,000,000 / 41,667                   | 2+0.333336| 2.333336  |
| search / ranker       | 1      | mystery 10,000 / 1,000: unpriced     | -         | -         |

Month total 30.833336 -> $30.83.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from models.database import open_database
from models.event_store import EventStore
from models.events import UsageEvent
from models.ids import uuid7
from models.price_file import apply_prices, parse_price_file
from models.rollups import RollupEngine

UTC = dt.UTC
MARCH = dt.date(2026, 3, 1)
APRIL = dt.date(2026, 4, 1)

PRICES = """
[[price]]
model = "acme-1"
kind = "list"
effective_from = 2026-01-01
input_per_mtok = "2.00"
cached_input_per_mtok = "1.00"
output_per_mtok = "8.00"
"""

ALLOCATION = """
[[cost_centre]]
code = "CC-100"
name = "Search"
teams = ["search"]

[[cost_centre]]
code = "CC-200"
name = "Ads and platform"
teams = ["ads", "platform"]

[[cost_centre]]
code = "CC-300"
name = "Indexing"
projects = ["search/indexer"]

[[rule]]
name = "spread unallocated"
pool = "unallocated"
method = "proportional"
targets = ["search", "ads"]
effective_from = 2026-01-01

[[rule]]
name = "platform"
pool = "platform"
method = "fixed"
effective_from = 2026-01-01
percentages = { search = "60", ads = 40 }
"""


def ev(ts: dt.datetime, team: str | None, project: str | None, input_tokens: int,
       output_tokens: int, cached: int = 0, model: str = "acme-1", **kw: object) -> UsageEvent:
    base: dict[str, object] = dict(
        provider="openai", endpoint="chat.completions", model=model, usage_reported=True,
        input_tokens=input_tokens, cached_input_tokens=cached, cache_write_tokens=0,
        output_tokens=output_tokens, reasoning_tokens=0, audio_input_tokens=0,
        audio_output_tokens=0, latency_ms=120.0, status_code=200, attempts=1, team=team,
        project=project)
    base.update(kw)
    return UsageEvent(id=uuid7(), ts=ts, **base)  # type: ignore[arg-type]


def march(day: int, hour: int = 12) -> dt.datetime:
    return dt.datetime(2026, 3, day, hour, tzinfo=UTC)


def golden_events() -> list[UsageEvent]:
    return [
        *(ev(march(d), "search", "ranker", 1_000_000, 500_000, user=u)
          for d, u in ((2, "u-1"), (3, "u-1"), (4, "u-2"))),
        ev(march(5), "search", "indexer", 250_000, 100_000),
        *(ev(march(d), "ads", "bidder", 1_000_000, 250_000, cached=400_000) for d in (6, 31)),
        ev(march(10), "platform", "gateway", 500_000, 125_000),
        ev(march(1, 0), None, None, 1_000_000, 41_667),
        ev(march(20), "search", "ranker", 10_000, 1_000, model="mystery"),
    ]


def set_prices(engine: Engine, text: str) -> None:
    apply_prices(engine, parse_price_file(text, "prices.toml"), source="prices.toml")


@pytest.fixture
def golden(database) -> Iterator[Engine]:  # type: ignore[no-untyped-def]
    engine = open_database(database.url)
    set_prices(engine, PRICES)
    EventStore(engine).insert(golden_events())
    RollupEngine(engine).run()
    yield engine
    engine.dispose()
