"""Column types that are exact and identical on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from sqlalchemy import DateTime, Numeric, String
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine

__all__ = ["SQLITE_DATETIME_FORMAT", "Money", "UTCDateTime", "as_date", "to_utc"]

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


class Money(TypeDecorator[Decimal]):
    """An exact decimal amount of money on every database.

    PostgreSQL stores ``NUMERIC(38, 18)``; SQLite's ``Numeric`` is a float, so there
    the value is stored as its decimal text. Prices as small as $0.005 per million
    tokens and the costs made from them stay exact. Floats are refused.
    """

    impl = String(64)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[object]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(Numeric(38, 18))
        return dialect.type_descriptor(String(64))

    def process_bind_param(self, value: Decimal | int | str | None,
                           dialect: Dialect) -> object:
        if value is None:
            return None
        if isinstance(value, float):
            raise TypeError(f"money must be a Decimal, not the float {value!r}")
        amount = Decimal(value)
        if dialect.name == "postgresql":
            return amount
        return format(amount, "f")

    def process_result_value(self, value: object, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        return Decimal(str(value)) if not isinstance(value, Decimal) else value


def as_date(value: object) -> dt.date:
    """A date read back from a ``Date`` column or a date expression: PostgreSQL gives
    a ``date``, SQLite the ISO text (or a datetime from an expression)."""
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    return dt.date.fromisoformat(str(value)[:10])
