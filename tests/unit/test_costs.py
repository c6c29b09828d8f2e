"""Usage to cost with literal numbers; the arithmetic is in the comments."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import pytest

from models.costs import cache_savings, cost_of


@dataclass(frozen=True)
class Tokens:
    input_tokens: int = 0
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    audio_input_tokens: int = 0
    audio_output_tokens: int = 0


@dataclass(frozen=True)
class Price:
    input_per_mtok: Decimal
    output_per_mtok: Decimal
    cached_input_per_mtok: Decimal | None = None
    cache_write_per_mtok: Decimal | None = None
    audio_input_per_mtok: Decimal | None = None
    audio_output_per_mtok: Decimal | None = None


GPT_4O = Price(Decimal("2.50"), Decimal("10.00"), cached_input_per_mtok=Decimal("1.25"))


def test_plain_input_and_output():
    # 1,000 in x $2.50/M = $0.0025; 500 out x $10/M = $0.005; total $0.0075
    c = cost_of(Tokens(input_tokens=1000, output_tokens=500), GPT_4O)
    assert (c.uncached_input, c.output, c.total) == (
        Decimal("0.0025"), Decimal("0.005"), Decimal("0.0075"))


def test_cached_input_is_inside_input_and_billed_once_at_the_cached_rate():
    # 10,000 in of which 8,000 cached: 2,000 x $2.50/M = $0.005
    #                                  8,000 x $1.25/M = $0.010;   100 out x $10/M = $0.001
    # total $0.016 (not 10,000 x 2.50 + 8,000 x 1.25 = $0.035: cached billed twice)
    c = cost_of(Tokens(input_tokens=10_000, cached_input_tokens=8000, output_tokens=100), GPT_4O)
    assert c.uncached_input == Decimal("0.005")
    assert c.cached_input == Decimal("0.01")
    assert c.total == Decimal("0.016")
    # savings: 8,000 x ($2.50 - $1.25)/M = $0.01
    assert cache_savings(Tokens(cached_input_tokens=8000), GPT_4O) == Decimal("0.01")


def test_reasoning_tokens_are_inside_output_never_added_again():
    o3 = Price(Decimal("2"), Decimal("8"), cached_input_per_mtok=Decimal("0.5"))
    # 1,000 in x $2/M = $0.002; 3,000 out (2,500 of them reasoning) x $8/M = $0.024
    # total $0.026, not $0.046 (reasoning priced twice)
    c = cost_of(Tokens(input_tokens=1000, output_tokens=3000, reasoning_tokens=2500), o3)
    assert c.total == Decimal("0.026")


def test_cache_writes_at_their_own_rate_or_the_input_rate():
    with_write = Price(Decimal("3"), Decimal("15"), cached_input_per_mtok=Decimal("0.30"),
                       cache_write_per_mtok=Decimal("3.75"))
    # 5,000 in: 1,000 cached, 2,000 cache writes, 2,000 uncached
    # 2,000 x $3/M = $0.006; 1,000 x $0.30/M = $0.0003; 2,000 x $3.75/M = $0.0075
    t = Tokens(input_tokens=5000, cached_input_tokens=1000, cache_write_tokens=2000)
    assert cost_of(t, with_write).total == Decimal("0.0138")
    # no write price: writes bill as input: 4,000 x $3/M + 1,000 x $0.30/M = $0.0123
    no_write = Price(Decimal("3"), Decimal("15"), cached_input_per_mtok=Decimal("0.30"))
    assert cost_of(t, no_write).total == Decimal("0.0123")


def test_batch_half_price_row():
    batch = Price(Decimal("1.25"), Decimal("5"))  # gpt-4o batch: half of 2.50 / 10
    # 1,000,000 in x $1.25/M = $1.25; 200,000 out x $5/M = $1.00
    c = cost_of(Tokens(input_tokens=1_000_000, output_tokens=200_000), batch)
    assert c.total == Decimal("2.25")


def test_flex_tier_row():
    flex = Price(Decimal("0.625"), Decimal("5"), cached_input_per_mtok=Decimal("0.0625"))
    # gpt-5 flex: 100,000 in (40,000 cached): 60,000 x 0.625/M = 0.0375,
    # 40,000 x 0.0625/M = 0.0025; 10,000 out x 5/M = 0.05; total 0.09
    c = cost_of(Tokens(input_tokens=100_000, cached_input_tokens=40_000,
                       output_tokens=10_000), flex)
    assert c.total == Decimal("0.09")


def test_tiny_prices_stay_exact():
    embed = Price(Decimal("0.005"), Decimal("0"))
    # 7 tokens x $0.005/M = $0.000000035 exactly
    assert cost_of(Tokens(input_tokens=7), embed).total == Decimal("0.000000035")


def test_audio_tokens_priced_separately_only_when_the_row_has_audio_prices():
    audio = Price(Decimal("2.5"), Decimal("10"), audio_input_per_mtok=Decimal("40"),
                  audio_output_per_mtok=Decimal("80"))
    # 1,000 in of which 600 audio: 400 x 2.5/M = 0.001, 600 x 40/M = 0.024
    # 500 out of which 300 audio: 200 x 10/M = 0.002, 300 x 80/M = 0.024; total 0.051
    t = Tokens(input_tokens=1000, audio_input_tokens=600, output_tokens=500,
               audio_output_tokens=300)
    assert cost_of(t, audio).total == Decimal("0.051")
    # a text-only row bills them as text: 1,000 x 2.5/M + 500 x 10/M = 0.0075
    assert cost_of(t, Price(Decimal("2.5"), Decimal("10"))).total == Decimal("0.0075")


def test_money_is_decimal_never_float():
    c = cost_of(Tokens(input_tokens=3, output_tokens=3), GPT_4O)
    assert all(isinstance(v, Decimal) for v in vars(c).values())
    with pytest.raises(TypeError):
        cost_of(Tokens(input_tokens=1), Price(2.5, 10.0)).total + Decimal(0)  # type: ignore[arg-type]
