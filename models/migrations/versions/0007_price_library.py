"""genai-prices data fetched by `spendwatch prices update`

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from models.types import UTCDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "price_library",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("fetched_at", UTCDateTime(), nullable=False),
        sa.Column("source_url", sa.String(2000), nullable=False),
        sa.Column("content", sa.Text, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("openai_models", sa.Integer, nullable=False),
        sa.Column("in_use", sa.Boolean, nullable=False),
        sa.UniqueConstraint("sha256", name="uq_price_library_sha256"),
    )


def downgrade() -> None:
    op.drop_table("price_library")
