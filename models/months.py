"""Month close: a closed month's rollups and reports stop changing.

* ``close_month`` rolls the month up once more from raw events, then, in one
  transaction, marks it closed (``month_closes``; :class:`models.rollups.RollupEngine`
  leaves closed months alone) and copies its daily rollup rows, with the unit prices
  they were priced at, into ``chargeback_snapshot``. Its reports read the snapshot.
* Late events and reprices that touch a closed month are not lost: ``post_corrections``
  restates the month from raw events at today's prices, compares it with what was
  reported (the snapshot plus earlier corrections) and posts the difference to the
  first open month after it, as correction rows (``chargeback_corrections``).
* ``reopen_month`` needs a reason, which is logged with every close and reopen; only
  the latest closed month can be reopened (a later closed month was built on it).
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, Engine, delete, insert, select

from models.database import begin_write
from models.schema import (
    CHARGEBACK_COUNTS,
    PRICE_COLUMNS,
    chargeback_corrections,
    chargeback_snapshot,
    month_close_log,
    month_closes,
    rollup_daily,
)
from models.types import as_date
from spendwatch.errors import ConfigurationError, MonthStateError

__all__ = ["KEYS", "Line", "MonthStatus", "close_month", "closed_months", "month_bounds",
           "month_lines", "month_statuses", "next_month", "parse_month",
           "price_json", "reopen_month"]

UTC = dt.UTC
_ZERO = Decimal(0)
#: The tag keys of a chargeback line (with its day and UTC price date).
KEYS = ("model", "service_tier", "is_batch", "long_context", "endpoint", "team", "project")
_KEYS = KEYS
_ERRORS = ("errors_rate_limit", "errors_client", "errors_server", "errors_network",
           "errors_other")
_TOKENS = CHARGEBACK_COUNTS[2:9]


@dataclass
class Line:
    """One chargeback line: a daily rollup (or snapshot) row, or a correction."""

    day: dt.date
    price_date: dt.date
    model: str
    service_tier: str
    is_batch: bool
    endpoint: str
    team: str
    project: str
    counts: dict[str, int]
    cost_list: Decimal | None
    cost_contract: Decimal | None
    prices: str | None = None  # JSON of the unit prices; None: look them up
    correction_of: dt.date | None = None
    #: the input-token threshold its requests exceeded, 0 for none (models.long_context)
    long_context: int = 0


@dataclass
class MonthStatus:
    month: dt.date
    closed: bool
    closed_at: dt.datetime | None = None
    closed_by: str | None = None
    log: list[tuple[str, dt.datetime, str, str | None]] = field(default_factory=list)
    #: contracted cost, corrections included (exact; unpriced usage is not in it)
    total: Decimal = _ZERO
    #: corrections of earlier closed months posted to this month
    corrections: Decimal = _ZERO


def parse_month(text: str, today: dt.date, *, allow_current: bool = True) -> dt.date:
    """``YYYY-MM`` as the month's first day; a future month is refused."""
    found = re.fullmatch(r"\s*(\d{4})-(\d{2})\s*", text or "")
    month = None
    if found and 1 <= int(found.group(2)) <= 12:
        month = dt.date(int(found.group(1)), int(found.group(2)), 1)
    if month is None:
        raise ConfigurationError(f"month {text!r} is not a month; write it as YYYY-MM, "
                                 f"e.g. {today:%Y-%m}")
    this = today.replace(day=1)
    if month > this:
        raise ConfigurationError(f"month {month:%Y-%m} is in the future (today is {today})")
    if month == this and not allow_current:
        raise MonthStateError(f"month {month:%Y-%m} has not ended yet (today is {today}); "
                              f"close it from {next_month(month)} on")
    return month


def next_month(month: dt.date) -> dt.date:
    return (month.replace(day=28) + dt.timedelta(days=4)).replace(day=1)


def month_bounds(month: dt.date, tz: str) -> tuple[dt.datetime, dt.datetime]:
    """The UTC instants where the local month starts and the next one starts."""
    zone = ZoneInfo(tz)
    start = dt.datetime.combine(month, dt.time(0), zone).astimezone(UTC)
    end = dt.datetime.combine(next_month(month), dt.time(0), zone).astimezone(UTC)
    return start, end


def closed_months(conn: Connection) -> set[dt.date]:
    """The closed months (the hook :class:`models.rollups.RollupEngine` consults)."""
    return {as_date(m) for (m,) in conn.execute(select(month_closes.c.month))}


