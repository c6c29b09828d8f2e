"""The usage event: one OpenAI API call, as the collector records it.

A plain dataclass so that the collector can build one on the caller's thread in a
few microseconds; the writer turns it into a row. No prompt or completion text and
no API key ever appear here.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import asdict, dataclass, field, fields
from operator import attrgetter

__all__ = ["ERROR_KINDS", "EVENT_FIELDS", "TOKEN_FIELDS", "UsageEvent", "classify_error",
           "event_values"]

#: Token counts kept per event, in OpenAI's meaning: ``input_tokens`` includes the
#: cached and cache-write tokens, ``output_tokens`` includes reasoning tokens; the
#: sub-counts are stored beside them, never added again.
TOKEN_FIELDS = (
    "input_tokens",
    "cached_input_tokens",
    "cache_write_tokens",
    "output_tokens",
    "reasoning_tokens",
    "audio_input_tokens",
    "audio_output_tokens",
)

#: How a failed call is classified (``error_kind``).
ERROR_KINDS = ("rate_limit", "client", "server", "network", "other")


def classify_error(status_code: int | None, failed: bool) -> str | None:
    """``rate_limit`` (429), ``client`` (other 4xx), ``server`` (5xx), ``network``
    (no HTTP response: connection refused, reset, timeout) or ``other``."""
    if not failed:
        return None
    if status_code is None:
        return "network"
    if status_code == 429:
        return "rate_limit"
    if 400 <= status_code < 500:
        return "client"
    if status_code >= 500:
        return "server"
    return "other"


@dataclass(slots=True)
class UsageEvent:
    id: uuid.UUID
    ts: dt.datetime
    provider: str
    endpoint: str
    model_requested: str | None = None
    model: str | None = None
    service_tier: str | None = None
    is_batch: bool = False
    streamed: bool = False
    usage_reported: bool = False
    input_tokens: int | None = None
    cached_input_tokens: int | None = None
    cache_write_tokens: int | None = None
    output_tokens: int | None = None
    reasoning_tokens: int | None = None
    audio_input_tokens: int | None = None
    audio_output_tokens: int | None = None
    latency_ms: float | None = None
    ttft_ms: float | None = None
    status_code: int | None = None
    error_class: str | None = None
    error_kind: str | None = None
    attempts: int = 1
    request_id: str | None = None
    team: str | None = None
    project: str | None = None
    user: str | None = None
    feature: str | None = None
    environment: str | None = None
    tags: dict[str, str] | None = field(default=None)

    def to_json(self) -> dict[str, object]:
        """A JSON-safe dict (for the disk spool)."""
        data = asdict(self)
        data["id"] = str(self.id)
        data["ts"] = self.ts.isoformat()
        return data

    @classmethod
    def from_json(cls, data: dict[str, object]) -> UsageEvent:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["id"] = uuid.UUID(str(values["id"]))
        values["ts"] = dt.datetime.fromisoformat(str(values["ts"]))
        return cls(**values)  # type: ignore[arg-type]


#: The fields of :class:`UsageEvent` in order (the ``usage_events`` columns without
#: ``ingested_at``). The sink writes an event as the tuple of these values, which a
#: recorded call builds directly, without an intermediate :class:`UsageEvent`.
EVENT_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(UsageEvent))
_values = attrgetter(*EVENT_FIELDS)


def event_values(event: UsageEvent) -> tuple[object, ...]:
    """The values of ``event`` in :data:`EVENT_FIELDS` order (``UsageEvent(*values)``
    rebuilds it)."""
    return _values(event)  # type: ignore[no-any-return]
