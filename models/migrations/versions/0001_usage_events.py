"""usage events

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from models.types import UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "usage_events",
        sa.Column("id", sa.Uuid(as_uuid=True), primary_key=True),
        sa.Column("ts", UTCDateTime(), nullable=False),
        sa.Column("ingested_at", UTCDateTime(), nullable=False),
        sa.Column("provider", sa.String(100), nullable=False),
        sa.Column("endpoint", sa.String(64), nullable=False),
        sa.Column("model_requested", sa.String(200)),
        sa.Column("model", sa.String(200)),
        sa.Column("service_tier", sa.String(32)),
        sa.Column("is_batch", sa.Boolean, nullable=False),
        sa.Column("streamed", sa.Boolean, nullable=False),
        sa.Column("usage_reported", sa.Boolean, nullable=False),
        sa.Column("input_tokens", sa.BigInteger),
        sa.Column("cached_input_tokens", sa.BigInteger),
        sa.Column("cache_write_tokens", sa.BigInteger),
        sa.Column("output_tokens", sa.BigInteger),
        sa.Column("reasoning_tokens", sa.BigInteger),
        sa.Column("audio_input_tokens", sa.BigInteger),
        sa.Column("audio_output_tokens", sa.BigInteger),
        sa.Column("latency_ms", sa.Float),
        sa.Column("ttft_ms", sa.Float),
        sa.Column("status_code", sa.Integer),
        sa.Column("error_class", sa.String(100)),
        sa.Column("error_kind", sa.String(16)),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("request_id", sa.String(128)),
        sa.Column("team", sa.String(200)),
        sa.Column("project", sa.String(200)),
        sa.Column("user", sa.String(200)),
        sa.Column("feature", sa.String(200)),
        sa.Column("environment", sa.String(200)),
        sa.Column("tags", sa.JSON),
    )
    op.create_index("ix_usage_events_ts", "usage_events", ["ts"])
    op.create_index("ix_usage_events_ingested_at", "usage_events", ["ingested_at"])


def downgrade() -> None:
    op.drop_index("ix_usage_events_ingested_at", "usage_events")
    op.drop_index("ix_usage_events_ts", "usage_events")
    op.drop_table("usage_events")
