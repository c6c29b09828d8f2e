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
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, Date, Engine, cast, delete, func, insert, select, update

from models.database import begin_write
from models.schema import (
    CHARGEBACK_COUNTS,
    PRICE_COLUMNS,
    chargeback_corrections,
    chargeback_snapshot,
    month_close_log,
    month_closes,
    org_prices,
    rollup_daily,
    usage_events,
)
from spendwatch.errors import ConfigurationError, MonthStateError

__all__ = ["Line", "MonthStatus", "close_month", "closed_months", "month_bounds",
           "month_lines", "month_statuses", "next_month", "parse_month", "post_corrections",
           "price_json", "reopen_month"]

UTC = dt.UTC
_ZERO = Decimal(0)
_KEYS = ("model", "service_tier", "is_batch", "endpoint", "team", "project")
_ERRORS = ("errors_rate_limit", "errors_client", "errors_server", "errors_network",
           "errors_other")
_TOKENS = CHARGEBACK_COUNTS[2:9]
#: Events written up to this long before a check may not have been visible to it (an
#: insert that commits late), so the next check looks at them again.
_MARGIN = dt.timedelta(minutes=5)
_LOCK_KEY = 0x5350_4342  # "SPCB": one corrections run at a time on PostgreSQL


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


@dataclass
class MonthStatus:
    month: dt.date
    closed: bool
    closed_at: dt.datetime | None = None
    closed_by: str | None = None
    log: list[tuple[str, dt.datetime, str, str | None]] = field(default_factory=list)


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
    return {_date(m) for (m,) in conn.execute(select(month_closes.c.month))}


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
                lines.append(_line(m, _date(m["day"]), {k: m[k] for k in CHARGEBACK_COUNTS},
                                   m["prices"]))
        else:
            d = rollup_daily.c
            for r in conn.execute(select(rollup_daily).where(d.day >= month, d.day < end)):
                m = r._mapping
                counts = {k: m[k] for k in CHARGEBACK_COUNTS if k != "errors"}
                counts["errors"] = sum(m[k] for k in _ERRORS)
                lines.append(_line(m, _date(m["day"]), counts, None))
        c = chargeback_corrections.c
        for r in conn.execute(select(chargeback_corrections).where(c.target_month == month)
                              .order_by(c.id)):
            m = r._mapping
            line = _line(m, _date(m["price_date"]), {k: m[k] for k in CHARGEBACK_COUNTS},
                         m["prices"])
            line.correction_of = _date(m["source_month"])
            lines.append(line)
    return closed, lines


def month_statuses(engine: Engine) -> list[MonthStatus]:
    """Every month with usage or a close record, newest first."""
    from models.schema import rollup_monthly

    with engine.connect() as conn:
        months = {_date(m) for (m,) in conn.execute(select(rollup_monthly.c.month).distinct())}
        closes = {_date(r.month): r for r in conn.execute(select(month_closes))}
        log: dict[dt.date, list[tuple[str, dt.datetime, str, str | None]]] = defaultdict(list)
        for r in conn.execute(select(month_close_log).order_by(month_close_log.c.id)):
            log[_date(r.month)].append((r.action, r.at, r.by, r.reason))
    out = []
    for month in sorted(months | set(closes) | set(log), reverse=True):
        c = closes.get(month)
        out.append(MonthStatus(month, c is not None, c.closed_at if c else None,
                               c.closed_by if c else None, log.get(month, [])))
    return out


# -- close and reopen ------------------------------------------------------------------------
def close_month(engine: Engine, month: dt.date, *, by: str, timezone: str = "UTC",
                today: dt.date | None = None, prices: object | None = None) -> int:
    """Close ``month`` (see the module docstring); returns the snapshot's row count."""
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
    checked = dt.datetime.now(UTC) - _MARGIN  # events ingested after this are looked at again
    RollupEngine(engine, timezone=timezone, prices=book,  # type: ignore[arg-type]
                 closed_months=closed_months).run(since=month, until=last)
    now = dt.datetime.now(UTC)
    with begin_write(engine) as conn:
        if month in closed_months(conn):
            raise MonthStateError(f"month {month:%Y-%m} was closed by someone else meanwhile")
        d = rollup_daily.c
        rows = []
        for r in conn.execute(select(rollup_daily).where(d.day >= month,
                                                         d.day < next_month(month))):
            m = r._mapping
            key = (m["model"], m["service_tier"], m["is_batch"], _date(m["price_date"]))
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
                                                 checked_prices=_prices_stamp(conn)))
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


