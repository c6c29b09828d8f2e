"""Corrections of closed months: what changed since a month was closed (late events,
reprices) is posted to the first open month after it.

The month is restated from raw events (grouped by UTC price day and tags, priced with
today's prices) and compared with what was reported: its snapshot plus the
corrections posted before. Where the prices are unchanged the difference is one row;
where they changed, the old lines are reversed and the new ones added, so each row has
one set of unit prices (FOCUS rows keep ListCost = ListUnitPrice x PricingQuantity).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable
from decimal import Decimal

from sqlalchemy import Connection, Engine, func, insert, select, update

from models._rollup_read import utc_date
from models.database import begin_write
from models.long_context import band_sql
from models.months import KEYS, closed_months, month_bounds, next_month, price_json
from models.schema import (
    CHARGEBACK_COUNTS,
    chargeback_corrections,
    chargeback_snapshot,
    month_closes,
    org_prices,
    usage_events,
)
from models.types import as_date

__all__ = ["MARGIN", "post_corrections", "prices_stamp"]

UTC = dt.UTC
_ZERO = Decimal(0)
_KEYS = KEYS
_TOKENS = CHARGEBACK_COUNTS[2:9]
#: Events written up to this long before a check may not have been visible to it (an
#: insert that commits late), so the next check looks at them again.
MARGIN = dt.timedelta(minutes=5)
_LOCK_KEY = 0x5350_4342  # "SPCB": one corrections run at a time on PostgreSQL


def post_corrections(engine: Engine, *, timezone: str = "UTC", prices: object | None = None,
                     force: bool = False) -> int:
    """Post what changed in closed months since they were closed (late events,
    reprices) to the first open month after each; returns the rows posted. A month is
    only restated when events for it arrived or prices changed since its last check
    (``force`` restates every closed month)."""
    from models.pricing import PriceBook

    with engine.connect() as conn:  # most calls find nothing to do: no write lock then
        if not force and not _due(conn, timezone):
            return 0
    book = None
    posted = 0
    with begin_write(engine) as conn:
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_LOCK_KEY})")
        closed = sorted(closed_months(conn))
        now = dt.datetime.now(UTC)
        checked = now - MARGIN
        stamp = prices_stamp(conn)
        for month in (closed if force else _due(conn, timezone)):
            start, end = month_bounds(month, timezone)
            book = book or prices or PriceBook.load(engine)
            target = next_month(month)
            while target in closed:
                target = next_month(target)
            rows = _differences(conn, month, start, end, book)
            for row in rows:
                row.update(source_month=month, target_month=target, posted_at=now)
            if rows:
                conn.execute(insert(chargeback_corrections), rows)
            posted += len(rows)
            conn.execute(update(month_closes).where(month_closes.c.month == month)
                         .values(checked_at=checked, checked_prices=stamp))
    return posted


def _due(conn: Connection, timezone: str) -> list[dt.date]:
    """The closed months with events written, or prices changed, since their last check."""
    stamp = prices_stamp(conn)
    due = []
    e = usage_events.c
    for month, checked_at, checked_prices in conn.execute(
            select(month_closes.c.month, month_closes.c.checked_at,
                   month_closes.c.checked_prices).order_by(month_closes.c.month)):
        month = as_date(month)
        start, end = month_bounds(month, timezone)
        late = conn.execute(select(e.id).where(e.ingested_at > checked_at, e.ts >= start,
                                               e.ts < end).limit(1)).first()
        if late is not None or checked_prices != stamp:
            due.append(month)
    return due


def prices_stamp(conn: Connection) -> str:
    """What the prices depend on: the library version and the org table's last change."""
    from models.pricing import LIBRARY_LABEL

    last = conn.execute(select(func.max(org_prices.c.applied_at), func.count())).one()
    return f"{LIBRARY_LABEL}; org {last[1]} row(s), last {last[0]}"[:300]


_Key = tuple[dt.date, str, str, bool, int, str, str, str]


