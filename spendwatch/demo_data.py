"""The demo organisation and a seeded generator of its usage events.

Six teams, fifteen projects, eight models and their users, as workloads: each says
which model and endpoint it calls, how often on an average weekday at the start of
the period, its token sizes, how much of its prompt is cached, how often it streams
and when it runs (office hours, or nightly jobs). On top of the cycles (hour of day,
weekday, growth over the period) the story has:

* a launch: ``support/helpdesk-bot`` v2 goes live ``launch_day`` (5x, settling at 1.8x);
* a 429 storm: ``gpt-4.1-mini`` is rate limited for four hours on ``storm_day``
  (most calls retried by the SDK, a third failing after three attempts);
* an overrun: a runaway agent loop in ``research/agents`` spends more than the
  research team's monthly budget this month, whatever the day of the month;
* an unpriced fine-tune (``FINE_TUNE``, known to no price list: cost NULL, never $0);
* untagged traffic (no team, for the chargeback's ``unallocated`` line).

Nothing here touches a database: :func:`generate` yields :class:`UsageEvent` lists,
one per hour, in time order; the demo hands them to the collector's sink.
"""

from __future__ import annotations

import datetime as dt
import itertools
import math
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from zoneinfo import ZoneInfo

from models.events import UsageEvent

__all__ = ["FINE_TUNE", "MODELS", "ORG", "OVERRUN_TEAM", "RUNAWAY", "STORM_MODEL", "USERS",
           "WORKLOADS",
           "Plan", "Workload", "generate", "make_plan"]

UTC = dt.UTC

#: team -> projects
ORG: dict[str, tuple[str, ...]] = {
    "search": ("ranker", "query-rewrite", "snippets"),
    "support": ("helpdesk-bot", "ticket-triage", "macros"),
    "growth": ("email-copy", "ab-writer"),
    "platform": ("evals", "embeddings-index"),
    "finance": ("invoice-parser", "forecasting"),
    "research": ("agents", "long-context", "fine-tune-lab"),
}
#: A fine-tune no price list knows: its tokens are counted, its cost stays unknown.
FINE_TUNE = "ft:gpt-4.1-mini-2025-04-14:acme:invoices:d3m0"
MODELS = ("gpt-4o-mini", "gpt-4o", "gpt-4.1-mini", "gpt-4.1", "o4-mini", "gpt-5-mini",
          "text-embedding-3-small", FINE_TUNE)
#: The model of the 429 storm.
STORM_MODEL = "gpt-4.1-mini"
#: The team whose runaway agent loop alone spends 1.25x its monthly budget (read
#: from ``demo_budgets.toml``) in the current month.
OVERRUN_TEAM = "research"

_FIRST = ("amara", "ben", "carla", "dev", "elena", "farid", "grace", "hiro", "ines", "jonas",
          "kenji", "lena", "marco", "nadia", "omar", "priya", "quinn", "rosa", "sami", "tara",
          "umar", "vera", "wei", "yara", "zoe", "aisha", "bruno", "chloe", "diego", "emma")
_LAST = ("okafor", "schmidt", "rossi", "patel", "novak", "haddad", "kim", "sato", "garcia",
         "berg", "tanaka", "weber", "costa", "ivanova", "said", "shah", "lee", "mendes")
#: team -> its people (the dashboard groups by user)
USERS: dict[str, tuple[str, ...]] = {}
_n = 0
for _team, _size in (("search", 6), ("support", 9), ("growth", 5), ("platform", 4),
                     ("finance", 4), ("research", 7)):
    USERS[_team] = tuple(f"{_FIRST[(_n + i) % len(_FIRST)]}.{_LAST[(_n * 7 + i * 5) % len(_LAST)]}"
                         for i in range(_size))
    _n += _size
del _n, _team, _size

#: (fixed ms, ms per output token, time to first token ms) per model
_SPEED: dict[str, tuple[float, float, float]] = {
    "gpt-4o-mini": (300, 9, 260), "gpt-4o": (450, 11, 380), "gpt-4.1-mini": (320, 8, 280),
    "gpt-4.1": (500, 11, 420), "o4-mini": (600, 6, 700), "gpt-5-mini": (550, 7, 650),
    "text-embedding-3-small": (60, 0, 0), FINE_TUNE: (350, 9, 300),
}
#: share of calls per hour of the UTC day for office-hours traffic (Europe + US)
_OFFICE = (0.25, 0.2, 0.18, 0.18, 0.2, 0.3, 0.5, 0.9, 1.3, 1.6, 1.7, 1.7, 1.6, 1.8, 2.0, 2.0,
           1.9, 1.7, 1.4, 1.1, 0.8, 0.6, 0.4, 0.3)
