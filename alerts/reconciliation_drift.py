"""The ``reconciliation_drift`` alert rule: OpenAI's bill against our estimate.

It reads what the daily reconciliation job stored (``billed_costs``, via
:func:`models.reconciliation.reconciliation`; never the network) for the current UTC
month and the previous one (whose bill keeps arriving for a few days), and fires once
per month and scope (the alert's period is the month, ``YYYY-MM``) when the drift
(billed - estimated, over the days OpenAI has billed) passes the rule's thresholds:

* ``threshold``: percent (default: the ``reconcile_drift_threshold`` setting when no
  ``threshold_usd`` is given), ``threshold_usd``: dollars; with both, both must be
  passed. Drift counts both ways (billed above or below the estimate).
* ``by = "organisation"`` (default) for the month's total, or ``"project"`` for each
  project (``projects`` limits it to some). A project with no estimate (an unmapped
  OpenAI project) has no percentage: only ``threshold_usd`` can fire for it.

Parsing of the rule's keys is here too (:func:`drift_params`), called by the budget
file's validator, which reports the problems as ``FILE:LINE: problem; fix``.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING

from sqlalchemy import Connection

from alerts.state import Condition
from spendwatch.settings import Settings

if TYPE_CHECKING:
    from alerts.budget_file import RuleSpec
    from alerts.budgets import BudgetStatus

__all__ = ["DRIFT_DEFAULTS", "DRIFT_KIND", "drift_conditions", "drift_params"]

DRIFT_KIND = "reconciliation_drift"
#: The rule's settings and their defaults (None: the setting / no dollar threshold).
DRIFT_DEFAULTS: dict[str, object] = {"threshold": None, "threshold_usd": None,
                                     "by": "organisation", "projects": []}
_BY = ("organisation", "project")
_ZERO = Decimal(0)


def drift_params(entry: Mapping[str, object], name: str,
                 add: Callable[[int, str, str], None],
                 line_of: Callable[[str], int]) -> dict[str, object]:
    """The rule's settings from its ``[[rule]]`` table (common keys already taken
    out by the caller); each problem goes to ``add(line, problem, fix)``."""
    params: dict[str, object] = dict(DRIFT_DEFAULTS)
    for key, value in entry.items():
        line = line_of(key)
        if key in ("threshold", "threshold_usd"):
            params[key] = _positive(key, value, name, line, add)
        elif key == "by":
            if value not in _BY:
                add(line, f"by {value!r} of rule {name!r} is unknown for a {DRIFT_KIND} rule",
                    'use by = "organisation" (the month\'s total) or by = "project"')
            params[key] = value
        elif key == "projects":
            if not isinstance(value, list) or not all(
                    isinstance(p, str) and p for p in value):
                add(line, f"projects of rule {name!r} must be a list of project names",
                    'write projects = ["ranker", "bidder"]')
            params[key] = value
        else:
            add(line, f"unknown key {key!r} in {DRIFT_KIND} rule {name!r}",
                f"a {DRIFT_KIND} rule takes {', '.join(DRIFT_DEFAULTS)}")
    if params["projects"] and params["by"] != "project":
        add(line_of("projects"), f"rule {name!r} lists projects but checks the "
            f"organisation's total", 'add by = "project" (or remove projects)')
    return params


def _positive(key: str, value: object, name: str, line: int,
              add: Callable[[int, str, str], None]) -> str | None:
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        number = Decimal(-1)
    if isinstance(value, bool) or not number.is_finite() or number <= 0:
        unit, example = ("percent", "5") if key == "threshold" else ("dollars", '"50.00"')
        add(line, f"{key} = {value!r} of rule {name!r} is not a positive number of {unit}",
            f"give a number above zero, e.g. {key} = {example}")
        return None
    return format(number.normalize(), "f")


def _usd(amount: Decimal) -> str:
    return f"-${-amount:,.2f}" if amount < 0 else f"${amount:,.2f}"


def _exact(amount: Decimal) -> str:
    """An amount as text without trailing zeros (PostgreSQL stores 18 places)."""
    text = format(amount, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def _months(now: dt.datetime) -> list[dt.date]:
    this = now.astimezone(dt.UTC).date().replace(day=1)
    return [(this - dt.timedelta(days=1)).replace(day=1), this]


def drift_conditions(conn: Connection, rule: RuleSpec, statuses: Sequence[BudgetStatus],
                     settings: Settings, now: dt.datetime) -> list[Condition]:
    """The months (this UTC month and the last) whose stored bill drifts from the
    estimate past the rule's thresholds, for the organisation or each project."""
    from models.reconciliation import parse_project_map, reconciliation

    p = rule.params
    usd_limit = None if p.get("threshold_usd") is None else Decimal(str(p["threshold_usd"]))
    pct_limit = (Decimal(str(p["threshold"])) if p.get("threshold") is not None
                 else None if usd_limit is not None
                 else Decimal(str(settings.reconcile_drift_threshold)))
    project_map = parse_project_map(settings.openai_projects)
    wanted = set(p.get("projects") or [])  # type: ignore[arg-type]
    out: list[Condition] = []
    for month in _months(now):
        rec = reconciliation(conn.engine, month, project_map)
        billed_rows = [r for r in rec.rows if r.billed is not None]
        if not billed_rows:
            continue
        groups: dict[str, list[Decimal]] = defaultdict(lambda: [_ZERO, _ZERO])
        for r in billed_rows:
            key = r.project if p.get("by") == "project" else "*"
            groups[key][0] += r.estimated
            groups[key][1] += r.billed  # type: ignore[operator]
        days = sorted({r.day for r in billed_rows})
        for scope, (estimated, billed) in sorted(groups.items()):
            if wanted and scope not in wanted:
                continue
            cond = _condition(rule, settings, month, scope, estimated, billed, pct_limit,
                              usd_limit, days)
            if cond is not None:
                out.append(cond)
    return out