def price_json(listed: object | None, contract: object | None) -> str | None:
    """The unit prices a cost was made from, as canonical JSON (None: unpriced)."""
    if listed is None and contract is None:
        return None

    def one(row: object | None) -> dict[str, str] | None:
        if row is None:
            return None
        return {name: _num(getattr(row, name)) for name in PRICE_COLUMNS
                if getattr(row, name, None) is not None}

    return json.dumps({"list": one(listed), "contract": one(contract)}, sort_keys=True)


# -- reading a month ---------------------------------------------------------------------
def month_lines(engine: Engine, month: dt.date) -> tuple[bool, list[Line]]:
    """(closed?, lines) of ``month``: the snapshot when closed, else the daily rollups;
    plus the corrections posted to it."""
    end = next_month(month)
    with engine.connect() as conn:
        closed = month in closed_months(conn)
        lines: list[Line] = []
        if closed:
            s = chargeback_snapshot.c
            for r in conn.execute(select(chargeback_snapshot).where(s.month == month)):
                m = r._mapping
                lines.append(_line(m, as_date(m["day"]), {k: m[k] for k in CHARGEBACK_COUNTS},
                                   m["prices"]))
        else:
            d = rollup_daily.c
            for r in conn.execute(select(rollup_daily).where(d.day >= month, d.day < end)):
                m = r._mapping
                counts = {k: m[k] for k in CHARGEBACK_COUNTS if k != "errors"}
                counts["errors"] = sum(m[k] for k in _ERRORS)
                lines.append(_line(m, as_date(m["day"]), counts, None))
        c = chargeback_corrections.c
        for r in conn.execute(select(chargeback_corrections).where(c.target_month == month)
                              .order_by(c.id)):
            m = r._mapping
            line = _line(m, as_date(m["price_date"]), {k: m[k] for k in CHARGEBACK_COUNTS},
                         m["prices"])
            line.correction_of = as_date(m["source_month"])
            lines.append(line)
    return closed, lines


def month_statuses(engine: Engine) -> list[MonthStatus]:
    """Every month with usage or a close record, newest first."""
    from models.schema import rollup_monthly

    with engine.connect() as conn:
        months = {as_date(m) for (m,) in conn.execute(select(rollup_monthly.c.month).distinct())}
        closes = {as_date(r.month): r for r in conn.execute(select(month_closes))}
        log: dict[dt.date, list[tuple[str, dt.datetime, str, str | None]]] = defaultdict(list)
        for r in conn.execute(select(month_close_log).order_by(month_close_log.c.id)):
            log[as_date(r.month)].append((r.action, r.at, r.by, r.reason))
        totals: dict[dt.date, Decimal] = defaultdict(lambda: _ZERO)
        fixes: dict[dt.date, Decimal] = defaultdict(lambda: _ZERO)
        for m, cost in conn.execute(select(rollup_monthly.c.month,
                                           rollup_monthly.c.cost_contract)):
            if as_date(m) not in closes:
                totals[as_date(m)] += cost or _ZERO
        for m, cost in conn.execute(select(chargeback_snapshot.c.month,
                                           chargeback_snapshot.c.cost_contract)):
            totals[as_date(m)] += cost or _ZERO
        for m, cost in conn.execute(select(chargeback_corrections.c.target_month,
                                           chargeback_corrections.c.cost_contract)):
            fixes[as_date(m)] += cost or _ZERO
    out = []
    for month in sorted(months | set(closes) | set(log) | set(fixes), reverse=True):
        c = closes.get(month)
        out.append(MonthStatus(month, c is not None, c.closed_at if c else None,
                               c.closed_by if c else None, log.get(month, []),
                               totals.get(month, _ZERO) + fixes.get(month, _ZERO),
                               fixes.get(month, _ZERO)))
    return out


