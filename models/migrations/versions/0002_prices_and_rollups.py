"""organisation prices, daily and monthly rollups, rollup state

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from models.types import Money, UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_PRICES = ("input_per_mtok", "cached_input_per_mtok", "cache_write_per_mtok",
           "output_per_mtok", "audio_input_per_mtok", "audio_output_per_mtok")
_SUMS = ("requests", "errors_rate_limit", "errors_client", "errors_server", "errors_network",
         "errors_other", "streamed", "retries", "usage_missing", "input_tokens",
         "cached_input_tokens", "cache_write_tokens", "output_tokens", "reasoning_tokens",
         "audio_input_tokens", "audio_output_tokens", "latency_count", "latency_sum_ms",
         "ttft_count", "ttft_sum_ms",
         *(f"lat_{i:02d}" for i in range(20)), *(f"ttft_{i:02d}" for i in range(20)))


def _measures() -> list[sa.Column]:
    cols = [sa.Column(name, sa.Float if name.endswith("_sum_ms") else sa.BigInteger,
                      nullable=False) for name in _SUMS]
    return [*cols,
            sa.Column("cost_list", Money()), sa.Column("cost_contract", Money()),
            sa.Column("price_ref", sa.String(300)), sa.Column("contract_ref", sa.String(300)),
            sa.Column("unpriced_tokens", sa.BigInteger, nullable=False)]


def _tag_keys() -> list[sa.Column]:
    return [sa.Column("model", sa.String(200), nullable=False),
            sa.Column("service_tier", sa.String(32), nullable=False),
            sa.Column("is_batch", sa.Boolean, nullable=False),
            sa.Column("endpoint", sa.String(64), nullable=False),
            sa.Column("team", sa.String(200), nullable=False),
            sa.Column("project", sa.String(200), nullable=False)]


def upgrade() -> None:
    op.create_table(
        "org_prices",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("service_tier", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("effective_from", sa.Date, nullable=False),
        *(sa.Column(name, Money()) for name in _PRICES),
        sa.Column("note", sa.Text),
        sa.Column("source", sa.String(500)),
        sa.Column("applied_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("model", "service_tier", "kind", "effective_from",
                            name="uq_org_prices_row"),
    )
    op.create_table(
        "rollup_daily",
        sa.Column("day", sa.Date, nullable=False),
        sa.Column("price_date", sa.Date, nullable=False),
        *_tag_keys(),
        *_measures(),
        sa.PrimaryKeyConstraint("day", "price_date", "model", "service_tier", "is_batch",
                                "endpoint", "team", "project", name="pk_rollup_daily"),
    )
    op.create_table(
        "rollup_monthly",
        sa.Column("month", sa.Date, nullable=False),
        *_tag_keys(),
        *_measures(),
        sa.PrimaryKeyConstraint("month", "model", "service_tier", "is_batch", "endpoint",
                                "team", "project", name="pk_rollup_monthly"),
    )
    op.create_table(
        "rollup_state",
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("rollup_state")
    op.drop_table("rollup_monthly")
    op.drop_table("rollup_daily")
    op.drop_table("org_prices")
