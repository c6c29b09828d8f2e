"""classify_error and UsageEvent's JSON form (used by the disk spool)."""

from __future__ import annotations

import datetime as dt
import json
import uuid

import pytest

from models.events import ERROR_KINDS, UsageEvent, classify_error
from models.ids import uuid7


@pytest.mark.parametrize(("status", "failed", "kind"), [
    (None, False, None),
    (200, False, None),
    (500, False, None),
    (429, True, "rate_limit"),
    (400, True, "client"),
    (404, True, "client"),
    (499, True, "client"),
    (500, True, "server"),
    (503, True, "server"),
    (None, True, "network"),
    (200, True, "other"),
    (302, True, "other"),
])
def test_classify_error(status, failed, kind):
    assert classify_error(status, failed) == kind
    assert kind is None or kind in ERROR_KINDS


def make_event(ts: dt.datetime) -> UsageEvent:
    return UsageEvent(
        id=uuid7(), ts=ts, provider="openai", endpoint="responses", model="gpt-5",
        service_tier="flex", is_batch=True, usage_reported=True, input_tokens=10,
        output_tokens=3, reasoning_tokens=2, latency_ms=101.25, status_code=429,
        error_class="RateLimitError", error_kind="rate_limit", attempts=2,
        request_id="req_123", user="u-1", environment="prod", tags={"k": "v"})


@pytest.mark.parametrize("tz", [
    dt.UTC,
    dt.timezone(dt.timedelta(hours=5, minutes=30)),
    dt.timezone(dt.timedelta(hours=-7)),
])
def test_json_round_trip(tz):
    original = make_event(dt.datetime(2025, 6, 30, 23, 59, 58, 654321, tzinfo=tz))
    data = original.to_json()
    assert isinstance(data["id"], str)
    assert isinstance(data["ts"], str)
    back = UsageEvent.from_json(json.loads(json.dumps(data)))
    assert back == original
    assert isinstance(back.id, uuid.UUID)
    assert back.ts.utcoffset() == original.ts.utcoffset()
    assert back.tags == {"k": "v"}


def test_to_json_does_not_share_tags():
    original = make_event(dt.datetime(2025, 1, 1, tzinfo=dt.UTC))
    data = original.to_json()
    data["tags"]["k"] = "changed"  # type: ignore[index]
    assert original.tags == {"k": "v"}


def test_from_json_ignores_unknown_keys():
    original = make_event(dt.datetime(2025, 1, 1, tzinfo=dt.UTC))
    data = original.to_json() | {"written_by": "a newer version"}
    assert UsageEvent.from_json(data) == original