# -- close and reopen ------------------------------------------------------------------------
def close_month(engine: Engine, month: dt.date, *, by: str, timezone: str = "UTC",
                today: dt.date | None = None, prices: object | None = None) -> int:
    """Close ``month`` (see the module docstring); returns the snapshot's row count."""
    from models.corrections import MARGIN, post_corrections, prices_stamp
    from models.pricing import PriceBook
    from models.rollups import RollupEngine

    today = today or dt.datetime.now(ZoneInfo(timezone)).date()
    if next_month(month) > today:
        raise MonthStateError(f"month {month:%Y-%m} has not ended yet (today is {today}); "
                              f"close it from {next_month(month)} on")
    _refuse_closed(engine, month)
    book = prices or PriceBook.load(engine)
    post_corrections(engine, timezone=timezone, prices=book)
    last = next_month(month) - dt.timedelta(days=1)
    checked = dt.datetime.now(UTC) - MARGIN  # events ingested after this are looked at again
    RollupEngine(engine, timezone=timezone, prices=book,  # type: ignore[arg-type]
                 closed_months=closed_months).run(since=month, until=last)
    now = dt.datetime.now(UTC)
    with begin_write(engine) as conn:
        if conn.dialect.name == "postgresql":  # wait for a rollup that is writing rows
            from models.rollups import _LOCK_KEY as rollup_lock

            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({rollup_lock})")
        if month in closed_months(conn):
            raise MonthStateError(f"month {month:%Y-%m} was closed by someone else meanwhile")
        d = rollup_daily.c
        rows = []
        for r in conn.execute(select(rollup_daily).where(d.day >= month,
                                                         d.day < next_month(month))):
            m = r._mapping
            key = (m["model"], m["service_tier"], m["is_batch"], as_date(m["price_date"]),
                   int(m["long_context"]))
            listed = book.list_price(*key)  # type: ignore[attr-defined]
            contract = book.contract_price(*key)  # type: ignore[attr-defined]
            row = {k: m[k] for k in ("day", "price_date", *_KEYS, "cost_list", "cost_contract",
                                     *CHARGEBACK_COUNTS) if k != "errors"}
            row.update(month=month, errors=sum(m[k] for k in _ERRORS),
                       prices=price_json(listed, contract))
            rows.append(row)
        if rows:
            conn.execute(insert(chargeback_snapshot), rows)
        conn.execute(insert(month_closes).values(month=month, closed_at=now, closed_by=by,
                                                 checked_at=checked,
                                                 checked_prices=prices_stamp(conn)))
        conn.execute(insert(month_close_log).values(month=month, action="close", at=now,
                                                    by=by, reason=None))
    return len(rows)


def reopen_month(engine: Engine, month: dt.date, *, reason: str, by: str,
                 timezone: str = "UTC") -> None:
    """Reopen ``month``: its snapshot and the corrections it posted are dropped (its
    rollups are rebuilt, so they include them), and the reason is logged."""
    from models.rollups import RollupEngine

    if not (reason or "").strip():
        raise MonthStateError(f"reopening {month:%Y-%m} needs a reason, which is recorded: "
                              f"--reason \"invoice credit for March\"")
    now = dt.datetime.now(UTC)
    with begin_write(engine) as conn:
        closed = closed_months(conn)
        if month not in closed:
            raise MonthStateError(f"month {month:%Y-%m} is not closed; nothing to reopen")
        later = sorted(m for m in closed if m > month)
        if later:
            raise MonthStateError(
                f"month {month:%Y-%m} cannot be reopened while a later month is closed "
                f"({', '.join(f'{m:%Y-%m}' for m in later)}); reopen those first, latest first")
        conn.execute(delete(month_closes).where(month_closes.c.month == month))
        conn.execute(delete(chargeback_snapshot).where(chargeback_snapshot.c.month == month))
        conn.execute(delete(chargeback_corrections).where(
            chargeback_corrections.c.source_month == month))
        conn.execute(insert(month_close_log).values(month=month, action="reopen", at=now,
                                                    by=by, reason=reason.strip()))
    last = next_month(month) - dt.timedelta(days=1)
    RollupEngine(engine, timezone=timezone, closed_months=closed_months).run(
        since=month, until=last)


def _refuse_closed(engine: Engine, month: dt.date) -> None:
    with engine.connect() as conn:
        row = conn.execute(select(month_closes).where(month_closes.c.month == month)).first()
    if row is not None:
        raise MonthStateError(
            f"month {month:%Y-%m} is already closed (on {row.closed_at:%Y-%m-%d %H:%M} UTC by "
            f"{row.closed_by}); to change it: spendwatch month reopen {month:%Y-%m} "
            f"--reason TEXT")


def _line(m: object, day: dt.date, counts: dict[str, int], prices: str | None) -> Line:
    g = m.__getitem__  # type: ignore[attr-defined]
    return Line(day=day, price_date=as_date(g("price_date")), model=g("model"),
                service_tier=g("service_tier"), is_batch=bool(g("is_batch")),
                endpoint=g("endpoint"), team=g("team"), project=g("project"),
                counts={k: int(v) for k, v in counts.items()}, cost_list=g("cost_list"),
                cost_contract=g("cost_contract"), prices=prices,
                long_context=int(g("long_context")))


def _num(value: Decimal) -> str:
    text = format(Decimal(value).normalize(), "f")
    return text

