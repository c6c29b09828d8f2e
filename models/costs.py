"""Usage to cost: a pure function of (token counts, price row). Decimal throughout.

    cost = uncached input   x input price
         + cached input     x cached-input price   (the input price if none is listed)
         + cache writes     x cache-write price    (the input price if none is listed)
         + text output      x output price         (reasoning tokens are inside output:
                                                     never added again)
         + audio in / out   x audio prices         (only when the row has audio prices;
                                                     otherwise they bill as text)

``input`` includes cached, cache-write and audio input tokens, as OpenAI reports
it; the uncached part is what is left. Prices are per million tokens, and the rate
is the one of the tier actually served (the caller picks the row).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol

__all__ = ["MILLION", "CostBreakdown", "PriceLike", "TokenCounts", "Tokens", "cache_savings",
           "cost_of"]

MILLION = Decimal(1_000_000)
_ZERO = Decimal(0)


class TokenCounts(Protocol):
    @property
    def input_tokens(self) -> int: ...
    @property
    def cached_input_tokens(self) -> int: ...
    @property
    def cache_write_tokens(self) -> int: ...
    @property
    def output_tokens(self) -> int: ...
    @property
    def audio_input_tokens(self) -> int: ...
    @property
    def audio_output_tokens(self) -> int: ...


@dataclass(frozen=True)
class Tokens:
    """Token counts by kind (a :class:`TokenCounts`) for code that has sums, not an
    event: a rollup row, a group of rows."""

    input_tokens: int = 0
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0
    output_tokens: int = 0
    audio_input_tokens: int = 0
    audio_output_tokens: int = 0


class PriceLike(Protocol):
    """USD per million tokens (``models.pricing.PriceRow`` is one)."""

    @property
    def input_per_mtok(self) -> Decimal: ...
    @property
    def cached_input_per_mtok(self) -> Decimal | None: ...
    @property
    def cache_write_per_mtok(self) -> Decimal | None: ...
    @property
    def output_per_mtok(self) -> Decimal: ...
    @property
    def audio_input_per_mtok(self) -> Decimal | None: ...
    @property
    def audio_output_per_mtok(self) -> Decimal | None: ...


@dataclass(frozen=True)
class CostBreakdown:
    uncached_input: Decimal
    cached_input: Decimal
    cache_write: Decimal
    output: Decimal
    audio_input: Decimal
    audio_output: Decimal

    @property
    def total(self) -> Decimal:
        return (self.uncached_input + self.cached_input + self.cache_write + self.output
                + self.audio_input + self.audio_output)


def cost_of(tokens: TokenCounts, price: PriceLike) -> CostBreakdown:
    """The cost of ``tokens`` at ``price`` (see the module docstring)."""
    cached = max(tokens.cached_input_tokens or 0, 0)
    writes = max(tokens.cache_write_tokens or 0, 0)
    audio_in = (max(tokens.audio_input_tokens or 0, 0)
                if price.audio_input_per_mtok is not None else 0)
    audio_out = (max(tokens.audio_output_tokens or 0, 0)
                 if price.audio_output_per_mtok is not None else 0)
    uncached = max((tokens.input_tokens or 0) - cached - writes - audio_in, 0)
    text_out = max((tokens.output_tokens or 0) - audio_out, 0)
    inp = price.input_per_mtok
    cached_price = price.cached_input_per_mtok if price.cached_input_per_mtok is not None \
        else inp
    write_price = price.cache_write_per_mtok if price.cache_write_per_mtok is not None else inp
    return CostBreakdown(
        uncached_input=uncached * inp / MILLION,
        cached_input=cached * cached_price / MILLION,
        cache_write=writes * write_price / MILLION,
        output=text_out * price.output_per_mtok / MILLION,
        audio_input=(audio_in * price.audio_input_per_mtok / MILLION
                     if price.audio_input_per_mtok is not None else _ZERO),
        audio_output=(audio_out * price.audio_output_per_mtok / MILLION
                      if price.audio_output_per_mtok is not None else _ZERO),
    )


def cache_savings(tokens: TokenCounts, price: PriceLike) -> Decimal:
    """What prompt caching saved: cached tokens at the input price minus at the
    cached price."""
    if price.cached_input_per_mtok is None:
        return _ZERO
    cached = max(tokens.cached_input_tokens or 0, 0)
    return cached * (price.input_per_mtok - price.cached_input_per_mtok) / MILLION
