"""Budgets in the database: applying a budget file (with a dry run and a change
history), and what each budget has spent in its current period.

Spend is read from ``rollup_daily`` (``rollup_daily_user`` for a scope naming a
user), whose ``day`` is already the calendar day in the reporting timezone, so a
period is a range of days. Unpriced usage (cost NULL) is never counted as $0: it is
reported beside the spend as ``unpriced_tokens`` and the models concerned.
"""

from __future__ import annotations

import datetime as dt
import getpass
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, Engine, insert, select, update

from alerts.budget_file import BudgetFile, BudgetSpec, RuleSpec, load_budget_file, money_text
from models.database import begin_write
from models.schema import alert_rules, budget_changes, budgets, rollup_daily, rollup_daily_user
from spendwatch.settings import Settings

__all__ = ["BudgetApplyResult", "BudgetChange", "BudgetStatus", "Period", "ScopeSpend",
           "apply_budget_file", "apply_budgets", "budget_history", "budget_status",
           "period_of", "read_budgets", "scope_spend"]

UTC = dt.UTC
_LOCK_KEY = 0x5350_4247  # "SPBG": one `budgets apply` at a time on PostgreSQL
_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


# -- applying a file ----------------------------------------------------------------------
@dataclass(frozen=True)
class BudgetChange:
    kind: str  # budget | rule
    name: str
    action: str  # added | changed | removed
    before: dict[str, object] | None
    after: dict[str, object] | None

    def diff(self) -> list[str]:
        """``field: old -> new`` for each field that differs."""
        before, after = self.before or {}, self.after or {}
        return [f"{k}: {before.get(k)!r} -> {after.get(k)!r}"
                for k in sorted(set(before) | set(after)) if before.get(k) != after.get(k)]


@dataclass
class BudgetApplyResult:
    changes: list[BudgetChange] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    dry_run: bool = False
    source: str = ""


def apply_budget_file(engine: Engine, path: str | Path, *, actor: str | None = None,
                      dry_run: bool = False) -> BudgetApplyResult:
    """Validate the budget file at ``path`` as a whole, then make the database's budgets
    and rules what it says (budgets and rules missing from it are deactivated). Every
    change is recorded in ``budget_changes`` with ``actor`` (default: the OS user).
    ``dry_run``: report the changes, write nothing."""
    parsed = load_budget_file(path)
    return apply_budgets(engine, parsed, actor=actor, dry_run=dry_run)


def apply_budgets(engine: Engine, parsed: BudgetFile, *, actor: str | None = None,
                  dry_run: bool = False) -> BudgetApplyResult:
    result = BudgetApplyResult(dry_run=dry_run, source=parsed.source)
    who = actor or _os_user()
    now = dt.datetime.now(UTC)
    if dry_run:
        with engine.connect() as conn:
            _apply(conn, parsed, result, who, now, write=False)
            conn.rollback()
        return result
    with begin_write(engine) as conn:
        if engine.dialect.name == "postgresql":
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_LOCK_KEY})")
        _apply(conn, parsed, result, who, now, write=True)
    return result


def _os_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no user name in this environment
        return "unknown"


def _apply(conn: Connection, parsed: BudgetFile, result: BudgetApplyResult, actor: str,
           now: dt.datetime, *, write: bool) -> None:
    for kind, table, specs in (("budget", budgets, parsed.budgets),
                               ("rule", alert_rules, parsed.rules)):
        stored = {r.name: r for r in conn.execute(select(table))}
        wanted: dict[str, BudgetSpec | RuleSpec] = {s.name: s for s in specs}
        for name, spec in wanted.items():
            after = spec.as_json()
            old = stored.get(name)
            before = _row_json(kind, old) if old is not None else None
            if old is not None and old.active and before == after:
                result.unchanged.append(f"{kind} {name}")
                continue
            action = "changed" if old is not None and old.active else "added"
            result.changes.append(BudgetChange(kind, name, action,
                                               before if old is not None and old.active
                                               else None, after))
            if not write:
                continue
            values = _row_values(spec, f"{parsed.source}:{spec.line}", now)
            if old is None:
                conn.execute(insert(table).values(name=name, **values))
            else:
                conn.execute(update(table).where(table.c.name == name).values(**values))
        for name, old in stored.items():
            if name not in wanted and old.active:
                result.changes.append(BudgetChange(kind, name, "removed",
                                                   _row_json(kind, old), None))
                if write:
                    conn.execute(update(table).where(table.c.name == name).values(
                        active=False, updated_at=now, source=parsed.source[:500]))
    if write:
        for change in result.changes:
            conn.execute(insert(budget_changes).values(
                kind=change.kind, name=change.name, action=change.action, actor=actor[:200],
                changed_at=now, before=change.before, after=change.after,
                source=parsed.source[:500]))


