"""The writer builds rows straight from a recorded call (``Call.event_values``)
instead of a ``UsageEvent``: every column it stores must equal what the former path
(call -> UsageEvent -> row) stored, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import json
import random
import uuid
from zoneinfo import ZoneInfo

import openai
import pytest
from openai.types.chat import ChatCompletion

from collector._recorder import Call, ClientInfo, _clip
from collector.tagging import COLUMN_TAGS, tags
from collector.targets import TARGETS
from collector.usage import Usage
from models._rollup_key import event_key
from models.database import open_database
from models.event_store import EventStore, _pg_row, _sqlite_row, _sqlite_ts
from models.events import EVENT_FIELDS, TOKEN_FIELDS, UsageEvent, event_values
from models.schema import EVENT_COLUMNS
from models.types import SQLITE_DATETIME_FORMAT
from spendwatch.fake_openai import CHAT_USAGE

UTC = dt.UTC


def _former_event(call: Call) -> UsageEvent:
    """The event as ``Call._build_event`` built it before the values path (copied)."""
    client = call.client
    merged = {**call.defaults, **call.tags} if call.tags else call.defaults
    extra = {k: v for k, v in merged.items() if k not in COLUMN_TAGS} or None
    usage = call.usage
    ttft = None
    if call.first_token_ns is not None:
        ttft = (call.first_token_ns - call.start_perf) / 1e6
    return UsageEvent(
        id=call.event_values()[0],  # drawn once per call
        ts=dt.datetime.fromtimestamp(call.start_ns / 1e9, UTC),
        provider=client.provider, endpoint=call.target.endpoint,
        model_requested=_clip(call.model_requested, 200), model=_clip(call.model, 200),
        service_tier=_clip(call.service_tier, 32), is_batch=False, streamed=call.streamed,
        usage_reported=usage is not None,
        **{f: (getattr(usage, f) if usage else None) for f in TOKEN_FIELDS},
        latency_ms=(call.end_perf - call.start_perf) / 1e6, ttft_ms=ttft,
        status_code=call.status, error_class=_clip(call.error_class, 100),
        error_kind=call.error_kind,
        attempts=call.attempts if client.counts_attempts else max(call.attempts, 1),
        request_id=_clip(call.request_id, 128), team=merged.get("team"),
        project=merged.get("project"), user=merged.get("user"),
        feature=merged.get("feature"),
        environment=merged.get("environment") or client.environment, tags=extra)


def _former_sqlite_row(e: UsageEvent, now: str) -> tuple[object, ...]:
    ts = e.ts.astimezone(UTC).strftime(SQLITE_DATETIME_FORMAT)
    return (e.id.hex, ts, now, e.provider, e.endpoint, e.model_requested, e.model,
            e.service_tier, int(e.is_batch), int(e.streamed), int(e.usage_reported),
            *(getattr(e, f) for f in TOKEN_FIELDS), e.latency_ms, e.ttft_ms,
            e.status_code, e.error_class, e.error_kind, e.attempts, e.request_id, e.team,
            e.project, e.user, e.feature, e.environment,
            None if e.tags is None else json.dumps(e.tags, separators=(",", ":")),
            event_key(e.latency_ms, e.ttft_ms, e.streamed, e.usage_reported, e.is_batch))


def _result(model: str = "gpt-4o-mini-2024-07-18", tier: str | None = "default",
            usage: dict[str, object] | None = CHAT_USAGE) -> ChatCompletion:
    result = ChatCompletion.model_validate({
        "id": "c", "object": "chat.completion", "created": 1, "model": model,
        "usage": usage, "choices": [{"index": 0, "finish_reason": "stop",
                                     "message": {"role": "assistant", "content": "hi"}}]})
    result.service_tier = tier  # type: ignore[assignment]  # any text, as a proxy may send
    return result


def _calls() -> list[Call]:
    """Recorded calls covering every column's cases."""
    out: list[Call] = []
    put = out.append
    plain = ClientInfo("openai", {"team": "search", "project": "ranker"}, False, True,
                       sink_put=put, environment="prod")
    loose = ClientInfo("azure", {"k": "v", "environment": "dev"}, True, False,
                       sink_put=put)
    chat = TARGETS[0]

    c = Call(chat, plain, {"model": "gpt-4o-mini"})  # plain, usage, request id
    c.attempts, c.status, c.request_id = 1, 200, "req_1"
    c.succeed_plain(_result())
    with tags(user="u-42", feature="summaries", ticket="T-1"):  # extra tags
        c = Call(chat, plain, {"model": "m" * 300})  # clipped to 200
        c.attempts, c.status = 2, 200
        c.succeed_plain(_result(model="x" * 250, tier="t" * 40, usage=None))
    c = Call(chat, loose, {"model": 5})  # not a string: no requested model
    c.succeed_plain(_result(model="", tier=None))  # empty model: None
    c = Call(chat, plain, {"model": "gpt-4o"})  # failed with a status
    c.attempts, c.status, c.request_id = 3, 429, "r" * 200
    c.fail(openai.APIConnectionError(request=_request()))
    with tags(environment="", team="t2"):
        c = Call(chat, loose, {"model": "gpt-4o"})  # a stream with a first token
        c.start_stream()
        c.observe({"model": "gpt-4o-2024", "choices": [{"delta": {"content": "a"}}]})
        c.observe({"model": "gpt-4o-2024", "choices": [], "usage": CHAT_USAGE})
        c.finish_stream()
    return out


