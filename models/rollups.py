"""Daily and monthly rollups of usage events, priced.

* A daily row is (local day, UTC price date, model, service tier, batch, endpoint,
  team, project) with additive measures: requests, errors by kind, tokens by kind,
  latency and TTFT histograms, list and contracted cost. User is not a key: users x
  models x projects per day is about the number of events, so the rollup would be as
  big as the raw table (measured: 48,722 rows from 60,000 events). Monthly rows also
  drop the price date. Spend per user goes to a narrow table of its own,
  ``rollup_daily_user`` (day, user, team, project, model: requests, errors, tokens,
  cost), re-aggregated with the same days.
* Incremental: the events ingested since the watermark name the days they touch;
  exactly those days are re-aggregated from raw events (found through the timestamp
  index) and replaced, so a late event from last week lands in its own day, a run
  costs in proportion to the days touched, not to history, and running twice gives
  the same rows. The watermark trails by ``OVERLAP`` so an insert that commits late
  is still seen.
* One writer at a time: ``BEGIN IMMEDIATE`` on SQLite, an advisory lock on
  PostgreSQL; two schedulers never interleave.
* Closed months (see ``closed_months``) are never changed.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, Engine, delete, func, insert, select

from models._rollup_read import (
    DAILY_KEYS,
    USER_KEYS,
    USER_MEASURES,
    Groups,
    keyed,
    read_groups,
    tune_postgresql,
    utc_date,
)
from models._rollup_sql import bulk_insert
from models.costs import Tokens, cost_of
from models.database import begin_write
from models.schema import (
    MONTHLY_KEYS,
    ROLLUP_SUMS,
    USER_ROLLUP_SUMS,
    rollup_daily,
    rollup_daily_user,
    rollup_monthly,
    rollup_state,
    usage_events,
)
from models.types import as_date
from spendwatch.errors import ConfigurationError

__all__ = ["OVERLAP", "RollupEngine", "RollupResult", "day_bounds", "local_day"]

UTC = dt.UTC
OVERLAP = dt.timedelta(minutes=5)
_LOCK_KEY = 0x5350_524C  # "SPRL": one rollup writer at a time on PostgreSQL
_MAX_READERS = 4  # grouped reads at once on a rebuild (see RollupEngine._read_days)
_FLUSH_ROWS = 20_000  # rows a rebuild keeps before inserting them
Progress = Callable[[int, int], None]


def local_day(ts: dt.datetime, tz: ZoneInfo) -> dt.date:
    return ts.astimezone(tz).date()


def day_bounds(day: dt.date, tz: ZoneInfo) -> tuple[dt.datetime, dt.datetime]:
    """The UTC instants where the local ``day`` starts and the next one starts."""
    start = dt.datetime.combine(day, dt.time(0), tz).astimezone(UTC)
    end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(0), tz).astimezone(UTC)
    return start, end


@dataclass
class RollupResult:
    days: list[dt.date] = field(default_factory=list)
    months: list[dt.date] = field(default_factory=list)
    skipped_closed: list[dt.date] = field(default_factory=list)
    rows: int = 0
    seconds: float = 0.0


@dataclass
class _Pending:
    """Rows of a rebuild's days, inserted a few days at a time: one COPY (or
    executemany) per table for ~20k rows instead of two statements a day."""

    daily: list[dict[str, object]] = field(default_factory=list)
    users: list[dict[str, object]] = field(default_factory=list)

    def flush(self, conn: Connection) -> None:
        bulk_insert(conn, rollup_daily, self.daily)
        bulk_insert(conn, rollup_daily_user, self.users)
        self.daily, self.users = [], []


class _Prices:
    """The subset of models.pricing.PriceBook that rollups use."""

    context_thresholds: tuple[int, ...]

    def list_price(self, model: str, service_tier: str | None, is_batch: bool,
                   on: dt.date, long_context: int = 0) -> object | None: ...

    def contract_price(self, model: str, service_tier: str | None, is_batch: bool,
                       on: dt.date, long_context: int = 0) -> object | None: ...


class RollupEngine:
    def __init__(self, engine: Engine, *, timezone: str = "UTC", prices: _Prices | None = None,
                 closed_months: Callable[[Connection], set[dt.date]] | None = None) -> None:
        self.engine = engine
        self.tz_name = timezone
        self.tz = ZoneInfo(timezone)
        self._prices = prices
        self._closed = closed_months or _stored_closed_months
        self.dialect = engine.dialect.name
        self._price_cache: dict[tuple[object, ...], tuple[object | None, object | None]] = {}
        self._thresholds: tuple[int, ...] | None = None

    @property
    def prices(self) -> _Prices:
        if self._prices is None:
            from models.pricing import PriceBook

            self._prices = PriceBook.load(self.engine)
        return self._prices

    # -- the run ------------------------------------------------------------------------
    def run(self, *, since: dt.date | None = None, until: dt.date | None = None,
            rebuild: bool = False, progress: Progress | None = None) -> RollupResult:
        started = time.perf_counter()
        result = RollupResult()
        with begin_write(self.engine) as conn:
            if self.dialect == "postgresql":
                conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_LOCK_KEY})")
                tune_postgresql(conn)
            state = self._state(conn)
            built_in = state.get("timezone")
            if built_in and built_in != self.tz_name and not rebuild:
                raise ConfigurationError(
                    f"the rollups were built in timezone {built_in}, the reporting timezone "
                    f"is now {self.tz_name}; rebuild them with: spendwatch rollup --rebuild")
            new_mark = conn.execute(select(func.max(usage_events.c.ingested_at))).scalar()
            if rebuild or since is not None:
                days = self._all_days(conn, since, until)
                if rebuild and since is None:  # rows of closed months stay as they are
                    kept = self._closed(conn)
                    for table, key in ((rollup_daily, "day"), (rollup_monthly, "month"),
                                       (rollup_daily_user, "day")):
                        # days after --until are not rebuilt, so they keep their rows
                        upto = [] if until is None else [table.c[key] <= (
                            until if key == "day" else until.replace(day=1))]
                        conn.execute(delete(table).where(*(~table.c[key].between(
                            m, (m + dt.timedelta(days=32)).replace(day=1) - dt.timedelta(days=1))
                            for m in kept), *upto))
            else:
                days = self._touched_days(conn, state.get("watermark"))
            closed = self._closed(conn)
            result.skipped_closed = [d for d in days if d.replace(day=1) in closed]
            days = [d for d in days if d.replace(day=1) not in closed]
            _ = self.thresholds  # the price book is loaded here, not by each reader
            # A whole rebuild deleted its days' rows above: no per-day deletes, and
            # rows go in a few days at a time.
            pending = _Pending() if rebuild and since is None else None
            for done, (day, groups) in enumerate(self._read_days(conn, days), 1):
                result.rows += self._write_day(conn, day, groups, pending)
                if progress is not None:
                    progress(done, len(days))
            if pending is not None:
                pending.flush(conn)
            months = sorted({d.replace(day=1) for d in days})
            for month in months:
                self._rebuild_month(conn, month)
            old_mark = state.get("watermark")
            if new_mark is not None and (old_mark is None or new_mark > dt.datetime.fromisoformat(
                    old_mark)):  # the watermark never moves back
                self._set_state(conn, "watermark", new_mark.astimezone(UTC).isoformat())
            self._set_state(conn, "timezone", self.tz_name)
            result.days, result.months = days, months
        result.seconds = time.perf_counter() - started
        return result

    # -- which days ------------------------------------------------------------------------
    def _all_days(self, conn: Connection, since: dt.date | None,
                  until: dt.date | None) -> list[dt.date]:
        lo, hi = conn.execute(select(func.min(usage_events.c.ts),
                                     func.max(usage_events.c.ts))).one()
        if lo is None:
            return []
        first = since or local_day(lo, self.tz)
        last = until or local_day(hi, self.tz)
        return [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]

    def _touched_days(self, conn: Connection, watermark: str | None) -> list[dt.date]:
        """The local days that events ingested since the last run fall on. Days touched
        only by events inside the watermark's overlap (ingested just before the last
        run) are re-aggregated only if they hold more events than their rows count:
        events are never deleted, so an equal count means the last run saw them all.
        Without this, the first run after midnight re-read all of yesterday."""
        e = usage_events.c
        query = select(utc_date(self.dialect, e.ts)).distinct()
        if watermark is None:
            return sorted(self._local_days(conn.execute(query).scalars()))
        mark = dt.datetime.fromisoformat(watermark)
        new = self._local_days(conn.execute(query.where(e.ingested_at > mark)).scalars())
        maybe = self._local_days(conn.execute(query.where(
            e.ingested_at > mark - OVERLAP, e.ingested_at <= mark)).scalars()) - new
        return sorted(new | {d for d in maybe if self._changed(conn, d)})

    def _local_days(self, utc_dates: Iterable[object]) -> set[dt.date]:
        days: set[dt.date] = set()
        for value in utc_dates:
            start = dt.datetime.combine(as_date(value), dt.time(0), UTC)
            days.add(local_day(start, self.tz))
            days.add(local_day(start + dt.timedelta(days=1) - dt.timedelta(microseconds=1),
                               self.tz))
        return days

    def _changed(self, conn: Connection, day: dt.date) -> bool:
        start, end = day_bounds(day, self.tz)
        e = usage_events.c
        events = conn.execute(select(func.count()).where(e.ts >= start, e.ts < end)).scalar()
        rolled = conn.execute(select(func.sum(rollup_daily.c.requests)).where(
            rollup_daily.c.day == day)).scalar()
        return int(events or 0) != int(rolled or 0)

    # -- aggregation -----------------------------------------------------------------------
    def _read_days(self, conn: Connection, days: list[dt.date]
                   ) -> Iterator[tuple[dt.date, Groups]]:
        """The grouped events of each day, in order, one grouped read per day (small
        sorts, progress per day, bounded memory). Several days are read at once on
        connections of their own, one per core (up to _MAX_READERS): the database
        sorts while Python folds and writes. At most one day per reader waits, so
        memory stays bounded. The rows are written by the caller, in its transaction."""
        readers = min(_MAX_READERS, os.cpu_count() or 1)
        if len(days) < 2 or readers < 2:
            for day in days:
                yield day, self._read(conn, day)
            return
        with ThreadPoolExecutor(readers, thread_name_prefix="spendwatch-rollup") as pool:
            pending: deque[tuple[dt.date, Future[Groups]]] = deque()
            for day in days:
                pending.append((day, pool.submit(self._read_apart, day)))
                if len(pending) > readers:
                    first, future = pending.popleft()
                    yield first, future.result()
            while pending:
                first, future = pending.popleft()
                yield first, future.result()

    def _read_apart(self, day: dt.date) -> Groups:
        with self.engine.connect() as conn, conn.begin():
            if self.dialect == "postgresql":
                tune_postgresql(conn)
            return self._read(conn, day)

    def _read(self, conn: Connection, day: dt.date) -> Groups:
        return read_groups(conn, day, *day_bounds(day, self.tz), self.thresholds)

    @property
    def thresholds(self) -> tuple[int, ...]:
        """The long-context thresholds of the prices in use (none for a price book
        without long-context rates); read once, before the readers start."""
        if self._thresholds is None:
            self._thresholds = tuple(getattr(self.prices, "context_thresholds", ()))
        return self._thresholds

    def _write_day(self, conn: Connection, day: dt.date, groups: Groups,
                   pending: _Pending | None = None) -> int:
        """Replace the daily and per-user rows of the local ``day`` with ``groups``
        (one grouped read of its events, see ``models._rollup_read``); on a rebuild,
        whose days have no rows left, add them to ``pending`` instead."""
        rows = []
        for key, sums in groups.daily.items():
            row = keyed(key, DAILY_KEYS)
            row.update(zip(ROLLUP_SUMS, sums, strict=True))
            rows.append(self._priced(row))
        users: dict[tuple[object, ...], dict[str, object]] = {}
        for key, measures in groups.users.items():
            fine = self._priced({**keyed(key, USER_KEYS),
                                 **dict(zip(USER_MEASURES, measures, strict=True))})
            ukey = (fine["day"], *key[1:5])
            out = users.get(ukey)
            if out is None:
                out = users[ukey] = {**dict(zip(USER_KEYS[:5], ukey, strict=True)),
                                     **dict.fromkeys(USER_ROLLUP_SUMS, 0),
                                     "cost_list": None, "cost_contract": None}
            for name in USER_ROLLUP_SUMS:
                out[name] += fine[name]  # type: ignore[operator]
            for name in ("cost_list", "cost_contract"):
                if fine[name] is not None:
                    out[name] = (out[name] or Decimal(0)) + fine[name]  # type: ignore[operator]
        if pending is None:
            conn.execute(delete(rollup_daily).where(rollup_daily.c.day == day))
            bulk_insert(conn, rollup_daily, rows)
            conn.execute(delete(rollup_daily_user).where(rollup_daily_user.c.day == day))
            bulk_insert(conn, rollup_daily_user, list(users.values()))
        else:
            pending.daily.extend(rows)
            pending.users.extend(users.values())
            if len(pending.daily) + len(pending.users) >= _FLUSH_ROWS:
                pending.flush(conn)
        return len(rows)

    def _priced(self, row: dict[str, object]) -> dict[str, object]:
        """``row`` with its list and contracted cost, the price refs and its unpriced
        tokens. Keys come from the grouped read (dates, booleans and whole numbers
        already); this runs for every daily and per-user row of a rebuild."""
        key = (row["model"], row["service_tier"], row["is_batch"], row["price_date"],
               row["long_context"])
        found = self._price_cache.get(key)
        if found is None:
            found = self._price_cache[key] = (
                self.prices.list_price(*key),  # type: ignore[arg-type]
                self.prices.contract_price(*key))  # type: ignore[arg-type]
        listed, contract = found
        chosen = contract or listed
        if chosen is None:
            row["cost_list"] = row["cost_contract"] = None
            row["unpriced_tokens"] = int(row["input_tokens"]) + int(  # type: ignore[call-overload]
                row["output_tokens"])  # type: ignore[call-overload]
        else:
            tokens = Tokens(row["input_tokens"], row["cached_input_tokens"],  # type: ignore[arg-type]
                            row["cache_write_tokens"], row["output_tokens"],  # type: ignore[arg-type]
                            row["audio_input_tokens"], row["audio_output_tokens"])  # type: ignore[arg-type]
            cost = cost_of(tokens, chosen).total  # type: ignore[arg-type]
            row["cost_contract"] = cost
            if contract is None:  # the contracted cost is the list cost: priced once
                row["cost_list"] = cost
            else:
                row["cost_list"] = cost_of(tokens, listed).total if listed else None  # type: ignore[arg-type]
            row["unpriced_tokens"] = 0
        row["price_ref"] = getattr(listed, "ref", None)
        row["contract_ref"] = getattr(contract, "ref", None)
        return row

    def _rebuild_month(self, conn: Connection, month: dt.date) -> None:
        """The month's rows from its daily rows: the counts summed by the database
        (exact for integers), money and the price rows used merged here (SQLite keeps
        money as decimal text, which its SUM would turn into a float)."""
        next_month = (month + dt.timedelta(days=32)).replace(day=1)
        d = rollup_daily.c
        in_month = (d.day >= month, d.day < next_month)
        keys = [d[k] for k in MONTHLY_KEYS[1:]]
        measures = (*ROLLUP_SUMS, "unpriced_tokens")
        merged: dict[tuple[object, ...], dict[str, object]] = {}
        for r in conn.execute(select(*keys, *(func.sum(d[m]) for m in measures))
                              .where(*in_month).group_by(*keys)):
            key = (month, *r[:len(keys)])
            merged[key] = {**dict(zip(MONTHLY_KEYS, key, strict=True)),
                           **{m: _number(v) for m, v in zip(measures, r[len(keys):],
                                                            strict=True)},
                           "cost_list": None, "cost_contract": None, "price_ref": None,
                           "contract_ref": None}
        money = ("cost_list", "cost_contract", "price_ref", "contract_ref")
        for r in conn.execute(select(*keys, *(d[m] for m in money)).where(*in_month)):
            out = merged[(month, *r[:len(keys)])]
            cost_list, cost_contract, price_ref, contract_ref = r[len(keys):]
            for name, value in (("cost_list", cost_list), ("cost_contract", cost_contract)):
                if value is not None:
                    out[name] = (out[name] or Decimal(0)) + value  # type: ignore[operator]
            for name, ref in (("price_ref", price_ref), ("contract_ref", contract_ref)):
                if ref and out[name] != ref:
                    out[name] = ref if out[name] is None else "several (see daily rows)"
        conn.execute(delete(rollup_monthly).where(rollup_monthly.c.month == month))
        bulk_insert(conn, rollup_monthly, list(merged.values()))

    # -- state -----------------------------------------------------------------------------
    @staticmethod
    def _state(conn: Connection) -> dict[str, str]:
        return {name: value for name, value in conn.execute(
            select(rollup_state.c.name, rollup_state.c.value))}

    @staticmethod
    def _set_state(conn: Connection, name: str, value: str) -> None:
        conn.execute(delete(rollup_state).where(rollup_state.c.name == name))
        conn.execute(insert(rollup_state).values(name=name, value=value,
                                                 updated_at=dt.datetime.now(UTC)))


def _number(value: object) -> object:
    """A SUM as Python returns it: PostgreSQL sums bigints as numeric (Decimal)."""
    return int(value) if isinstance(value, Decimal) else value


def _stored_closed_months(conn: Connection) -> set[dt.date]:
    """The months closed for chargeback (``spendwatch month close``)."""
    from models.months import closed_months

    return closed_months(conn)
