"""Fixed price books for tests: what ``RollupEngine``, the dashboard and enforcement
ask of ``models.pricing.PriceBook`` (``list_price``/``contract_price``), answered
from a literal table so each test states its prices."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal


@dataclass(frozen=True)
class Price:
    ref: str
    input_per_mtok: Decimal
    output_per_mtok: Decimal
    cached_input_per_mtok: Decimal | None = None
    cache_write_per_mtok: Decimal | None = None
    audio_input_per_mtok: Decimal | None = None
    audio_output_per_mtok: Decimal | None = None


class FixedBook:
    """List prices by model (any tier, batch or day); no contracts, so contract cost
    is list cost. A model not in ``PRICES`` is unpriced."""

    PRICES: dict[str, Price] = {}

    context_thresholds: tuple[int, ...] = ()

    def list_price(self, model, tier, batch, on, long_context=0):
        return self.PRICES.get(model)

    def contract_price(self, model, tier, batch, on, long_context=0):
        return None