def _row_values(spec: BudgetSpec | RuleSpec, source: str, now: dt.datetime) -> dict[str, object]:
    common = {"recipients": list(spec.recipients), "webhooks": list(spec.webhooks),
              "active": True, "source": source[:500], "updated_at": now}
    if isinstance(spec, RuleSpec):
        return {**common, "kind": spec.kind, "params": dict(spec.params)}
    return {**common, "scope": dict(spec.scope), "scope_key": spec.scope_key[:500],
            "period": spec.period, "amount": spec.amount, "cost_basis": spec.cost_basis,
            "thresholds": list(spec.thresholds), "mode": spec.mode,
            "downgrade": dict(spec.downgrade)}


def _row_json(kind: str, row: object) -> dict[str, object]:
    m = row._mapping  # type: ignore[attr-defined]
    if kind == "rule":
        return {"kind": m["kind"], "params": dict(m["params"]),
                "recipients": list(m["recipients"]), "webhooks": list(m["webhooks"])}
    return {"scope": dict(m["scope"]), "period": m["period"],
            "amount": money_text(m["amount"]),
            "cost_basis": m["cost_basis"], "thresholds": list(m["thresholds"]),
            "recipients": list(m["recipients"]), "webhooks": list(m["webhooks"]),
            "mode": m["mode"], "downgrade": dict(m["downgrade"])}


def read_budgets(engine: Engine, *, active_only: bool = True) -> list[BudgetSpec]:
    """The stored budgets, as specs."""
    query = select(budgets).order_by(budgets.c.name)
    if active_only:
        query = query.where(budgets.c.active.is_(True))
    with engine.connect() as conn:
        rows = list(conn.execute(query))
    return [BudgetSpec(r.name, dict(r.scope), r.period, r.amount, r.cost_basis,
                       tuple(r.thresholds), tuple(r.recipients), tuple(r.webhooks), r.mode,
                       dict(r.downgrade)) for r in rows]


def budget_history(engine: Engine, *, name: str | None = None,
                   limit: int = 100) -> list[dict[str, object]]:
    """The change history, newest first: kind, name, action, actor, changed_at, before,
    after, source."""
    query = select(budget_changes).order_by(budget_changes.c.id.desc()).limit(limit)
    if name is not None:
        query = query.where(budget_changes.c.name == name)
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(query)]


# -- periods and spend ----------------------------------------------------------------------
@dataclass(frozen=True)
class Period:
    """A calendar period in the reporting timezone: days ``start`` .. ``end`` - 1."""

    kind: str
    start: dt.date
    end: dt.date  # exclusive
    label: str
    tz: str

    def bounds(self) -> tuple[dt.datetime, dt.datetime]:
        zone = ZoneInfo(self.tz)
        # in UTC: two times in one zone subtract as wall-clock times (a DST day is 23 h)
        return (dt.datetime.combine(self.start, dt.time(0), zone).astimezone(UTC),
                dt.datetime.combine(self.end, dt.time(0), zone).astimezone(UTC))

    def elapsed(self, now: dt.datetime) -> float:
        """The fraction of the period that has passed at ``now`` (0..1)."""
        start, end = self.bounds()
        total = (end - start).total_seconds()
        return min(max((now - start).total_seconds() / total, 0.0), 1.0)

    def window_text(self) -> str:
        last = self.end - dt.timedelta(days=1)
        if last == self.start:
            return f"{self.start.isoformat()} ({self.tz})"
        return f"{self.start.isoformat()} to {last.isoformat()} ({self.tz})"


