"""Reading prices out of the ``genai-prices`` data: the base price in force on a day,
the service-tier and batch variants on top of it, and how a model name matched.
Used by :mod:`models.pricing`."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from decimal import Decimal

from genai_prices import types as gp

__all__ = ["all_prices", "base_price", "clean", "describe_match", "openai_provider",
           "variants"]


def openai_provider(providers: Sequence[gp.Provider]) -> gp.Provider | None:
    """The OpenAI provider of ``providers``, if there is one."""
    return next((p for p in providers if p.id == "openai"), None)


def all_prices(info: gp.ModelInfo) -> list[gp.ModelPrice]:
    """Every price of ``info``: standard ones of every date, and every variant."""
    found = [info.prices] if isinstance(info.prices, gp.ModelPrice) else [
        cond.prices for cond in info.prices]
    return found + [variant.prices for variant in info.price_variants or ()]


def base_price(info: gp.ModelInfo, on: dt.date) -> tuple[gp.ModelPrice, dt.date | None, str]:
    """The standard price on ``on``: the conditional price with the latest start date
    on or before it (the first one when ``on`` precedes them all, as the library does)."""
    if isinstance(info.prices, gp.ModelPrice):
        return info.prices, None, "standard price (no start date)"
    best: tuple[dt.date, gp.ModelPrice] | None = None
    for cond in info.prices:
        constraint = cond.constraint
        if constraint is None:
            start = dt.date.min
        elif isinstance(constraint, gp.StartDateConstraint):
            start = constraint.start_date
        else:
            continue  # time-of-day prices cannot apply to a whole day
        if start <= on and (best is None or start >= best[0]):
            best = (start, cond.prices)
    if best is None:
        first = info.prices[0]
        return first.prices, None, f"its first listed price ({on.isoformat()} precedes them all)"
    if best[0] == dt.date.min:
        return best[1], None, "standard price (no start date)"
    return best[1], best[0], f"standard price from {best[0].isoformat()}"


def variants(info: gp.ModelInfo, context: dict[str, str], on: dt.date
              ) -> tuple[list[tuple[dt.date | None, gp.ModelPrice]], list[dt.date]]:
    """(active, later): variants for ``context`` in effect on ``on``, latest start
    first; and the start dates of those that begin after ``on``."""
    active: list[tuple[dt.date | None, gp.ModelPrice]] = []
    later: list[dt.date] = []
    for variant in info.price_variants or ():
        if any(context.get(k) != v for k, v in variant.when.items()):
            continue
        constraint = variant.constraint
        if constraint is None:
            active.append((None, variant.prices))
        elif isinstance(constraint, gp.StartDateConstraint):
            if constraint.start_date <= on:
                active.append((constraint.start_date, variant.prices))
            else:
                later.append(constraint.start_date)
    active.sort(key=lambda item: item[0] or dt.date.min, reverse=True)
    return active, later


def describe_match(info: gp.ModelInfo, model: str) -> str:
    ref = model.lower()
    if not info.is_match(ref):
        return "matched after reading its compact date suffix as YYYY-MM-DD"
    return _describe_clause(info.match, ref)


def _describe_clause(clause: gp.MatchLogic, ref: str) -> str:
    if isinstance(clause, gp.ClauseOr):
        hit = next((c for c in clause.or_ if c.is_match(ref)), None)
        return _describe_clause(hit, ref) if hit is not None else "matched"
    if isinstance(clause, gp.ClauseAnd):
        return " and ".join(_describe_clause(c, ref) for c in clause.and_)
    for attr in ("equals", "starts_with", "ends_with", "contains", "regex"):
        if hasattr(clause, attr):
            return f"{attr.replace('_', ' ')} {getattr(clause, attr)!r}"
    return "matched"  # pragma: no cover - every clause kind is handled above


def clean(value: Decimal) -> Decimal:
    """``value`` without trailing zeros (NUMERIC(38, 18) pads them) and no exponent."""
    value = value.normalize()
    return value.quantize(Decimal(1)) if value.as_tuple().exponent > 0 else value  # type: ignore[operator]
