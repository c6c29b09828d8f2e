"""One alert evaluation: budgets and rules -> alert states -> messages.

:func:`evaluate_alerts` runs after each rollup (the scheduler's after-rollup hook)
and from ``spendwatch alerts run``:

1. every active budget's spend in its current period, and every active rule;
2. in one write transaction, insert the alerts found (the UNIQUE key makes this
   exactly once) and resolve the episodic alerts that cleared, queueing their
   messages;
3. send every queued or earlier-failed message (claimed one at a time, so two
   evaluators never send the same one; a failure is recorded and retried next run).
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, select

from alerts.budget_file import RuleSpec
from alerts.budgets import budget_status
from alerts.hooks import after_rollup
from alerts.notifiers import deliver
from alerts.rules import EPISODIC, budget_conditions, rule_conditions
from alerts.state import (
    claim_notification,
    finish_notification,
    open_alert,
    open_episodes,
    pending_notifications,
    resolve_alert,
)
from models.database import begin_write
from models.rollups import RollupResult
from models.schema import alert_rules
from spendwatch.errors import AlertDeliveryError
from spendwatch.settings import Settings, load_settings

__all__ = ["EvaluationResult", "current_settings", "deliver_pending", "evaluate_alerts",
           "read_rules", "use_settings"]

log = logging.getLogger("spendwatch.alerts")
UTC = dt.UTC


@dataclass
class EvaluationResult:
    """What one evaluation did."""

    now: dt.datetime
    triggered: list[str] = field(default_factory=list)  # summaries of alerts opened now
    resolved: list[str] = field(default_factory=list)
    sent: list[str] = field(default_factory=list)  # "alert 3 triggered: email to ..."
    failed: list[str] = field(default_factory=list)
    triggered_ids: list[int] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [f"triggered: {s}" for s in self.triggered]
        out += [f"resolved: {s}" for s in self.resolved]
        out += [f"sent: {s}" for s in self.sent]
        out += [f"FAILED (retried next run): {s}" for s in self.failed]
        out.append(f"{len(self.triggered)} triggered, {len(self.resolved)} resolved, "
                   f"{len(self.sent)} message(s) sent, {len(self.failed)} failed")
        return out


def read_rules(engine: Engine) -> list[RuleSpec]:
    with engine.connect() as conn:
        rows = list(conn.execute(select(alert_rules).where(alert_rules.c.active.is_(True))
                                 .order_by(alert_rules.c.name)))
    return [RuleSpec(r.name, r.kind, dict(r.params), tuple(r.recipients), tuple(r.webhooks))
            for r in rows]


def evaluate_alerts(engine: Engine, settings: Settings, *, now: dt.datetime | None = None,
                    send: bool = True) -> EvaluationResult:
    """Evaluate every budget and rule at ``now`` (default: the current time), record
    the alerts, and (``send``) deliver what is due. Emails go to the outbox folder
    when no ``smtp_host`` is set."""
    now = now or dt.datetime.now(UTC)
    result = EvaluationResult(now)
    statuses = budget_status(engine, settings, now)
    rules = read_rules(engine)
    conditions = budget_conditions(statuses, settings)
    firing: dict[str, set[tuple[str, str]]] = {}
    with engine.connect() as conn:
        for rule in rules:
            try:
                found = rule_conditions(conn, rule, statuses, settings, now)
            except Exception:  # one broken rule must not stop the others
                log.exception("alert rule %s (%s) failed", rule.name, rule.kind)
                if rule.kind in EPISODIC:
                    firing[f"rule:{rule.name}"] = {("?", "?")}  # unknown: resolve nothing
                continue
            conditions += found
            if rule.kind in EPISODIC:
                firing[f"rule:{rule.name}"] = {(c.scope, c.threshold) for c in found}
    local_day = now.astimezone(ZoneInfo(settings.timezone)).date().isoformat()
    by_rule = {f"rule:{r.name}": r for r in rules}
    with begin_write(engine) as conn:
        for cond in conditions:
            alert_id = open_alert(conn, cond, now, default_webhook=settings.alert_webhook_url,
                                  local_day=local_day)
            if alert_id is not None:
                result.triggered.append(cond.summary)
                result.triggered_ids.append(alert_id)
        for alert in open_episodes(conn, [r for r, f in firing.items() if ("?", "?") not in f]):
            if (alert.scope, alert.threshold) in firing[alert.rule]:
                continue
            rule = by_rule[alert.rule]
            if resolve_alert(conn, alert, now, rule.recipients, rule.webhooks,
                             settings.alert_webhook_url):
                result.resolved.append(alert.summary)
    if send:
        deliver_pending(engine, settings, result)
    return result


def deliver_pending(engine: Engine, settings: Settings,
                    result: EvaluationResult | None = None) -> EvaluationResult:
    """Send every pending or failed message this process can claim."""
    result = result or EvaluationResult(dt.datetime.now(UTC))
    for notification_id in pending_notifications(engine):
        claimed = claim_notification(engine, notification_id)
        if claimed is None:
            continue
        note, alert = claimed
        name = (f"{alert.triggered_at:%Y%m%dT%H%M%S}-alert{alert.id}-{note.kind}-"
                f"{note.channel}{note.id}")
        try:
            where = deliver(alert, note.kind, note.channel, note.target, settings, name)
        except AlertDeliveryError as exc:
            finish_notification(engine, note.id, str(exc))
            result.failed.append(f"alert {alert.id} {note.kind} ({alert.summary}): {exc}")
            log.warning("alert %s %s via %s failed: %s", alert.id, note.kind, note.channel, exc)
        except Exception as exc:  # a bug in rendering: recorded, retried, never raised
            finish_notification(engine, note.id, f"{type(exc).__name__}: {exc}")
            result.failed.append(f"alert {alert.id} {note.kind}: {type(exc).__name__}: {exc}")
            log.exception("alert %s %s via %s failed", alert.id, note.kind, note.channel)
        else:
            finish_notification(engine, note.id, None)
            result.sent.append(f"alert {alert.id} {note.kind}: {where}")
    return result


# -- the scheduler's after-rollup hook ---------------------------------------------------
_settings: list[Settings] = []


def use_settings(settings: Settings) -> None:
    """The settings the after-rollup hook evaluates with (the scheduler sets them)."""
    _settings[:] = [settings]


def current_settings() -> Settings:
    """The settings the scheduler runs with (see :func:`use_settings`), else those of
    the environment and config file."""
    return _settings[0] if _settings else load_settings()


@after_rollup
def evaluate_after_rollup(engine: Engine, result: RollupResult) -> None:
    outcome = evaluate_alerts(engine, current_settings())
    if outcome.triggered or outcome.resolved or outcome.sent or outcome.failed:
        log.info("alerts: %d triggered, %d resolved, %d sent, %d failed",
                 len(outcome.triggered), len(outcome.resolved), len(outcome.sent),
                 len(outcome.failed))
