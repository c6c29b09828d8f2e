"""Budget enforcement before a call is sent (``enforce_budgets = true``; off by default).

A ``block`` budget whose period is spent raises :class:`BudgetExceededError` before
the request leaves the process; a ``downgrade`` budget swaps the model through its
map (``gpt-4o`` -> ``gpt-4o-mini``). Which budgets apply is decided by the call's
tags (``team``, ``project``, ``user``: instrument() defaults overridden by tags()
blocks) and its model.

Spend = the period's spend in the rollups (read from the database, cached for
``enforce_refresh`` seconds) + what this process spent since the rollups' watermark
(its own calls, priced here). Overshoot is bounded by what *other* processes spend
between two rollups, plus the calls this process has in flight when the limit is
reached (a call's cost is known only when it ends). When the database cannot be
read the guard keeps its last figures and lets calls through (it fails open) and
logs a warning.

Off: :data:`GUARD` is None and the wrapper's only cost is that one test. This module
imports nothing heavy at ``import collector``; enabling it loads the budget queries
and the price book.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal

from spendwatch.errors import BudgetExceededError
from spendwatch.settings import Settings

from .tagging import current_tags

__all__ = ["GUARD", "BudgetGuard", "disable", "enable", "enforce"]

log = logging.getLogger("spendwatch.collector")
UTC = dt.UTC
#: Own calls that started this long before the rollup watermark are assumed to be in
#: the rollups; later ones are added (possibly counted twice: it errs on the safe side).
_MARGIN = dt.timedelta(seconds=60)
GUARD: BudgetGuard | None = None
_Own = tuple[dt.datetime, dict[str, tuple[str | None, ...]], Decimal, Decimal]


@dataclass(frozen=True)
class _Limit:
    name: str
    scope: dict[str, str]
    scope_key: str
    mode: str
    amount: Decimal
    cost_basis: str
    downgrade: dict[str, str]
    period: str
    label: str
    start: dt.datetime  # the period's start (UTC)
    db_spend: Decimal


class BudgetGuard:
    def __init__(self, settings: Settings, *, engine: object | None = None,
                 prices: object | None = None) -> None:
        self.settings = settings
        self._engine = engine
        self._prices = prices
        self._price_rows: dict[tuple[object, ...], tuple[object | None, object | None]] = {}
        self._limits: list[_Limit] = []
        self._watermark: dt.datetime | None = None
        self._next_refresh = 0.0
        self._refreshing = threading.Lock()
        self._pending: list[object] = []
        self._own: list[_Own] = []
        self._totals: dict[str, Decimal] = {}
        self._own_lock = threading.Lock()

    # -- what the wrapper calls -----------------------------------------------------------
    def check(self, info: object, kwargs: dict[str, object]) -> None:
        """Raise BudgetExceededError or swap ``kwargs["model"]`` (on the caller's thread)."""
        self._observe(info)
        if time.monotonic() >= self._next_refresh:
            self.refresh()
        self._absorb()
        limits = self._limits
        if not limits:
            return
        tags = {**getattr(info, "defaults", {}), **current_tags()}
        for limit in limits:
            if limit.mode != "downgrade":
                continue
            model = kwargs.get("model")
            if isinstance(model, str) and model in limit.downgrade and self._applies(
                    limit, tags, model) and self.spend(limit) >= limit.amount:
                log.info("spendwatch: budget %s is spent; %s -> %s", limit.name, model,
                         limit.downgrade[model])
                kwargs["model"] = limit.downgrade[model]
        model = kwargs.get("model")
        for limit in limits:
            if limit.mode == "block" and self._applies(limit, tags, model):
                spent = self.spend(limit)
                if spent >= limit.amount:
                    raise BudgetExceededError(limit.name, limit.scope_key,
                                              spent.quantize(Decimal("0.01")), limit.amount,
                                              limit.label)

    @staticmethod
    def _applies(limit: _Limit, tags: Mapping[str, str], model: object) -> bool:
        for key, value in limit.scope.items():
            actual = model if key == "model" else tags.get(key)
            if actual != value:
                return False
        return True

    # -- own spend ------------------------------------------------------------------------
    def _observe(self, info: object) -> None:
        """Wrap the client's queue hand-off (once per hand-off function: instrumenting
        the client again replaces it), to see this process's own calls."""
        put: Callable[[object], None] = info.sink_put  # type: ignore[attr-defined]
        if getattr(put, "_spendwatch_guard", None) is self:
            return

        def observed(call: object) -> None:
            try:
                if GUARD is self:  # a guard replaced by enable()/disable() stops counting
                    with self._own_lock:
                        self._pending.append(call)
            finally:
                observed._spendwatch_put(call)  # type: ignore[attr-defined]

        observed._spendwatch_guard = self  # type: ignore[attr-defined]
        observed._spendwatch_put = put  # type: ignore[attr-defined]  # repoint_clients
        info.sink_put = observed  # type: ignore[attr-defined]

    def _absorb(self) -> None:
        """Price the calls finished since the last check and add each to the running
        totals of the budgets it counts against (so a check costs O(budgets), not
        O(calls))."""
        if not self._pending:
            return
        with self._own_lock:
            pending, self._pending = self._pending, []
        priced = [p for p in map(self._price, pending) if p is not None]
        with self._own_lock:
            self._own.extend(priced)
            for own in priced:
                self._add(own, self._limits)

    def _add(self, own: _Own, limits: list[_Limit]) -> None:
        ts, fields, cost_list, cost_contract = own
        for limit in limits:
            if ts >= limit.start and all(v in fields.get(k, ())
                                         for k, v in limit.scope.items()):
                cost = cost_list if limit.cost_basis == "list" else cost_contract
                self._totals[limit.name] = self._totals.get(limit.name, Decimal(0)) + cost

    def spend(self, limit: _Limit) -> Decimal:
        """The rollups' figure for the period plus this process's calls since."""
        return limit.db_spend + self._totals.get(limit.name, Decimal(0))

    def _price(self, item: object) -> _Own | None:
        """(start, tag values, list cost, contract cost) of one finished call."""
        try:
            event = item.to_event() if hasattr(item, "to_event") else item  # type: ignore[union-attr]
            if not event.usage_reported or self._prices is None:
                return None
            from models.costs import cost_of
            from models.long_context import band

            day, tier, batch = event.ts.date(), event.service_tier, event.is_batch
            model = event.model or event.model_requested or ""
            thresholds = getattr(self._prices, "context_thresholds", ())
            key = (model, tier, batch, day, band(event.input_tokens, thresholds))
            found = self._price_rows.get(key)
            if found is None:  # looked up once per model, tier, day and band, not per call
                listed = self._prices.list_price(*key)  # type: ignore[attr-defined]
                contract = self._prices.contract_price(*key) if listed else None  # type: ignore[attr-defined]
                found = self._price_rows[key] = (listed, contract or listed)
            listed, contract = found
            if listed is None:
                return None  # unpriced: counted by the rollups as unpriced, never as $0
            fields = {"team": (event.team,), "project": (event.project,),
                      "user": (event.user,), "model": (event.model, event.model_requested)}
            return (event.ts, fields, cost_of(event, listed).total,  # type: ignore[arg-type]
                    cost_of(event, contract).total)  # type: ignore[arg-type]
        except Exception:
            log.debug("spendwatch: could not price a call for enforcement", exc_info=True)
            return None

    # -- the database ---------------------------------------------------------------------
    def refresh(self) -> None:
        if not self._refreshing.acquire(blocking=False):
            return  # another thread is refreshing; use the current figures
        try:
            self._next_refresh = time.monotonic() + self.settings.enforce_refresh
            limits, self._watermark = self._read()
            with self._own_lock:
                if self._watermark is not None:
                    cutoff = self._watermark - _MARGIN
                    self._own = [o for o in self._own if o[0] >= cutoff]
                self._totals = {}
                for own in self._own:
                    self._add(own, limits)
                self._limits = limits
        except Exception as exc:
            log.warning("spendwatch: budget enforcement could not read spend (%s); using the "
                        "last figures", exc)
        finally:
            self._refreshing.release()

    def _read(self) -> tuple[list[_Limit], dt.datetime | None]:
        from sqlalchemy import select

        from alerts.budgets import period_of, read_budgets, scope_spend
        from models.database import open_database
        from models.schema import rollup_state

        if self._engine is None:
            self._engine = open_database(self.settings.database_url)
        if self._prices is None:
            from models.pricing import PriceBook

            self._prices = PriceBook.load(self._engine)  # type: ignore[arg-type]
            self._price_rows.clear()
        now = dt.datetime.now(UTC)
        limits: list[_Limit] = []
        specs = [b for b in read_budgets(self._engine) if b.mode in ("block", "downgrade")]
        with self._engine.connect() as conn:  # type: ignore[attr-defined]
            mark = conn.execute(select(rollup_state.c.value).where(
                rollup_state.c.name == "watermark")).scalar()
            for b in specs:
                period = period_of(b.period, now, self.settings.timezone,
                                   self.settings.week_start)
                spent = scope_spend(conn, b.scope, b.cost_basis, period.start, period.end)
                limits.append(_Limit(b.name, b.scope, b.scope_key, b.mode, b.amount,
                                     b.cost_basis, b.downgrade, b.period, period.label,
                                     period.bounds()[0], spent.cost))
        return limits, (dt.datetime.fromisoformat(mark) if mark else None)


def enforce(info: object, kwargs: dict[str, object]) -> None:
    """What the wrapper calls before a call when :data:`GUARD` is set: a budget error
    propagates, anything else is logged (enforcement never breaks a call)."""
    guard = GUARD
    if guard is None:
        return
    try:
        guard.check(info, kwargs)
    except BudgetExceededError:
        raise
    except Exception:
        log.exception("spendwatch: budget enforcement failed; the call goes ahead")


def enable(settings: Settings, *, engine: object | None = None,
           prices: object | None = None) -> BudgetGuard:
    """Turn enforcement on for every instrumented client of this process."""
    global GUARD
    GUARD = BudgetGuard(settings, engine=engine, prices=prices)
    return GUARD


def disable() -> None:
    global GUARD
    GUARD = None
