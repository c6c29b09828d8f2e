"""Column types that are exact and identical on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import DateTime
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

__all__ = ["SQLITE_DATETIME_FORMAT", "UTCDateTime", "to_utc"]

UTC = dt.UTC
SQLITE_DATETIME_FORMAT = "%Y-%m-%d %H:%M:%S.%f"


def to_utc(value: dt.datetime) -> dt.datetime:
    """Normalise an aware datetime to UTC; refuse a naive one."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"naive datetime {value.isoformat()} has no timezone; pass an "
                         f"aware datetime, e.g. datetime.now(timezone.utc)")
    return value.astimezone(UTC)


class UTCDateTime(TypeDecorator[dt.datetime]):
    """A timezone-aware UTC datetime on every database.

    PostgreSQL stores ``timestamptz``. SQLite has no datetime type and
    ``DateTime(timezone=True)`` there silently drops the zone, so the value is
    normalised to UTC first and stored as naive UTC text (which sorts
    chronologically); it is read back as an aware UTC datetime.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None,
                           dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        value = to_utc(value)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: dt.datetime | None,
                             dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)