def _request() -> object:
    import httpx2

    return httpx2.Request("POST", "http://api.invalid/v1/chat/completions")


def test_event_fields_match_the_table_and_the_usage_tuple() -> None:
    # ingested_at is set by the writer, rollup_key derived by it (models._rollup_key)
    assert (EVENT_COLUMNS[:2] + EVENT_COLUMNS[3:-1]) == EVENT_FIELDS
    assert EVENT_COLUMNS[2] == "ingested_at" and EVENT_COLUMNS[-1] == "rollup_key"
    assert Usage._fields == TOKEN_FIELDS


def test_values_equal_the_former_event() -> None:
    calls = _calls()
    assert len(calls) == 5
    read = [c.event_values()[10:17] for c in calls]  # read on the caller thread
    chat = (20, 5, 2, 10, 4, 1, 0)
    assert read == [chat, (None,) * 7, chat, (None,) * 7, chat]
    for call in calls:
        former = _former_event(call)
        assert call.event_values() == event_values(former)
        assert call.to_event() == former
        assert call.event_values()[0] == call.event_values()[0]  # the id is drawn once


def test_rows_equal_the_former_rows() -> None:
    now = dt.datetime.now(UTC)
    now_text = now.strftime(SQLITE_DATETIME_FORMAT)
    for call in _calls():
        former = _former_event(call)
        assert _sqlite_row(call.event_values(), now_text) == _former_sqlite_row(
            former, now_text)
        pg = _pg_row(call.event_values(), now)
        assert pg[:30] == (former.id, former.ts, now,
                           *event_values(former)[2:29])
        assert (pg[30] is None) == (former.tags is None)
        if former.tags is not None:
            assert pg[30].obj == former.tags
        assert pg[31] == event_key(former.latency_ms, former.ttft_ms, former.streamed,
                                   former.usage_reported, former.is_batch)
        assert len(pg) == 32


def test_sqlite_timestamp_text_is_strftime() -> None:
    rng = random.Random(7)
    zones = [UTC, ZoneInfo("America/New_York"), ZoneInfo("Asia/Kolkata"), None]
    for _ in range(2000):
        ts = dt.datetime(rng.randint(1, 9999), rng.randint(1, 12), rng.randint(1, 28),
                         rng.randint(0, 23), rng.randint(0, 59), rng.randint(0, 59),
                         rng.choice([0, rng.randint(0, 999_999)]), tzinfo=rng.choice(zones))
        try:
            expected = ts.astimezone(UTC).strftime(SQLITE_DATETIME_FORMAT)
        except (OverflowError, ValueError):
            continue
        assert _sqlite_ts(ts) == expected, ts


@pytest.mark.parametrize("n", [1, 31, 32, 33, 70])
def test_stored_rows_equal_the_former_path(database, n: int) -> None:
    """What the sink stores from calls equals what a UsageEvent of each stores, in
    batches that fill whole and partial multi-row statements."""
    engine = open_database(database.url)
    try:
        store = EventStore(engine)
        calls = [_calls()[i % 5] for i in range(n)]
        for i, call in enumerate(calls):  # distinct ids for the copies
            call._id = uuid.UUID(int=(i + 1) << 64 | 0x7000_8000_0000_0000)
        store.insert_values([c.event_values() for c in calls])
        stored = database.rows("SELECT * FROM usage_events ORDER BY id")
        with engine.begin() as conn:
            conn.exec_driver_sql("DELETE FROM usage_events")
        store.insert([_former_event(c) for c in calls])
        again = database.rows("SELECT * FROM usage_events ORDER BY id")
    finally:
        engine.dispose()
    assert len(stored) == n
    ingested = EVENT_COLUMNS.index("ingested_at")
    for a, b in zip(stored, again, strict=True):
        assert a[:ingested] + a[ingested + 1:] == b[:ingested] + b[ingested + 1:]
