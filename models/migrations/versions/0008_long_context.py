"""long_context key on rollup and chargeback rows

A long-context rate applies per request, so rollup rows keep the requests whose input
exceeded a threshold apart (``models.long_context``). Existing rows get 0 (below
every threshold), which is how they were priced; `spendwatch reprice --since DATE`
re-aggregates open days with the new key.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_TAGS = ("model", "service_tier", "is_batch")
_REST = ("endpoint", "team", "project")
#: table -> (primary key name, leading key columns); None: no primary key to widen
_TABLES: dict[str, tuple[str, tuple[str, ...]] | None] = {
    "rollup_daily": ("pk_rollup_daily", ("day", "price_date")),
    "rollup_monthly": ("pk_rollup_monthly", ("month",)),
    "chargeback_snapshot": ("pk_chargeback_snapshot", ("month", "day", "price_date")),
    "chargeback_corrections": None,
}


def upgrade() -> None:
    for table, pk in _TABLES.items():
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column(
                "long_context", sa.BigInteger, nullable=False, server_default="0",
                comment="the input-token threshold its requests exceeded, 0 for none"))
            if pk is not None:
                name, lead = pk
                batch.drop_constraint(name, type_="primary")
                batch.create_primary_key(name, [*lead, *_TAGS, "long_context", *_REST])


def downgrade() -> None:
    for table, pk in _TABLES.items():
        with op.batch_alter_table(table) as batch:
            if pk is not None:
                name, lead = pk
                batch.drop_constraint(name, type_="primary")
                batch.create_primary_key(name, [*lead, *_TAGS, *_REST])
            batch.drop_column("long_context")