def period_of(kind: str, now: dt.datetime, tz: str, week_start: str = "monday") -> Period:
    """The ``kind`` (daily|weekly|monthly) period that contains ``now``."""
    today = now.astimezone(ZoneInfo(tz)).date()
    if kind == "daily":
        return Period(kind, today, today + dt.timedelta(days=1), today.isoformat(), tz)
    if kind == "weekly":
        offset = (today.weekday() - _WEEKDAYS.index(week_start)) % 7
        start = today - dt.timedelta(days=offset)
        return Period(kind, start, start + dt.timedelta(days=7), f"week-{start.isoformat()}",
                      tz)
    start = today.replace(day=1)
    end = (start + dt.timedelta(days=32)).replace(day=1)
    return Period("monthly", start, end, start.strftime("%Y-%m"), tz)


@dataclass
class ScopeSpend:
    cost: Decimal = Decimal(0)
    unpriced_tokens: int = 0
    unpriced_models: list[str] = field(default_factory=list)
    #: (model or project, cost) by cost, highest first
    top: list[tuple[str, Decimal]] = field(default_factory=list)


def scope_spend(conn: Connection, scope: dict[str, str], cost_basis: str, start: dt.date,
                end: dt.date) -> ScopeSpend:
    """Spend of ``scope`` over the local days ``start`` .. ``end`` - 1."""
    table = rollup_daily_user if "user" in scope else rollup_daily
    cost_col = table.c.cost_list if cost_basis == "list" else table.c.cost_contract
    by = table.c.project if "model" in scope else table.c.model
    query = select(by.label("by"), table.c.model, cost_col.label("cost"),
                   table.c.unpriced_tokens).where(table.c.day >= start, table.c.day < end)
    for key, value in scope.items():
        query = query.where(table.c[key] == value)
    out = ScopeSpend()
    per: dict[str, Decimal] = {}
    unpriced: set[str] = set()
    for row in conn.execute(query):
        if row.cost is not None:
            out.cost += row.cost
            per[row.by or "(none)"] = per.get(row.by or "(none)", Decimal(0)) + row.cost
        if row.unpriced_tokens or row.cost is None:
            out.unpriced_tokens += row.unpriced_tokens or 0
            unpriced.add(row.model)
    out.unpriced_models = sorted(unpriced)
    out.top = sorted(per.items(), key=lambda kv: (-kv[1], kv[0]))[:5]
    return out


@dataclass
class BudgetStatus:
    """One budget in its current period (what `budgets list` and the dashboard show)."""

    budget: BudgetSpec
    period: Period
    spend: ScopeSpend
    percent: Decimal
    forecast: Decimal | None
    elapsed: float

    @property
    def name(self) -> str:
        return self.budget.name

    @property
    def amount(self) -> Decimal:
        return self.budget.amount


def budget_status(engine: Engine, settings: Settings, now: dt.datetime | None = None,
                  *, names: Sequence[str] | None = None) -> list[BudgetStatus]:
    """Every active budget: spend, percentage of the amount and the linear forecast
    for the end of the period (None in the first 5 % of it, too early to say)."""
    now = now or dt.datetime.now(UTC)
    out: list[BudgetStatus] = []
    specs = [b for b in read_budgets(engine) if names is None or b.name in names]
    with engine.connect() as conn:
        for spec in specs:
            period = period_of(spec.period, now, settings.timezone, settings.week_start)
            spend = scope_spend(conn, spec.scope, spec.cost_basis, period.start, period.end)
            elapsed = period.elapsed(now)
            forecast = (spend.cost / Decimal(str(round(elapsed, 6))) if elapsed >= 0.05
                        else None)
            percent = (spend.cost * 100 / spec.amount).quantize(Decimal("0.1"))
            out.append(BudgetStatus(spec, period, spend, percent,
                                    forecast.quantize(Decimal("0.01")) if forecast is not None
                                    else None, elapsed))
    return out
