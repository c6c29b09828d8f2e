"""How two sets of genai-prices data differ for OpenAI: today's list prices by model
and tier, and the first UTC day on which usage would be priced differently (what
``spendwatch reprice --since`` must cover). Used by ``spendwatch prices update``."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal

from genai_prices import types as gp

from models.price_library import openai_models
from models.pricing import PriceBook, PriceRow
from models.schema import PRICE_COLUMNS

__all__ = ["LibraryChanges", "ModelChange", "first_affected_day", "library_changes",
           "start_dates"]

#: (service_tier, is_batch) of each rate compared
_RATES = (("default", False), ("flex", False), ("priority", False), (None, True))


@dataclass(frozen=True)
class ModelChange:
    """Today's list price of one OpenAI model at one rate, before and after."""

    model: str
    tier: str
    old: PriceRow | None
    new: PriceRow | None

    @property
    def fields(self) -> list[tuple[str, Decimal | None, Decimal | None]]:
        """(price column, old, new) of each price that differs."""
        return [(name, _get(self.old, name), _get(self.new, name)) for name in PRICE_COLUMNS
                if _get(self.old, name) != _get(self.new, name)]


@dataclass(frozen=True)
class LibraryChanges:
    changed: list[ModelChange]
    added: list[str]
    removed: list[str]

    @property
    def any(self) -> bool:
        return bool(self.changed or self.added or self.removed)


def library_changes(old: Sequence[gp.Provider], new: Sequence[gp.Provider],
                    on: dt.date) -> LibraryChanges:
    """OpenAI models whose list price on UTC day ``on`` differs, by rate; and models
    only in ``new`` (added) or only in ``old`` (removed)."""
    old_ids = {m.id for m in openai_models(old)}
    new_ids = {m.id for m in openai_models(new)}
    before, after = PriceBook(library=old), PriceBook(library=new)
    bands = _bands(before, after)
    changed: list[ModelChange] = []
    for model in sorted(old_ids & new_ids):
        for tier, batch in _RATES:
            for band in bands:
                a = before.list_price(model, tier, batch, on, band)
                b = after.list_price(model, tier, batch, on, band)
                if _prices(a) != _prices(b):
                    label = "batch" if batch else str(tier)
                    if band:
                        label += f", input over {band:,} tokens"
                    changed.append(ModelChange(model, label, a, b))
    return LibraryChanges(changed, sorted(new_ids - old_ids), sorted(old_ids - new_ids))


def start_dates(*libraries: Sequence[gp.Provider]) -> set[dt.date]:
    """Every day on which some OpenAI price of ``libraries`` starts or changes."""
    days: set[dt.date] = set()
    for providers in libraries:
        for info in openai_models(providers):
            conditions = [] if isinstance(info.prices, gp.ModelPrice) else info.prices
            for item in (*conditions, *(info.price_variants or ())):
                if isinstance(item.constraint, gp.StartDateConstraint):
                    days.add(item.constraint.start_date)
    return days


def first_affected_day(before: PriceBook, after: PriceBook,
                       seen: Iterable[tuple[str, str | None, bool, dt.date]],
                       boundaries: Iterable[dt.date], today: dt.date) -> dt.date | None:
    """The first UTC day, among the days of ``seen`` usage ((model, service_tier,
    is_batch, first UTC day used)), on which ``before`` and ``after`` give a different
    list price; None if none does. Prices only change on ``boundaries``, so each
    combination is compared on its first day and on every boundary after it."""
    days = sorted(d for d in set(boundaries) if d <= today)
    bands = _bands(before, after)
    best: dt.date | None = None
    for model, tier, batch, first in seen:
        for day in (first, *(d for d in days if first < d)):
            if best is not None and day >= best:
                break
            if any(_prices(before.list_price(model, tier, batch, day, band))
                   != _prices(after.list_price(model, tier, batch, day, band))
                   for band in bands):
                best = day
                break
    return best


def _bands(*books: PriceBook) -> tuple[int, ...]:
    """0 and every long-context threshold of ``books``: a rate can change in each."""
    return (0, *sorted({t for book in books for t in book.context_thresholds}))


def _get(row: PriceRow | None, name: str) -> Decimal | None:
    return None if row is None else getattr(row, name)


def _prices(row: PriceRow | None) -> tuple[Decimal | None, ...] | None:
    return None if row is None else tuple(getattr(row, name) for name in PRICE_COLUMNS)
