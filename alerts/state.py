"""Alert state in the database: exactly one message per crossing.

* An alert is a row of ``alert_states`` keyed by (rule, scope, threshold, period)
  under a UNIQUE constraint. Evaluators *insert first* (``ON CONFLICT DO NOTHING``):
  only the one whose insert created the row also creates its notification rows, in
  the same transaction. Two schedulers, a restart, a re-run: the row exists, nothing
  new is queued.
* A notification (alert x triggered|resolved x channel target) is *claimed* before it
  is sent: a conditional UPDATE that succeeds for one process only and holds the row
  for :data:`CLAIM_SECONDS`. Sent -> ``sent``; failed -> ``failed`` with the error,
  retried by the next run (other notifications are not held up).
* Reliability rules have episodes: the period is ``<local day>#<n>``; a triggered row
  moves to ``resolved`` (a conditional UPDATE, so once) and a resolved notice is
  queued; the next episode gets the next ``n``.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from sqlalchemy import Connection, Engine, and_, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from models.database import begin_write
from models.schema import alert_notifications, alert_states

__all__ = ["CLAIM_SECONDS", "AlertRecord", "Condition", "Notification", "alert_history",
           "claim_notification", "finish_notification", "open_alert", "open_episodes",
           "pending_notifications", "resolve_alert"]

UTC = dt.UTC
CLAIM_SECONDS = 120
HOLDER = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass
class Condition:
    """Something an evaluation found true now (a threshold crossed, a rule firing)."""

    rule: str  # budget:<name> | rule:<name>
    scope: str
    threshold: str
    period: str | None  # None: an episodic (reliability) rule
    summary: str
    value: Decimal | None
    limit: Decimal | None
    details: dict[str, object]
    recipients: Sequence[str] = ()
    webhooks: Sequence[str] = ()
    severity: str = "warning"
    notify: bool = True  # False: superseded by a higher threshold in the same run

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.rule, self.scope, self.threshold)


@dataclass(frozen=True)
class Notification:
    id: int
    alert_id: int
    kind: str
    channel: str
    target: str
    status: str
    attempts: int
    last_error: str | None
    sent_at: dt.datetime | None


@dataclass
class AlertRecord:
    id: int
    rule: str
    scope: str
    threshold: str
    period: str
    status: str
    severity: str
    summary: str
    value: Decimal | None
    limit_value: Decimal | None
    details: dict[str, object]
    triggered_at: dt.datetime
    resolved_at: dt.datetime | None
    notifications: list[Notification] = field(default_factory=list)


def _insert(conn: Connection, table: object) -> object:
    module = postgresql if conn.dialect.name == "postgresql" else sqlite
    return module.insert(table)  # type: ignore[arg-type]


def _targets(cond: Condition, default_webhook: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    if cond.recipients:
        out.append(("email", ",".join(cond.recipients)[:1000]))
    hooks = list(cond.webhooks) + ([default_webhook] if default_webhook else [])
    out += [("webhook", url[:1000]) for url in dict.fromkeys(hooks)]
    return out


def _queue(conn: Connection, alert_id: int, kind: str, targets: list[tuple[str, str]],
           now: dt.datetime) -> None:
    for channel, target in targets:
        stmt = _insert(conn, alert_notifications).values(  # type: ignore[attr-defined]
            alert_id=alert_id, kind=kind, channel=channel, target=target, status="pending",
            attempts=0, created_at=now).on_conflict_do_nothing(
            index_elements=["alert_id", "kind", "channel", "target"])
        conn.execute(stmt)


def open_alert(conn: Connection, cond: Condition, now: dt.datetime, *,
               default_webhook: str = "", local_day: str = "") -> int | None:
    """Insert the alert of ``cond`` unless it exists; the id when this call created it
    (its notifications are queued in the same transaction), else None."""
    period = cond.period
    if period is None:  # episodic: nothing while an episode is open
        key = (alert_states.c.rule == cond.rule, alert_states.c.scope == cond.scope,
               alert_states.c.threshold == cond.threshold)
        if conn.execute(select(alert_states.c.id).where(
                *key, alert_states.c.status == "triggered")).first() is not None:
            return None
        n = conn.execute(select(func.count()).select_from(alert_states).where(
            *key, alert_states.c.period.like(f"{local_day}#%"))).scalar_one()
        period = f"{local_day}#{n + 1}"
    stmt = _insert(conn, alert_states).values(  # type: ignore[attr-defined]
        rule=cond.rule[:250], scope=cond.scope[:500], threshold=cond.threshold[:32],
        period=period, status="triggered", severity=cond.severity, summary=cond.summary,
        value=cond.value, limit_value=cond.limit, details=cond.details, triggered_at=now,
    ).on_conflict_do_nothing(index_elements=["rule", "scope", "threshold", "period"]
                             ).returning(alert_states.c.id)
    alert_id = conn.execute(stmt).scalar()
    if alert_id is None:  # another evaluator (or an earlier run) has it
        return None
    if cond.notify:
        _queue(conn, alert_id, "triggered", _targets(cond, default_webhook), now)
    return int(alert_id)


def open_episodes(conn: Connection, rules: Sequence[str]) -> list[AlertRecord]:
    """Triggered alerts of the given (episodic) rules."""
    if not rules:
        return []
    rows = conn.execute(select(alert_states).where(alert_states.c.rule.in_(list(rules)),
                                                   alert_states.c.status == "triggered"))
    return [_record(r) for r in rows]


def resolve_alert(conn: Connection, alert: AlertRecord, now: dt.datetime,
                  recipients: Sequence[str], webhooks: Sequence[str],
                  default_webhook: str = "") -> bool:
    """Move a triggered alert to resolved (once) and queue its resolved notice."""
    done = conn.execute(update(alert_states).where(
        alert_states.c.id == alert.id, alert_states.c.status == "triggered").values(
        status="resolved", resolved_at=now)).rowcount == 1
    if done:
        cond = Condition(alert.rule, alert.scope, alert.threshold, alert.period, alert.summary,
                         None, None, {}, recipients, webhooks)
        _queue(conn, alert.id, "resolved", _targets(cond, default_webhook), now)
    return done


def pending_notifications(engine: Engine) -> list[int]:
    """Ids of notifications not sent yet (pending, or failed and to be retried)."""
    with engine.connect() as conn:
        return list(conn.execute(select(alert_notifications.c.id).where(
            alert_notifications.c.status.in_(("pending", "failed"))).order_by(
            alert_notifications.c.id)).scalars())


def claim_notification(engine: Engine, notification_id: int,
                       holder: str = HOLDER) -> tuple[Notification, AlertRecord] | None:
    """Take ``notification_id`` for sending; None when another process has it or it
    was sent meanwhile."""
    now = dt.datetime.now(UTC)
    with begin_write(engine) as conn:
        claimed = conn.execute(update(alert_notifications).where(
            alert_notifications.c.id == notification_id,
            alert_notifications.c.status.in_(("pending", "failed")),
            or_(alert_notifications.c.claimed_until.is_(None),
                alert_notifications.c.claimed_until < now)).values(
            claimed_by=holder[:300], claimed_until=now + dt.timedelta(seconds=CLAIM_SECONDS),
            attempts=alert_notifications.c.attempts + 1)).rowcount == 1
        if not claimed:
            return None
        n = conn.execute(select(alert_notifications).where(
            alert_notifications.c.id == notification_id)).one()
        alert = conn.execute(select(alert_states).where(
            alert_states.c.id == n.alert_id)).one()
    return _notification(n), _record(alert)


def finish_notification(engine: Engine, notification_id: int, error: str | None,
                        holder: str = HOLDER) -> None:
    """Record the outcome of a claimed notification."""
    now = dt.datetime.now(UTC)
    values: dict[str, object] = {"claimed_until": None, "last_error": error and error[:2000]}
    values.update({"status": "sent", "sent_at": now} if error is None else {"status": "failed"})
    with begin_write(engine) as conn:
        conn.execute(update(alert_notifications).where(and_(
            alert_notifications.c.id == notification_id,
            alert_notifications.c.claimed_by == holder[:300])).values(**values))


def alert_history(engine: Engine, limit: int = 100) -> list[AlertRecord]:
    """The latest ``limit`` alerts, newest first, each with its notifications."""
    with engine.connect() as conn:
        rows = list(conn.execute(select(alert_states).order_by(
            alert_states.c.triggered_at.desc(), alert_states.c.id.desc()).limit(limit)))
        records = [_record(r) for r in rows]
        by_id = {a.id: a for a in records}
        if by_id:
            for n in conn.execute(select(alert_notifications).where(
                    alert_notifications.c.alert_id.in_(list(by_id))).order_by(
                    alert_notifications.c.id)):
                by_id[n.alert_id].notifications.append(_notification(n))
    return records


def _record(r: object) -> AlertRecord:
    m = r._mapping  # type: ignore[attr-defined]
    return AlertRecord(m["id"], m["rule"], m["scope"], m["threshold"], m["period"], m["status"],
                       m["severity"], m["summary"], m["value"], m["limit_value"],
                       dict(m["details"] or {}), m["triggered_at"], m["resolved_at"])


def _notification(r: object) -> Notification:
    m = r._mapping  # type: ignore[attr-defined]
    return Notification(m["id"], m["alert_id"], m["kind"], m["channel"], m["target"],
                        m["status"], m["attempts"], m["last_error"], m["sent_at"])
