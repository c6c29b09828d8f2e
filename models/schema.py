"""The database schema (SQLAlchemy Core). Alembic migrations under
``models/migrations`` create and evolve it; this module is their reference."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Uuid,
)

from models.types import UTCDateTime

__all__ = ["EVENT_COLUMNS", "metadata", "usage_events"]

metadata = MetaData()

usage_events = Table(
    "usage_events",
    metadata,
    Column("id", Uuid(as_uuid=True), primary_key=True, comment="UUIDv7: time-ordered"),
    Column("ts", UTCDateTime(), nullable=False, comment="when the call started (UTC)"),
    Column("ingested_at", UTCDateTime(), nullable=False, comment="when it was written"),
    Column("provider", String(100), nullable=False),
    Column("endpoint", String(64), nullable=False),
    Column("model_requested", String(200)),
    Column("model", String(200), comment="the model the response names"),
    Column("service_tier", String(32)),
    Column("is_batch", Boolean, nullable=False, default=False),
    Column("streamed", Boolean, nullable=False, default=False),
    Column("usage_reported", Boolean, nullable=False,
           comment="false: the response carried no usage; token columns are NULL"),
    Column("input_tokens", BigInteger, comment="includes cached and cache-write tokens"),
    Column("cached_input_tokens", BigInteger),
    Column("cache_write_tokens", BigInteger),
    Column("output_tokens", BigInteger, comment="includes reasoning tokens"),
    Column("reasoning_tokens", BigInteger),
    Column("audio_input_tokens", BigInteger),
    Column("audio_output_tokens", BigInteger),
    Column("latency_ms", Float),
    Column("ttft_ms", Float),
    Column("status_code", Integer),
    Column("error_class", String(100)),
    Column("error_kind", String(16), comment="rate_limit|client|server|network|other"),
    Column("attempts", Integer, nullable=False, default=1),
    Column("request_id", String(128)),
    Column("team", String(200)),
    Column("project", String(200)),
    Column("user", String(200)),
    Column("feature", String(200)),
    Column("environment", String(200)),
    Column("tags", JSON),
    Index("ix_usage_events_ts", "ts"),
    Index("ix_usage_events_ingested_at", "ingested_at"),
)

#: Column order used by the fast insert paths.
EVENT_COLUMNS: tuple[str, ...] = tuple(c.name for c in usage_events.columns)
