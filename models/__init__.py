"""The database: schema, engine, migrations and the usage-event store."""

from __future__ import annotations

from models.database import (
    begin_write,
    check_schema,
    create_db_engine,
    current_revision,
    head_revision,
    open_database,
    parse_database_url,
    redact,
    upgrade,
)
from models.event_store import EventStore
from models.events import ERROR_KINDS, TOKEN_FIELDS, UsageEvent, classify_error
from models.ids import uuid7
from models.schema import metadata, usage_events
from models.types import UTCDateTime

__all__ = [
    "ERROR_KINDS",
    "TOKEN_FIELDS",
    "EventStore",
    "UTCDateTime",
    "UsageEvent",
    "begin_write",
    "check_schema",
    "classify_error",
    "create_db_engine",
    "current_revision",
    "head_revision",
    "metadata",
    "open_database",
    "parse_database_url",
    "redact",
    "upgrade",
    "usage_events",
    "uuid7",
]