_OFFICE_MEAN = sum(_OFFICE) / 24
#: Every workload's volume is scaled by this: ~175k events over 90 days, which load
#: and roll up in about 10 s on a 2-core machine (``python -m bench.demo``).
VOLUME = 0.72


@dataclass(frozen=True)
class Workload:
    """One kind of traffic: who calls what, how often and how big."""

    team: str | None
    project: str | None
    feature: str | None
    model: str
    endpoint: str
    per_day: float            # calls on an average weekday at the start of the period
    input_tokens: int         # median prompt size
    output_tokens: int        # median completion size
    cache_hit: float = 0.0    # share of calls whose prompt prefix is cached
    cached_share: float = 0.0  # share of the prompt that is cached on a hit
    stream: float = 0.0       # share of streamed calls
    reasoning: float = 0.0    # share of output that is reasoning
    nightly: tuple[int, ...] = ()  # UTC hours of a nightly job (else office hours)
    weekend: float = 0.3      # weekend traffic relative to a weekday
    growth: float = 1.3       # traffic at the end of the period relative to the start
    tier: str = "default"
    user: str | None = ""     # "": one of the team's people; None: no user tag


WORKLOADS: tuple[Workload, ...] = (
    Workload("search", "ranker", "rerank", "gpt-4.1-mini", "chat.completions", 420, 2500, 60,
             cache_hit=0.85, cached_share=0.7, weekend=0.6, growth=1.5, user="svc-ranker"),
    Workload("search", "query-rewrite", "rewrite", "gpt-4o-mini", "chat.completions", 300,
             400, 40, cache_hit=0.3, cached_share=0.5, weekend=0.6, user="svc-search"),
    Workload("search", "snippets", "embed", "text-embedding-3-small", "embeddings", 250, 350,
             0, weekend=0.6, user="svc-search"),
    Workload("support", "helpdesk-bot", "answers", "gpt-4o", "chat.completions", 150, 7000,
             280, cache_hit=0.8, cached_share=0.75, stream=0.9, weekend=0.5, growth=1.2),
    Workload("support", "ticket-triage", "triage", "gpt-4.1-mini", "chat.completions", 180,
             1200, 90, cache_hit=0.5, cached_share=0.6, user="svc-triage"),
    Workload("support", "macros", "drafts", "gpt-4o-mini", "chat.completions", 90, 800, 350,
             stream=0.7),
    Workload("growth", "email-copy", "campaigns", "gpt-4o", "chat.completions", 70, 2500, 900,
             stream=0.6, growth=1.6),
    Workload("growth", "ab-writer", "variants", "gpt-5-mini", "responses", 60, 1200, 900,
             reasoning=0.5, stream=0.5, growth=1.8),
    Workload("platform", "evals", "nightly-evals", "o4-mini", "responses", 150, 5000, 2500,
             reasoning=0.6, nightly=(1, 2, 3, 4), weekend=1.0, tier="flex", user="svc-evals"),
    Workload("platform", "embeddings-index", "reindex", "text-embedding-3-small", "embeddings",
             300, 600, 0, nightly=(2, 3, 4, 5), weekend=1.0, growth=1.6, user="svc-indexer"),
    Workload("finance", "invoice-parser", "extract", FINE_TUNE, "chat.completions", 120, 1800,
             350, weekend=0.1, user="svc-invoices"),
    Workload("finance", "forecasting", "analysis", "gpt-4.1", "chat.completions", 25, 12000,
             1200, cache_hit=0.4, cached_share=0.6, weekend=0.1),
    Workload("research", "agents", "tool-use", "o4-mini", "responses", 80, 9000, 2500,
             cache_hit=0.6, cached_share=0.6, stream=0.4, reasoning=0.7, growth=1.6),
    Workload("research", "long-context", "summaries", "gpt-4.1", "chat.completions", 40, 60000,
             1200, cache_hit=0.5, cached_share=0.8, stream=0.5),
    Workload("research", "fine-tune-lab", "experiments", "gpt-4.1-mini", "chat.completions",
             50, 2000, 500, growth=0.8),
    Workload(None, None, None, "gpt-4o-mini", "chat.completions", 90, 900, 250, stream=0.3,
             user=None),
    Workload(None, None, None, "gpt-4o", "chat.completions", 30, 3000, 600, user=None),
)
#: The runaway agent loop behind the research team's overrun.
RUNAWAY = Workload(OVERRUN_TEAM, "agents", "agent-loop", "gpt-4.1", "responses", 0, 30000, 300,
                   user="emma.patel")
_LAUNCHED = ("support", "helpdesk-bot")