# -- corrections ---------------------------------------------------------------------------
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
        checked = now - _MARGIN
        stamp = _prices_stamp(conn)
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
    stamp = _prices_stamp(conn)
    due = []
    e = usage_events.c
    for month, checked_at, checked_prices in conn.execute(
            select(month_closes.c.month, month_closes.c.checked_at,
                   month_closes.c.checked_prices).order_by(month_closes.c.month)):
        month = _date(month)
        start, end = month_bounds(month, timezone)
        late = conn.execute(select(e.id).where(e.ingested_at > checked_at, e.ts >= start,
                                               e.ts < end).limit(1)).first()
        if late is not None or checked_prices != stamp:
            due.append(month)
    return due


def _prices_stamp(conn: Connection) -> str:
    """What the prices depend on: the library version and the org table's last change."""
    from models.pricing import LIBRARY_LABEL

    last = conn.execute(select(func.max(org_prices.c.applied_at), func.count())).one()
    return f"{LIBRARY_LABEL}; org {last[1]} row(s), last {last[0]}"[:300]


_Key = tuple[dt.date, str, str, bool, str, str, str]


def _differences(conn: Connection, month: dt.date, start: dt.datetime, end: dt.datetime,
                 book: object) -> list[dict[str, object]]:
    """Correction rows: the month restated from raw events minus what was reported."""
    from models.costs import cost_of

    truth: dict[_Key, tuple[str | None, dict[str, object]]] = {}
    for key, counts in _restated(conn, start, end):
        model, tier, batch, on = key[1], key[2], key[3], key[0]
        listed = book.list_price(model, tier, batch, on)  # type: ignore[attr-defined]
        contract = book.contract_price(model, tier, batch, on)  # type: ignore[attr-defined]
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
            key = (_date(m["price_date"]), *(m[k] for k in _KEYS))
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


def _restated(conn: Connection, start: dt.datetime,
              end: dt.datetime) -> Iterable[tuple[_Key, dict[str, int]]]:
    e = usage_events.c
    if conn.dialect.name == "postgresql":
        utc_date = cast(func.timezone("UTC", e.ts), Date)
    else:
        utc_date = func.substr(e.ts, 1, 10)
    keys = [utc_date, func.coalesce(e.model, e.model_requested, ""),
            func.coalesce(e.service_tier, ""), e.is_batch, e.endpoint,
            func.coalesce(e.team, ""), func.coalesce(e.project, "")]
    query = (select(*keys, func.count(), func.count(e.error_kind),
                    *(func.coalesce(func.sum(e[t]), 0) for t in _TOKENS))
             .where(e.ts >= start, e.ts < end).group_by(*keys))
    for r in conn.execute(query):
        key = (_date(r[0]), r[1], r[2], bool(r[3]), r[4], r[5], r[6])
        counts = {"requests": int(r[7]), "errors": int(r[8]),
                  **{t: int(v) for t, v in zip(_TOKENS, r[9:], strict=True)}}
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


def _line(m: object, day: dt.date, counts: dict[str, int], prices: str | None) -> Line:
    g = m.__getitem__  # type: ignore[attr-defined]
    return Line(day=day, price_date=_date(g("price_date")), model=g("model"),
                service_tier=g("service_tier"), is_batch=bool(g("is_batch")),
                endpoint=g("endpoint"), team=g("team"), project=g("project"),
                counts={k: int(v) for k, v in counts.items()}, cost_list=g("cost_list"),
                cost_contract=g("cost_contract"), prices=prices)


def _num(value: Decimal) -> str:
    text = format(Decimal(value).normalize(), "f")
    return text


def _date(value: object) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    return dt.date.fromisoformat(str(value)[:10])
