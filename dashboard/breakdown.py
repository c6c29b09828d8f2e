"""The Costs page's numbers: spend per period and group, totals per group with
cost per 1,000 requests, tokens by kind, and what prompt caching saved.

Grouping or filtering by user reads ``rollup_daily_user`` (users are not a key of
``rollup_daily``); that table has no endpoint or service tier, so those filters do
not apply there (the page says so)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal

import pandas as pd
from sqlalchemy import Engine

from dashboard.app import PriceLookup
from dashboard.filters import DIMENSIONS, View
from dashboard.queries import (
    USER_COUNTS,
    add_money,
    aggregate,
    fold_periods,
    user_table,
)
from models.costs import Tokens, cache_savings
from models.schema import rollup_daily

__all__ = ["TOKEN_KINDS", "Breakdown", "spend_breakdown"]

#: Tokens by kind, as the chart stacks them (they add up to input + output).
TOKEN_KINDS = ("uncached input", "cached input", "cache writes", "output", "reasoning")
_DAILY_COUNTS = ("requests", "input_tokens", "cached_input_tokens", "cache_write_tokens",
                 "output_tokens", "reasoning_tokens", "unpriced_tokens")
_USER_ONLY = ("endpoint", "tier")


@dataclass
class Breakdown:
    """``series``: (period, key) spend; ``totals``: one row per key; ``tokens``: per
    period and kind; ``savings``: cache savings over the view (None when nothing
    could be priced); ``notes``: what the page should say about the view."""

    series: pd.DataFrame
    totals: pd.DataFrame
    tokens: pd.DataFrame
    savings: Decimal | None
    by: str
    notes: list[str] = field(default_factory=list)


def _records(frame: pd.DataFrame, columns: Sequence[str]) -> list[dict[str, object]]:
    """Rows as dicts of plain Python values (much faster than DataFrame.to_dict)."""
    lists = [frame[c].tolist() for c in columns]
    return [dict(zip(columns, values, strict=True)) for values in zip(*lists, strict=True)]


def _token_kinds(row: dict[str, object]) -> dict[str, int]:
    inp, cached = int(row["input_tokens"]), int(row["cached_input_tokens"])  # type: ignore[call-overload]
    writes = int(row.get("cache_write_tokens", 0))  # type: ignore[call-overload]
    out, reasoning = int(row["output_tokens"]), int(row["reasoning_tokens"])  # type: ignore[call-overload]
    return {"uncached input": max(inp - cached - writes, 0), "cached input": cached,
            "cache writes": writes, "output": max(out - reasoning, 0), "reasoning": reasoning}


def _savings(engine: Engine, view: View, prices: PriceLookup, use_users: bool,
             filters: dict[str, tuple[str, ...]]) -> Decimal | None:
    """Cached tokens x (input price - cached price), at the price actually paid (the
    contract where there is one), per UTC price day, model, tier and batch."""
    if use_users:
        table = user_table(engine)
        frame = aggregate(engine, keys=["day", "model"], start=view.start, end=view.end,
                          filters=filters, counts=("cached_input_tokens",), money=(),
                          table=table)  # type: ignore[arg-type]
        groups = [(r["day"], r["model"], "", False, 0, r["cached_input_tokens"])
                  for r in frame.to_dict("records")]
    else:
        frame = aggregate(engine, keys=["price_date", "model", "service_tier", "is_batch",
                                        "long_context"],
                          start=view.start, end=view.end, filters=filters,
                          counts=("cached_input_tokens",), money=())
        groups = [(r["price_date"], r["model"], r["service_tier"], bool(r["is_batch"]),
                   int(r["long_context"]), r["cached_input_tokens"])
                  for r in frame.to_dict("records")]
    total: Decimal | None = None
    for on, model, tier, batch, long_context, cached in groups:
        if not cached:
            continue
        price = (prices.contract_price(model, tier, batch, on, long_context)
                 or prices.list_price(model, tier, batch, on, long_context))
        if price is not None:
            saved = cache_savings(Tokens(cached_input_tokens=int(cached)), price)  # type: ignore[arg-type]
            total = add_money(total, saved)
    return total


def spend_breakdown(engine: Engine, view: View, prices: PriceLookup) -> Breakdown:
    notes: list[str] = []
    by = view.by
    filters = view.columns()
    use_users = by == "user" or "user" in filters
    table = rollup_daily
    counts: tuple[str, ...] = _DAILY_COUNTS
    if use_users:
        users = user_table(engine)
        if users is None:
            notes.append("Per-user figures need the per-user rollup (migration 0006): run "
                         "`spendwatch db upgrade` and `spendwatch rollup --rebuild`. "
                         "Showing models without the user filter.")
            use_users = False
            filters.pop("user", None)
            by = "model" if by == "user" else by
        else:
            table = users
            counts = tuple(c for c in USER_COUNTS if c != "errors")
            dropped = [p for p in _USER_ONLY if DIMENSIONS[p] in filters]
            for p in dropped:
                filters.pop(DIMENSIONS[p])
            if dropped:
                notes.append(f"The per-user rollup has no {' or '.join(dropped)}: those "
                             f"filters are not applied while grouping or filtering by user.")
    column = DIMENSIONS[by]
    daily = aggregate(engine, keys=["day", column], start=view.start, end=view.end,
                      filters=filters, counts=counts, money=("cost", "cost_list"), table=table)
    daily = daily.rename(columns={column: "key"})
    if "cache_write_tokens" not in daily.columns:
        daily["cache_write_tokens"] = 0
    series = fold_periods(daily, view.granularity, keys=["key"])

    sums = ("requests", "input_tokens", "cached_input_tokens", "cache_write_tokens",
            "output_tokens", "reasoning_tokens", "unpriced_tokens")
    per_key: dict[str, dict[str, object]] = {}
    per_period: dict[object, dict[str, int]] = {}
    for row in _records(series, ["period", "key", "cost", *sums]):
        acc = per_key.setdefault(row["key"], {**dict.fromkeys(sums, 0), "cost": None})  # type: ignore[arg-type]
        for c in sums:
            acc[c] += row[c]  # type: ignore[operator]
        acc["cost"] = add_money(acc["cost"], row["cost"])  # type: ignore[arg-type]
        kinds = per_period.setdefault(row["period"], dict.fromkeys(TOKEN_KINDS, 0))
        for kind, n in _token_kinds(row).items():
            kinds[kind] += n
    totals_rows = [{"key": key, **acc, "cost_per_1k_requests": (
        acc["cost"] * 1000 / acc["requests"]  # type: ignore[operator]
        if acc["cost"] is not None and acc["requests"] else None)}
        for key, acc in per_key.items()]
    totals_rows.sort(key=lambda r: (-(r["cost"] if r["cost"] is not None else Decimal(-1)),
                                    str(r["key"])))
    totals = pd.DataFrame(totals_rows, columns=["key", *sums, "cost", "cost_per_1k_requests"])
    for m in ("cost", "cost_per_1k_requests"):
        totals[m] = totals[m].astype(object)
    tokens = pd.DataFrame([{"period": period, "kind": k, "tokens": v}
                           for period in sorted(per_period)  # type: ignore[type-var]
                           for k, v in per_period[period].items()],
                          columns=["period", "kind", "tokens"])
    savings = _savings(engine, view, prices, use_users, filters)
    return Breakdown(series=series, totals=totals, tokens=tokens, savings=savings, by=by,
                     notes=notes)


def period_label(period: dt.date, granularity: str) -> str:
    if granularity == "week":
        return f"week of {period:%Y-%m-%d}"
    if granularity == "month":
        return f"{period:%Y-%m}"
    return f"{period:%Y-%m-%d}"
