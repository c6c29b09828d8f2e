"""The database: schema, engine, migrations, the usage-event store, prices, costs,
rollups and reports.

Prices, rollups and reports are imported on first use (PEP 562), so an application
that only records usage (``import collector``) never loads the price data."""

from __future__ import annotations

from models.database import (
    begin_write,
    check_schema,
    create_db_engine,
    current_revision,
    head_revision,
    open_database,
    parse_database_url,
    redact,
    upgrade,
)
from models.event_store import EventStore
from models.events import ERROR_KINDS, TOKEN_FIELDS, UsageEvent, classify_error
from models.ids import uuid7
from models.schema import metadata, usage_events
from models.types import UTCDateTime

_LAZY = {
    "PriceBook": "models.pricing",
    "PriceRow": "models.pricing",
    "OrgPrice": "models.org_prices",
    "load_price_file": "models.price_file",
    "apply_prices": "models.price_file",
    "cost_of": "models.costs",
    "CostBreakdown": "models.costs",
    "RollupEngine": "models.rollups",
    "RollupResult": "models.rollups",
    "spend_report": "models.reports",
    "SpendRow": "models.reports",
    "Lease": "models.leases",
    # chargeback
    "AllocationConfig": "models.allocation_file",
    "load_allocation_file": "models.allocation_file",
    "allocate": "models.allocation",
    "largest_remainder": "models.allocation",
    "ChargebackReport": "models.chargeback",
    "chargeback_report": "models.chargeback",
    "apply_allocation": "models.chargeback",
    "focus_rows": "models.focus",
    "close_month": "models.months",
    "reopen_month": "models.months",
    "closed_months": "models.months",
    "post_corrections": "models.corrections",
    "fetch_billed_costs": "models.reconciliation",
    "month_drift": "models.reconciliation",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'models' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


__all__ = [
    "ERROR_KINDS",
    "TOKEN_FIELDS",
    "AllocationConfig",
    "ChargebackReport",
    "CostBreakdown",
    "EventStore",
    "Lease",
    "OrgPrice",
    "PriceBook",
    "PriceRow",
    "RollupEngine",
    "RollupResult",
    "SpendRow",
    "UTCDateTime",
    "UsageEvent",
    "allocate",
    "apply_allocation",
    "apply_prices",
    "begin_write",
    "chargeback_report",
    "check_schema",
    "classify_error",
    "close_month",
    "closed_months",
    "cost_of",
    "create_db_engine",
    "current_revision",
    "fetch_billed_costs",
    "focus_rows",
    "head_revision",
    "largest_remainder",
    "load_allocation_file",
    "load_price_file",
    "metadata",
    "month_drift",
    "open_database",
    "parse_database_url",
    "post_corrections",
    "redact",
    "reopen_month",
    "spend_report",
    "upgrade",
    "usage_events",
    "uuid7",
]
