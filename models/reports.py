"""Spend reports, read from rollups (never from raw events)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from sqlalchemy import Engine, select

from models.schema import rollup_daily, rollup_monthly
from spendwatch.errors import ConfigurationError

__all__ = ["DIMENSIONS", "SpendRow", "parse_day", "spend_report"]

#: What a report can group by.
#: ``long_context`` is the input-token threshold a row's requests exceeded (0: none).
DIMENSIONS = ("model", "team", "project", "endpoint", "service_tier", "long_context")
_TOKENS = ("input_tokens", "cached_input_tokens", "cache_write_tokens", "output_tokens",
           "reasoning_tokens", "unpriced_tokens")
_ERRORS = ("errors_rate_limit", "errors_client", "errors_server", "errors_network",
           "errors_other")


def parse_day(text: str, what: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise ConfigurationError(f"{what} {text!r} is not a date; use YYYY-MM-DD, "
                                 f"e.g. 2026-03-01") from None


@dataclass
class SpendRow:
    period: dt.date
    keys: dict[str, str | int]
    requests: int = 0
    errors: int = 0
    tokens: dict[str, int] = field(default_factory=lambda: dict.fromkeys(_TOKENS, 0))
    cost_list: Decimal | None = None
    cost_contract: Decimal | None = None

    @property
    def unpriced(self) -> bool:
        return self.tokens["unpriced_tokens"] > 0


def spend_report(engine: Engine, *, by: Sequence[str], period: str, since: dt.date,
                 until: dt.date) -> list[SpendRow]:
    """Spend per ``period`` ("day" or "month") and the ``by`` dimensions, for the
    local days ``since``..``until`` (inclusive)."""
    unknown = [d for d in by if d not in DIMENSIONS]
    if unknown:
        raise ConfigurationError(f"cannot group by {', '.join(unknown)}; choose from "
                                 f"{', '.join(DIMENSIONS)}")
    if since > until:
        raise ConfigurationError(f"--since {since} is after --until {until}; swap them")
    if period == "day":
        table, when = rollup_daily, rollup_daily.c.day
        lo, hi = since, until
    elif period == "month":
        table, when = rollup_monthly, rollup_monthly.c.month
        lo, hi = since.replace(day=1), until.replace(day=1)
    else:
        raise ConfigurationError(f"--period {period!r}: use day or month")
    cols = [when.label("period"), *(table.c[d] for d in by), table.c.requests,
            *(table.c[c] for c in _ERRORS), *(table.c[t] for t in _TOKENS),
            table.c.cost_list, table.c.cost_contract]
    query = select(*cols).where(when >= lo, when <= hi)
    groups: dict[tuple[object, ...], SpendRow] = {}
    with engine.connect() as conn:
        for r in conn.execute(query):
            m = r._mapping
            key = (m["period"], *(m[d] for d in by))
            row = groups.get(key)
            if row is None:
                row = groups[key] = SpendRow(period=m["period"],
                                             keys={d: m[d] for d in by})
            row.requests += m["requests"]
            row.errors += sum(m[c] for c in _ERRORS)
            for t in _TOKENS:
                row.tokens[t] += m[t]
            for name in ("cost_list", "cost_contract"):
                if m[name] is not None:
                    current = getattr(row, name)
                    setattr(row, name, (current or Decimal(0)) + m[name])
    return sorted(groups.values(), key=lambda r: (r.period, -(r.cost_contract or 0),
                                                  tuple(r.keys.values())))