@dataclass
class Plan:
    """When things happen in one generated period (all instants UTC)."""

    start: dt.datetime
    end: dt.datetime
    launch_day: dt.date
    storm_day: dt.date
    storm_hours: tuple[int, int]
    runaway_start: dt.datetime
    runaway_per_hour: float
    seed: int
    hours: int = field(init=False)

    def __post_init__(self) -> None:
        self.hours = math.ceil((self.end - self.start).total_seconds() / 3600)

    def facts(self) -> dict[str, object]:
        """The story's dates, as JSON (kept with the demo data for tests and users)."""
        return {"start": self.start.isoformat(), "end": self.end.isoformat(),
                "launch_day": self.launch_day.isoformat(),
                "storm_day": self.storm_day.isoformat(), "storm_model": STORM_MODEL,
                "storm_hours_utc": list(self.storm_hours), "overrun_team": OVERRUN_TEAM,
                "runaway_start": self.runaway_start.isoformat(), "fine_tune": FINE_TUNE}


def _weekday_before(day: dt.date) -> dt.date:
    while day.weekday() >= 5:
        day -= dt.timedelta(days=1)
    return day


def make_plan(now: dt.datetime, days: int, timezone: str = "UTC", seed: int = 42, *,
              overrun_budget_usd: Decimal = Decimal("250"),
              runaway_call_usd: Decimal = Decimal("0.0624")) -> Plan:
    """The period of ``days`` local days ending ``now``, and the story's dates in it.

    ``runaway_call_usd`` is what one runaway call costs (from the price book), used
    to size the loop so that it alone spends 1.25 x ``overrun_budget_usd`` (the
    overrun team's monthly budget) this month."""
    tz = ZoneInfo(timezone)
    local_today = now.astimezone(tz).date()
    first = local_today - dt.timedelta(days=days - 1)
    start = dt.datetime.combine(first, dt.time(0), tz).astimezone(UTC)
    today_utc = now.astimezone(UTC).date()
    storm = _weekday_before(today_utc - dt.timedelta(days=min(9, max(days // 3, 1))))
    launch = _weekday_before(today_utc - dt.timedelta(days=min(18, max(days * 2 // 3, 2))))
    month_start = dt.datetime.combine(local_today.replace(day=1), dt.time(0), tz)
    runaway_start = max(month_start.astimezone(UTC), now - dt.timedelta(days=5), start)
    # In the first minutes of a month the loop is short and furious: its spend must fall
    # inside the month whose budget it overruns.
    runaway_start = min(runaway_start, now - dt.timedelta(seconds=1))
    hours = (now - runaway_start).total_seconds() / 3600
    target = overrun_budget_usd * Decimal("1.25")
    per_hour = float(target / runaway_call_usd) / hours
    return Plan(start=start, end=now, launch_day=launch, storm_day=storm,
                storm_hours=(13, 17), runaway_start=runaway_start, runaway_per_hour=per_hour,
                seed=seed)


def generate(plan: Plan) -> Iterator[list[UsageEvent]]:
    """The events of each hour of the plan, in time order (one list per hour)."""
    gen = _Generator(plan)
    for h in range(plan.hours):
        yield gen.hour(plan.start + dt.timedelta(hours=h))


class _Generator:
    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.rng = random.Random(plan.seed)
        self.span = max((plan.end - plan.start).total_seconds(), 1.0)
        self.start_ts = plan.start.timestamp()
        self.end_ts = plan.end.timestamp()
        self.launch_ts = dt.datetime.combine(plan.launch_day, dt.time(14), UTC).timestamp()
        self._last_ms = 0
        self._counter = 0

    def _id(self, ts: float) -> uuid.UUID:
        """A UUIDv7 (as :func:`models.ids.uuid7` makes them) for an event at ``ts``,
        from the seeded generator: the same plan gives the same ids."""
        ms = int(ts * 1000)
        if ms == self._last_ms:
            self._counter += 1
        else:
            self._last_ms, self._counter = ms, self.rng.getrandbits(8)
        value = (ms << 80) | (0x7 << 76) | ((self._counter & 0xFFF) << 64) | (0b10 << 62) \
            | self.rng.getrandbits(62)
        return uuid.UUID(int=value)

    def _rate(self, w: Workload, hour_start: dt.datetime) -> float:
        """Expected calls of ``w`` in the hour starting ``hour_start``."""
        t = (hour_start.timestamp() - self.start_ts) / self.span
        rate = w.per_day * VOLUME * (1 + (w.growth - 1) * t)
        if hour_start.weekday() >= 5:
            rate *= w.weekend
        if w.nightly:
            rate = rate / len(w.nightly) if hour_start.hour in w.nightly else 0.0
        else:
            rate = rate / 24 * _OFFICE[hour_start.hour] / _OFFICE_MEAN
        if (w.team, w.project) == _LAUNCHED:
            since = (hour_start.timestamp() - self.launch_ts) / 86400
            if since >= 0:
                rate *= 1.8 + 3.2 * math.exp(-since / 2)
        return rate

    def hour(self, hour_start: dt.datetime) -> list[UsageEvent]:
        rng = self.rng
        h0 = hour_start.timestamp()
        width = min(3600.0, self.end_ts - h0)
        if width <= 0:
            return []
        calls: list[tuple[float, Workload]] = []
        noise = math.exp(rng.gauss(0.0, 0.12))
        for w in WORKLOADS:
            expected = self._rate(w, hour_start) * noise * width / 3600
            n = int(expected + rng.random())
            calls.extend((h0 + rng.random() * width, w) for _ in range(n))
        if hour_start >= self.plan.runaway_start - dt.timedelta(hours=1):
            lo = max(h0, self.plan.runaway_start.timestamp())
            if lo < h0 + width:
                part = (h0 + width - lo) / 3600
                n = int(self.plan.runaway_per_hour * part + rng.random())
                calls.extend((lo + rng.random() * (h0 + width - lo), RUNAWAY)
                             for _ in range(n))
        calls.sort(key=lambda c: c[0])
        storm = (hour_start.date() == self.plan.storm_day
                 and self.plan.storm_hours[0] <= hour_start.hour < self.plan.storm_hours[1])
        return [self._event(ts, w, storm) for ts, w in calls]

    def _event(self, ts: float, w: Workload, storm: bool) -> UsageEvent:
        rng = self.rng
        model = w.model
        user = w.user
        if user == "":  # heavy and light users: the i-th person calls 1/i as often
            people = USERS[w.team or ""]
            user = rng.choices(people, cum_weights=_ZIPF[len(people)])[0]
        streamed = rng.random() < w.stream
        inp = max(8, int(w.input_tokens * math.exp(rng.gauss(0.0, 0.55))))
        out = max(1, int(w.output_tokens * math.exp(rng.gauss(0.0, 0.6)))) if w.output_tokens \
            else 0
        fixed, per_token, ttft_base = _SPEED[model]
        attempts, status, error = 1, 200, None
        r = rng.random()
        if storm and model == STORM_MODEL and r < 0.7:
            attempts = 3 if r < 0.5 else 2
            if r < 0.25:
                status, error = 429, "rate_limit"
        elif r < 0.003:
            status, error, attempts = 429, "rate_limit", 3
        elif r < 0.005:
            status, error, attempts = 500, "server", 3
        elif r < 0.006:
            status, error, attempts = None, "network", 3
        elif r < 0.008:
            status, error = 400, "client"
        elif r < 0.018:
            attempts = 2  # the SDK retried once (429 or 5xx) and then succeeded
        backoff = sum(rng.uniform(400, 1000) * 2 ** i for i in range(attempts - 1))
        ident = self._id(ts)
        request_id = f"req_{rng.getrandbits(128):032x}"
        event = UsageEvent(
            id=ident, ts=dt.datetime.fromtimestamp(ts, UTC), provider="openai",
            endpoint=w.endpoint, model_requested=model, model=model, service_tier=w.tier,
            streamed=streamed and error is None, attempts=attempts, status_code=status,
            request_id=request_id, team=w.team, project=w.project, user=user,
            feature=w.feature, environment="demo")
        if error is not None:
            event.error_kind = error
            event.error_class = _ERROR_CLASS[error]
            event.service_tier = None
            event.model = None
            event.latency_ms = round(rng.uniform(40, 300) * attempts + backoff, 1)
            if error == "network":
                event.latency_ms += 10_000.0  # a read timeout
            return event
        cached = 0
        if rng.random() < w.cache_hit:
            cached = int(inp * w.cached_share) // 128 * 128  # caching works in 128s
        reasoning = int(out * w.reasoning)
        event.usage_reported = True
        event.input_tokens = inp
        event.cached_input_tokens = cached if w.endpoint != "embeddings" else None
        event.output_tokens = out if w.endpoint != "embeddings" else None
        event.reasoning_tokens = reasoning if w.endpoint != "embeddings" else None
        gen = (fixed + inp * 0.012 + out * per_token) * math.exp(rng.gauss(0.0, 0.3))
        event.latency_ms = round(gen + backoff, 1)
        if event.streamed:  # reasoning happens before the first visible token
            ttft = (ttft_base + inp * 0.006) * math.exp(rng.gauss(0.0, 0.35)) + reasoning * \
                per_token
            event.ttft_ms = round(min(ttft + backoff, event.latency_ms * 0.95), 1)
        return event


_ZIPF = {n: list(itertools.accumulate(1 / (i + 1) for i in range(n)))
         for n in {len(people) for people in USERS.values()}}
_ERROR_CLASS = {"rate_limit": "RateLimitError", "server": "InternalServerError",
                "network": "APITimeoutError", "client": "BadRequestError"}