def _condition(rule: RuleSpec, settings: Settings, month: dt.date, scope: str,
               estimated: Decimal, billed: Decimal, pct_limit: Decimal | None,
               usd_limit: Decimal | None, days: list[dt.date]) -> Condition | None:
    drift = billed - estimated
    pct = (drift * 100 / estimated).quantize(Decimal("0.01")) if estimated else None
    # no percentage without an estimate: then only a dollar threshold can fire
    passes_pct = pct_limit is None or (abs(pct) > pct_limit if pct is not None
                                       else usd_limit is not None)
    passes_usd = usd_limit is None or abs(drift) > usd_limit
    if not (passes_pct and passes_usd):
        return None
    label = f"{month:%Y-%m}"
    who = "the organisation" if scope == "*" else f"project {scope}"
    pct_text = "n/a (no estimate)" if pct is None else f"{pct:+.2f}%"
    limits = " and ".join(x for x in (
        None if pct_limit is None else f"{pct_limit}%",
        None if usd_limit is None else _usd(usd_limit)) if x)
    summary = (f"Reconciliation drift {label} for {who}: billed {_usd(billed)} vs estimated "
               f"{_usd(estimated)} ({'+' if drift >= 0 else ''}{_usd(drift)}, {pct_text})")
    details: dict[str, object] = {
        "kind": DRIFT_KIND, "month": label, "estimated": _exact(estimated),
        "billed": _exact(billed), "difference": _exact(drift),
        "difference_pct": None if pct is None else str(pct),
        "headline": f"OpenAI billed {_usd(billed)} for {who} in {label}, our estimate is "
                    f"{_usd(estimated)}: a difference of {'+' if drift >= 0 else ''}"
                    f"{_usd(drift)} ({pct_text}), past the {limits} threshold",
        "facts": [["Month", f"{label} (UTC days OpenAI has billed: {len(days)}, "
                            f"{days[0]} .. {days[-1]})"],
                  ["Scope", who], ["Estimated", _usd(estimated)], ["Billed", _usd(billed)],
                  ["Difference", f"{'+' if drift >= 0 else ''}{_usd(drift)} ({pct_text})"],
                  ["Threshold", limits],
                  ["Check", "spendwatch reconcile --no-fetch; spendwatch prices check"]],
        "link": f"{settings.dashboard_url.rstrip('/')}/chargeback"}
    return Condition(f"rule:{rule.name}", "*" if scope == "*" else f"project={scope}",
                     "drift", label, summary, pct if pct is not None else drift,
                     pct_limit if pct is not None and pct_limit is not None else usd_limit,
                     details, rule.recipients, rule.webhooks)
