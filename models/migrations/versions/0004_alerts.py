"""alerts tables: budgets, rules, their change history, alert states, notifications

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from models.types import Money, UTCDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "budgets",
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("scope", sa.JSON, nullable=False),
        sa.Column("scope_key", sa.String(500), nullable=False),
        sa.Column("period", sa.String(16), nullable=False),
        sa.Column("amount", Money(), nullable=False),
        sa.Column("cost_basis", sa.String(16), nullable=False),
        sa.Column("thresholds", sa.JSON, nullable=False),
        sa.Column("recipients", sa.JSON, nullable=False),
        sa.Column("webhooks", sa.JSON, nullable=False),
        sa.Column("mode", sa.String(16), nullable=False),
        sa.Column("downgrade", sa.JSON, nullable=False),
        sa.Column("active", sa.Boolean, nullable=False),
        sa.Column("source", sa.String(500)),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
    )
    op.create_table(
        "alert_rules",
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("params", sa.JSON, nullable=False),
        sa.Column("recipients", sa.JSON, nullable=False),
        sa.Column("webhooks", sa.JSON, nullable=False),
        sa.Column("active", sa.Boolean, nullable=False),
        sa.Column("source", sa.String(500)),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
    )
    op.create_table(
        "budget_changes",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("changed_at", UTCDateTime(), nullable=False),
        sa.Column("before", sa.JSON),
        sa.Column("after", sa.JSON),
        sa.Column("source", sa.String(500)),
    )
    op.create_index("ix_budget_changes_name", "budget_changes", ["kind", "name"])
    op.create_table(
        "alert_states",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("rule", sa.String(250), nullable=False),
        sa.Column("scope", sa.String(500), nullable=False),
        sa.Column("threshold", sa.String(32), nullable=False),
        sa.Column("period", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("summary", sa.Text, nullable=False),
        sa.Column("value", Money()),
        sa.Column("limit_value", Money()),
        sa.Column("details", sa.JSON),
        sa.Column("triggered_at", UTCDateTime(), nullable=False),
        sa.Column("resolved_at", UTCDateTime()),
        sa.UniqueConstraint("rule", "scope", "threshold", "period",
                            name="uq_alert_states_key"),
    )
    op.create_index("ix_alert_states_triggered_at", "alert_states", ["triggered_at"])
    op.create_table(
        "alert_notifications",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("alert_id", sa.Integer, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("target", sa.String(1000), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("last_error", sa.Text),
        sa.Column("claimed_by", sa.String(300)),
        sa.Column("claimed_until", UTCDateTime()),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("sent_at", UTCDateTime()),
        sa.UniqueConstraint("alert_id", "kind", "channel", "target",
                            name="uq_alert_notifications_key"),
    )
    op.create_index("ix_alert_notifications_status", "alert_notifications", ["status"])


def downgrade() -> None:
    op.drop_table("alert_notifications")
    op.drop_table("alert_states")
    op.drop_table("budget_changes")
    op.drop_table("alert_rules")
    op.drop_table("budgets")
