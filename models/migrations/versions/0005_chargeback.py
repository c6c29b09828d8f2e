"""chargeback tables: month close and its snapshot, corrections, allocation files,
billed costs from OpenAI's Costs API

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from models.types import Money, UTCDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_COUNTS = ("requests", "errors", "input_tokens", "cached_input_tokens", "cache_write_tokens",
           "output_tokens", "reasoning_tokens", "audio_input_tokens", "audio_output_tokens",
           "unpriced_tokens")
_KEYS = ("day", "price_date", "model", "service_tier", "is_batch", "endpoint", "team",
         "project")


def _tag_keys() -> list[sa.Column]:
    return [sa.Column("model", sa.String(200), nullable=False),
            sa.Column("service_tier", sa.String(32), nullable=False),
            sa.Column("is_batch", sa.Boolean, nullable=False),
            sa.Column("endpoint", sa.String(64), nullable=False),
            sa.Column("team", sa.String(200), nullable=False),
            sa.Column("project", sa.String(200), nullable=False)]


def _measures() -> list[sa.Column]:
    return [*(sa.Column(name, sa.BigInteger, nullable=False) for name in _COUNTS),
            sa.Column("cost_list", Money()), sa.Column("cost_contract", Money()),
            sa.Column("prices", sa.Text)]


def upgrade() -> None:
    op.create_table(
        "month_closes",
        sa.Column("month", sa.Date, primary_key=True),
        sa.Column("closed_at", UTCDateTime(), nullable=False),
        sa.Column("closed_by", sa.String(200), nullable=False),
        sa.Column("checked_at", UTCDateTime()),
        sa.Column("checked_prices", sa.String(300)),
    )
    op.create_table(
        "month_close_log",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("month", sa.Date, nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("by", sa.String(200), nullable=False),
        sa.Column("reason", sa.Text),
    )
    op.create_table(
        "chargeback_snapshot",
        sa.Column("month", sa.Date, nullable=False),
        sa.Column("day", sa.Date, nullable=False),
        sa.Column("price_date", sa.Date, nullable=False),
        *_tag_keys(),
        *_measures(),
        sa.PrimaryKeyConstraint("month", *_KEYS, name="pk_chargeback_snapshot"),
    )
    op.create_table(
        "chargeback_corrections",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("source_month", sa.Date, nullable=False),
        sa.Column("target_month", sa.Date, nullable=False),
        sa.Column("price_date", sa.Date, nullable=False),
        *_tag_keys(),
        *_measures(),
        sa.Column("posted_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_chargeback_corrections_target", "chargeback_corrections",
                    ["target_month"])
    op.create_table(
        "allocation_files",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("source", sa.String(500), nullable=False),
        sa.Column("content", sa.Text, nullable=False),
        sa.Column("applied_at", UTCDateTime(), nullable=False),
    )
    op.create_table(
        "billed_costs",
        sa.Column("day", sa.Date, nullable=False),
        sa.Column("openai_project_id", sa.String(200), nullable=False),
        sa.Column("line_item", sa.String(300), nullable=False),
        sa.Column("amount", Money(), nullable=False),
        sa.Column("currency", sa.String(8), nullable=False),
        sa.Column("fetched_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("day", "openai_project_id", "line_item",
                                name="pk_billed_costs"),
    )
    op.create_table(
        "reconcile_runs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("started_at", UTCDateTime(), nullable=False),
        sa.Column("since", sa.Date, nullable=False),
        sa.Column("until", sa.Date, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("rows", sa.Integer, nullable=False),
        sa.Column("message", sa.Text),
    )


def downgrade() -> None:
    for name in ("reconcile_runs", "billed_costs", "allocation_files",
                 "chargeback_corrections", "chargeback_snapshot", "month_close_log",
                 "month_closes"):
        op.drop_table(name)