def _differences(conn: Connection, month: dt.date, start: dt.datetime, end: dt.datetime,
                 book: object) -> list[dict[str, object]]:
    """Correction rows: the month restated from raw events minus what was reported."""
    from models.costs import cost_of

    truth: dict[_Key, tuple[str | None, dict[str, object]]] = {}
    thresholds = tuple(getattr(book, "context_thresholds", ()))
    for key, counts in _restated(conn, start, end, thresholds):
        on, model, tier, batch, long_context = key[:5]
        listed = book.list_price(model, tier, batch, on,  # type: ignore[attr-defined]
                                 long_context)
        contract = book.contract_price(model, tier, batch, on,  # type: ignore[attr-defined]
                                       long_context)
        chosen = contract or listed
        tokens = _Tokens(counts)
        values: dict[str, object] = dict(counts)
        values["cost_list"] = cost_of(tokens, listed).total if listed else None
        values["cost_contract"] = cost_of(tokens, chosen).total if chosen else None
        values["unpriced_tokens"] = 0 if chosen else counts["input_tokens"] + counts[
            "output_tokens"]
        truth[key] = (price_json(listed, contract), values)
    reported: dict[_Key, dict[str | None, dict[str, object]]] = defaultdict(dict)
    s, c = chargeback_snapshot.c, chargeback_corrections.c
    for table, where in ((chargeback_snapshot, s.month == month),
                         (chargeback_corrections, c.source_month == month)):
        for r in conn.execute(select(table).where(where)):
            m = r._mapping
            key = (as_date(m["price_date"]), *(m[k] for k in _KEYS))
            acc = reported[key].setdefault(m["prices"], _zero())  # type: ignore[index]
            _add(acc, m, 1)
    rows = []
    for key in sorted(set(truth) | set(reported), key=str):
        parts = dict(reported.get(key, {}))  # type: ignore[arg-type]
        deltas: list[tuple[str | None, dict[str, object]]] = []
        if key in truth:
            prices, values = truth[key]
            delta = _zero()
            _add(delta, values, 1)
            _add(delta, parts.pop(prices, _zero()), -1)
            deltas.append((prices, delta))
        for prices, acc in parts.items():
            delta = _zero()
            _add(delta, acc, -1)
            deltas.append((prices, delta))
        for prices, delta in deltas:
            if all(not delta[k] for k in (*CHARGEBACK_COUNTS, "cost_list", "cost_contract")):
                continue
            rows.append({"price_date": key[0], **dict(zip(_KEYS, key[1:], strict=True)),
                         **delta, "prices": prices})
    return rows


def _restated(conn: Connection, start: dt.datetime, end: dt.datetime,
              thresholds: tuple[int, ...]) -> Iterable[tuple[_Key, dict[str, int]]]:
    e = usage_events.c
    keys = [utc_date(conn.dialect.name, e.ts), func.coalesce(e.model, e.model_requested, ""),
            func.coalesce(e.service_tier, ""), e.is_batch, band_sql(e.input_tokens, thresholds),
            e.endpoint, func.coalesce(e.team, ""), func.coalesce(e.project, "")]
    query = (select(*keys, func.count(), func.count(e.error_kind),
                    *(func.coalesce(func.sum(e[t]), 0) for t in _TOKENS))
             .where(e.ts >= start, e.ts < end).group_by(*keys))
    for r in conn.execute(query):
        key = (as_date(r[0]), r[1], r[2], bool(r[3]), int(r[4]), r[5], r[6], r[7])
        counts = {"requests": int(r[8]), "errors": int(r[9]),
                  **{t: int(v) for t, v in zip(_TOKENS, r[10:], strict=True)}}
        yield key, counts


class _Tokens:
    def __init__(self, counts: dict[str, int]) -> None:
        for name in _TOKENS:
            setattr(self, name, counts[name])


def _zero() -> dict[str, object]:
    return {**dict.fromkeys(CHARGEBACK_COUNTS, 0), "cost_list": None, "cost_contract": None}


def _add(acc: dict[str, object], values: object, sign: int) -> None:
    get = values.get if isinstance(values, dict) else values.__getitem__  # type: ignore[union-attr]
    for k in CHARGEBACK_COUNTS:
        acc[k] = int(acc[k]) + sign * int(get(k) or 0)  # type: ignore[call-overload]
    for k in ("cost_list", "cost_contract"):
        v = get(k)
        if v is not None:
            acc[k] = (acc[k] or _ZERO) + sign * v  # type: ignore[operator]

