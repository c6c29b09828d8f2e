"""The driver-level bulk insert of the rollups (``models.rollups``)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from decimal import Decimal

from sqlalchemy import Boolean, Connection, Date, Table

from models.types import Money

__all__ = ["bulk_insert"]


def bulk_insert(conn: Connection, table: Table, rows: list[dict[str, object]]) -> None:
    """Insert ``rows`` (dicts with the same keys) on the driver: SQLAlchemy's per-row
    parameter processing cost more than the insert itself. PostgreSQL gets a COPY
    (psycopg's executemany sends a statement per row); SQLite one executemany, with
    the values converted as the column types would: money as exact decimal text (see
    ``models.types.Money``), dates as ISO text, booleans as 0/1."""
    if not rows:
        return
    names = list(rows[0])
    quote = conn.dialect.identifier_preparer.quote
    columns = f"{quote(table.name)} ({', '.join(quote(n) for n in names)})"
    if conn.dialect.name == "postgresql":
        driver = conn.connection.driver_connection
        with driver.cursor() as cur, cur.copy(f"COPY {columns} FROM STDIN") as copy:  # type: ignore[union-attr]
            for row in rows:
                copy.write_row([row[n] for n in names])
        return
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    sql = f"INSERT INTO {columns} VALUES ({', '.join([mark] * len(names))})"
    if conn.dialect.name == "sqlite":
        # Only the columns whose type needs it are converted (a rebuild's ~1.4M
        # values: 0.9 s when every value went through a chain of isinstance checks).
        convert = [(n, _SQLITE_CONVERT.get(type(table.c[n].type))) for n in names]
        params = [tuple(row[n] if f is None or row[n] is None else f(row[n])
                        for n, f in convert) for row in rows]
    else:
        params = [tuple(row[n] for n in names) for row in rows]
    conn.exec_driver_sql(sql, params)


def _money_text(value: Decimal) -> str:
    return format(value, "f")


#: How SQLite stores a value of these column types (see ``bulk_insert``).
_SQLITE_CONVERT: dict[type, Callable[..., object]] = {
    Money: _money_text, Boolean: int, Date: dt.date.isoformat,
}
