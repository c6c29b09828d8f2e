"""daily spend per user

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from models.types import Money

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_COUNTS = ("requests", "errors", "input_tokens", "cached_input_tokens", "output_tokens",
           "reasoning_tokens")


def upgrade() -> None:
    op.create_table(
        "rollup_daily_user",
        sa.Column("day", sa.Date, nullable=False),
        sa.Column("user", sa.String(200), nullable=False),
        sa.Column("team", sa.String(200), nullable=False),
        sa.Column("project", sa.String(200), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        *(sa.Column(name, sa.BigInteger, nullable=False) for name in _COUNTS),
        sa.Column("cost_list", Money()),
        sa.Column("cost_contract", Money()),
        sa.Column("unpriced_tokens", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("day", "user", "team", "project", "model",
                                name="pk_rollup_daily_user"),
    )


def downgrade() -> None:
    op.drop_table("rollup_daily_user")
