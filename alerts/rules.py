"""What each budget threshold and rule finds true now, as :class:`~alerts.state.Condition`.

* Budget thresholds and the forecast rule read :func:`alerts.budgets.budget_status`
  (rollups).
* ``error_rate`` and ``latency_p95`` look at the last ``window_minutes`` of usage
  events, found through the timestamp index (a window, never a scan of history);
  they are episodic: triggered, then resolved when the condition clears.
* ``spend_spike`` compares the last complete local hour with the same weekday and
  hour of the previous ``weeks`` weeks (the events of those hours, priced here, as
  rollups are daily); ``unpriced`` names models whose tokens could not be costed
  today or yesterday. Both fire once per period (hour, month).
* ``reconciliation_drift`` (:mod:`alerts.reconciliation_drift`) compares OpenAI's
  stored bill with the estimate; once per month and scope.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import defaultdict
from collections.abc import Sequence
from decimal import Decimal
from urllib.parse import quote

from sqlalchemy import Connection, func, select

from alerts.budget_file import RuleSpec
from alerts.budgets import BudgetStatus, period_of
from alerts.reconciliation_drift import DRIFT_KIND, drift_conditions
from alerts.state import Condition
from models.schema import rollup_daily, usage_events
from spendwatch.settings import Settings

__all__ = ["EPISODIC", "budget_conditions", "rule_conditions"]

UTC = dt.UTC
EPISODIC = ("error_rate", "latency_p95")
_CLASS_LABEL = {"rate_limit": "429 (rate limit)", "client": "other 4xx", "server": "5xx",
                "network": "network"}


def usd(amount: Decimal | None) -> str:
    return "n/a" if amount is None else f"${amount:,.2f}"


def _budget_facts(s: BudgetStatus) -> list[list[str]]:
    b = s.budget
    facts = [["Scope", b.scope_key], ["Spend", f"{usd(s.spend.cost)} ({b.cost_basis} cost)"],
             ["Budget", f"{usd(b.amount)} {b.period}"], ["Used", f"{s.percent}%"],
             ["Period", s.period.window_text()],
             ["Forecast", f"{usd(s.forecast)} by the end of the period (linear)"
              if s.forecast is not None else "too early in the period"]]
    if s.spend.unpriced_tokens:
        facts.append(["Not costed", f"{s.spend.unpriced_tokens:,} tokens of unpriced models "
                      f"({', '.join(s.spend.unpriced_models)}); spend above excludes them"])
    if b.mode != "notify":
        facts.append(["Enforcement", f"{b.mode} at 100%"])
    return facts


def _link(settings: Settings, budget: str) -> str:
    return f"{settings.dashboard_url.rstrip('/')}/budgets?budget={quote(budget)}"


def budget_conditions(statuses: Sequence[BudgetStatus], settings: Settings) -> list[Condition]:
    """One condition per threshold crossed; only the highest newly crossed one in a run
    sends a message (a jump from 40 % to 95 % sends one email, for 90 %)."""
    out: list[Condition] = []
    for s in statuses:
        b = s.budget
        exact = s.spend.cost * 100 / b.amount
        crossed = [t for t in b.thresholds if exact >= t]
        for t in crossed:
            details: dict[str, object] = {
                "kind": "budget", "budget": b.name, "period_label": s.period.label,
                "window": s.period.window_text(), "spend": str(s.spend.cost),
                "amount": str(b.amount), "percent": str(s.percent), "threshold": t,
                "forecast": None if s.forecast is None else str(s.forecast),
                "unpriced_tokens": s.spend.unpriced_tokens,
                "headline": f"Budget {b.name} ({b.scope_key}) crossed {t}% of its {b.period} "
                            f"budget: {usd(s.spend.cost)} of {usd(b.amount)} ({s.percent}%)",
                "facts": _budget_facts(s),
                "top": [[n, usd(c)] for n, c in s.spend.top],
                "top_label": "projects" if "model" in b.scope else "models",
                "link": _link(settings, b.name)}
            out.append(Condition(
                f"budget:{b.name}", b.scope_key, str(t), s.period.label,
                f"Budget {b.name} ({b.scope_key}) crossed {t}%: {usd(s.spend.cost)} of "
                f"{usd(b.amount)} for {s.period.label}",
                s.spend.cost, b.amount, details, b.recipients, b.webhooks,
                "critical" if t >= 100 else "warning", notify=(t == crossed[-1])))
    return out


def rule_conditions(conn: Connection, rule: RuleSpec, statuses: Sequence[BudgetStatus],
                    settings: Settings, now: dt.datetime) -> list[Condition]:
    """What ``rule`` finds true at ``now``."""
    return _KINDS[rule.kind](conn, rule, statuses, settings, now)


def _forecast(conn: Connection, rule: RuleSpec, statuses: Sequence[BudgetStatus],
              settings: Settings, now: dt.datetime) -> list[Condition]:
    names = rule.params.get("budgets") or []
    min_elapsed = Decimal(str(rule.params.get("min_elapsed", 25)))
    out = []
    for s in statuses:
        b = s.budget
        if (names and b.name not in names) or s.forecast is None:  # type: ignore[operator]
            continue
        if Decimal(str(s.elapsed)) * 100 < min_elapsed or s.spend.cost >= b.amount:
            continue
        if s.forecast < b.amount:
            continue
        details: dict[str, object] = {
            "kind": "forecast", "budget": b.name, "forecast": str(s.forecast),
            "headline": f"Budget {b.name} ({b.scope_key}) is forecast to reach "
                        f"{usd(s.forecast)}, over its {usd(b.amount)} {b.period} budget",
            "facts": _budget_facts(s), "top": [[n, usd(c)] for n, c in s.spend.top],
            "top_label": "projects" if "model" in b.scope else "models",
            "link": _link(settings, b.name)}
        out.append(Condition(
            f"rule:{rule.name}", f"budget={b.name}", "forecast", s.period.label,
            f"Budget {b.name} ({b.scope_key}) forecast {usd(s.forecast)} exceeds "
            f"{usd(b.amount)} for {s.period.label}", s.forecast, b.amount, details,
            tuple(dict.fromkeys([*rule.recipients, *b.recipients])),
            tuple(dict.fromkeys([*rule.webhooks, *b.webhooks]))))
    return out


def _by_column(by: str) -> object:
    if by == "model":
        return func.coalesce(usage_events.c.model, usage_events.c.model_requested, "")
    return func.coalesce(usage_events.c[by], "")


def _window(rule: RuleSpec, now: dt.datetime) -> tuple[dt.datetime, dt.datetime, int]:
    minutes = int(Decimal(str(rule.params["window_minutes"])))
    return now - dt.timedelta(minutes=minutes), now, minutes


def _error_rate(conn: Connection, rule: RuleSpec, statuses: Sequence[BudgetStatus],
                settings: Settings, now: dt.datetime) -> list[Condition]:
    start, end, minutes = _window(rule, now)
    by = str(rule.params["by"])
    key = _by_column(by).label("key")  # type: ignore[attr-defined]
    counts: dict[str, dict[str | None, int]] = defaultdict(lambda: defaultdict(int))
    for row in conn.execute(select(key, usage_events.c.error_kind, func.count()).where(
            usage_events.c.ts >= start, usage_events.c.ts < end).group_by(
            key, usage_events.c.error_kind)):
        counts[row[0]][row[1]] += row[2]
    threshold = Decimal(str(rule.params["threshold"]))
    minimum = int(Decimal(str(rule.params["min_requests"])))
    out = []
    for value, kinds in sorted(counts.items()):
        total = sum(kinds.values())
        if total < minimum:
            continue
        for cls in rule.params["classes"]:  # type: ignore[union-attr]
            n = kinds.get(cls, 0)
            rate = (Decimal(n) * 100 / total).quantize(Decimal("0.1"))
            if rate < threshold:
                continue
            label = _CLASS_LABEL[cls]
            out.append(Condition(
                f"rule:{rule.name}", f"{by}={value}", cls, None,
                f"{label} errors at {rate}% for {by} {value}",
                rate, threshold,
                {"kind": "error_rate", "headline": f"{label} errors at {rate}% of requests for "
                 f"{by} {value} (threshold {threshold}%)",
                 "facts": [[by.capitalize(), value], ["Errors", f"{n} of {total} requests"],
                           ["Rate", f"{rate}%"], ["Threshold", f"{threshold}% with at least "
                                                  f"{minimum} requests"],
                           ["Window", f"{minutes} minutes to "
                                      f"{end.astimezone(UTC).isoformat(timespec='minutes')}"]],
                 "link": f"{settings.dashboard_url.rstrip('/')}/reliability"},
                rule.recipients, rule.webhooks, "critical"))
    return out


def _latency(conn: Connection, rule: RuleSpec, statuses: Sequence[BudgetStatus],
             settings: Settings, now: dt.datetime) -> list[Condition]:
    start, end, minutes = _window(rule, now)
    by = str(rule.params["by"])
    key = _by_column(by).label("key")  # type: ignore[attr-defined]
    values: dict[str, list[float]] = defaultdict(list)
    for row in conn.execute(select(key, usage_events.c.latency_ms).where(
            usage_events.c.ts >= start, usage_events.c.ts < end,
            usage_events.c.latency_ms.is_not(None), usage_events.c.error_kind.is_(None))):
        values[row[0]].append(row[1])
    limit = Decimal(str(rule.params["threshold_ms"]))
    minimum = int(Decimal(str(rule.params["min_requests"])))
    out = []
    for value, lat in sorted(values.items()):
        if len(lat) < minimum:
            continue
        lat.sort()
        p95 = Decimal(str(round(lat[max(math.ceil(0.95 * len(lat)) - 1, 0)])))
        if p95 <= limit:
            continue
        out.append(Condition(
            f"rule:{rule.name}", f"{by}={value}", "p95", None,
            f"p95 latency {p95} ms for {by} {value}", p95, limit,
            {"kind": "latency_p95", "headline": f"p95 latency {p95} ms for {by} {value} "
             f"(limit {limit} ms)",
             "facts": [[by.capitalize(), value], ["p95", f"{p95} ms"],
                       ["Limit", f"{limit} ms"], ["Requests", str(len(lat))],
                       ["Window", f"{minutes} minutes"]],
             "link": f"{settings.dashboard_url.rstrip('/')}/reliability"},
            rule.recipients, rule.webhooks))
    return out


_TOKEN_SUMS = ("input_tokens", "cached_input_tokens", "cache_write_tokens", "output_tokens",
               "audio_input_tokens", "audio_output_tokens")


def _hour_spend(conn: Connection, by: str, start: dt.datetime, prices: object
                ) -> dict[str, Decimal]:
    """Contracted spend (else list) per ``by`` value of the events of one hour, priced
    from their tokens (rollups are daily); unpriced models are left out."""
    from types import SimpleNamespace

    from models.costs import cost_of
    from models.long_context import band_sql

    key = _by_column(by).label("key")  # type: ignore[attr-defined]
    model = func.coalesce(usage_events.c.model, usage_events.c.model_requested, "")
    thresholds = tuple(getattr(prices, "context_thresholds", ()))
    keys = [key, model.label("model"), usage_events.c.service_tier, usage_events.c.is_batch,
            # long-context rates apply per request
            band_sql(usage_events.c.input_tokens, thresholds).label("long_context")]
    query = select(*keys, *(func.sum(usage_events.c[t]).label(t) for t in _TOKEN_SUMS)).where(
        usage_events.c.ts >= start, usage_events.c.ts < start + dt.timedelta(hours=1),
        usage_events.c.usage_reported.is_(True)).group_by(*keys)
    out: dict[str, Decimal] = defaultdict(Decimal)
    day = start.astimezone(UTC).date()
    for row in conn.execute(query):
        m = row._mapping
        args = (m["model"], m["service_tier"], bool(m["is_batch"]), day,
                int(m["long_context"]))
        price = (prices.contract_price(*args)  # type: ignore[attr-defined]
                 or prices.list_price(*args))  # type: ignore[attr-defined]
        if price is not None:
            tokens = SimpleNamespace(**{t: int(m[t] or 0) for t in _TOKEN_SUMS})
            out[m["key"]] += cost_of(tokens, price).total  # type: ignore[arg-type]
    return out


def _spend_spike(conn: Connection, rule: RuleSpec, statuses: Sequence[BudgetStatus],
                 settings: Settings, now: dt.datetime) -> list[Condition]:
    """The last complete local hour against the same weekday and hour of the previous
    ``weeks`` weeks (read from the events of those hours only, via the ts index)."""
    from zoneinfo import ZoneInfo

    from models.pricing import PriceBook

    tz = ZoneInfo(settings.timezone)
    local = now.astimezone(tz) - dt.timedelta(hours=1)
    hour = dt.datetime.combine(local.date(), dt.time(local.hour), tz)
    weeks = int(Decimal(str(rule.params["weeks"])))
    by = str(rule.params["by"])
    prices = PriceBook.load(conn.engine)
    current = _hour_spend(conn, by, hour, prices)
    past = [_hour_spend(conn, by, dt.datetime.combine(hour.date() - dt.timedelta(days=7 * k),
                                                      dt.time(hour.hour), tz), prices)
            for k in range(1, weeks + 1)]
    factor = Decimal(str(rule.params["factor"]))
    minimum = Decimal(str(rule.params["min_spend"]))
    label = f"{hour:%Y-%m-%d %H}:00"
    out = []
    for value, spent in sorted(current.items()):
        baseline = sum((p.get(value, Decimal(0)) for p in past), Decimal(0)) / max(weeks, 1)
        if spent < minimum or baseline <= 0 or spent < factor * baseline:
            continue
        name = value or "(none)"
        out.append(Condition(
            f"rule:{rule.name}", f"{by}={value}", "spike", label,
            f"Spend spike for {by} {name} at {label}: {usd(spent)} vs {usd(baseline)}",
            spent, baseline,
            {"kind": "spend_spike", "headline": f"{by.capitalize()} {name} spent "
             f"{usd(spent)} from {label} ({settings.timezone}), at least {factor}x its usual "
             f"{usd(baseline)} for a {hour:%A} at that hour",
             "facts": [[by.capitalize(), name], ["Hour", f"{label} ({settings.timezone})"],
                       ["Spend", usd(spent)],
                       ["Baseline", f"{usd(baseline)} (same weekday and hour, {weeks} "
                                    f"weeks)"]],
             "link": f"{settings.dashboard_url.rstrip('/')}/costs"},
            rule.recipients, rule.webhooks))
    return out


def _unpriced(conn: Connection, rule: RuleSpec, statuses: Sequence[BudgetStatus],
              settings: Settings, now: dt.datetime) -> list[Condition]:
    today = period_of("daily", now, settings.timezone).start
    month = period_of("monthly", now, settings.timezone).label
    tokens: dict[str, int] = defaultdict(int)
    for row in conn.execute(select(rollup_daily.c.model, rollup_daily.c.unpriced_tokens,
                                   rollup_daily.c.cost_list).where(
            rollup_daily.c.day >= today - dt.timedelta(days=1), rollup_daily.c.day <= today)):
        if row.unpriced_tokens or row.cost_list is None:
            tokens[row.model] += row.unpriced_tokens or 0
    return [Condition(
        f"rule:{rule.name}", f"model={model}", "unpriced", month,
        f"Model {model} has no price: {n:,} tokens not costed", Decimal(n), None,
        {"kind": "unpriced", "headline": f"Model {model} is used but has no price: its "
         f"{n:,} tokens are counted, not costed",
         "facts": [["Model", model], ["Tokens not costed", f"{n:,}"],
                   ["Fix", 'add a [[price]] with kind = "list" and run spendwatch prices apply']],
         "link": f"{settings.dashboard_url.rstrip('/')}/costs"},
        rule.recipients, rule.webhooks) for model, n in sorted(tokens.items())]


_KINDS = {"forecast": _forecast, "error_rate": _error_rate, "latency_p95": _latency,
          "spend_spike": _spend_spike, "unpriced": _unpriced, DRIFT_KIND: drift_conditions}
