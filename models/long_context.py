"""Long-context rates: some models cost more per token when one request's input is
longer than a threshold (``gpt-5.4``: above 272,000 input tokens, every token of that
request, input and output, at the higher rate; genai-prices calls these tiered prices).

The rate depends on each request, not on a day's sums, so requests over a threshold
are kept apart: every rollup and chargeback row has a ``long_context`` key, the
largest threshold its requests' input exceeded (0 when it exceeded none). The
thresholds are those of the price data in use (``PriceBook.context_thresholds``);
given that key, each price is its tier with the highest start at or below it.

``input_tokens`` is the whole prompt as OpenAI reports it (cached and audio input
included), which is what the thresholds count.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from decimal import Decimal

from genai_prices import types as gp
from sqlalchemy import Integer, case, cast, literal_column
from sqlalchemy.sql.elements import ColumnElement

__all__ = ["band", "band_index_sql", "band_sql", "rate", "thresholds_of"]


def thresholds_of(values: Iterable[object]) -> tuple[int, ...]:
    """The tier starts of the tiered prices among ``values``, ascending, each once."""
    found = {tier.start for value in values if isinstance(value, gp.TieredPrices)
             for tier in value.tiers if tier.start > 0}
    return tuple(sorted(found))


def band(input_tokens: int | None, thresholds: Sequence[int]) -> int:
    """The largest of ``thresholds`` that ``input_tokens`` exceeds, else 0.

    >>> band(272_000, (272_000,)), band(272_001, (272_000,))
    (0, 272000)
    """
    n = input_tokens or 0
    out = 0
    for threshold in thresholds:
        if n > threshold:
            out = threshold
    return out


def band_sql(input_tokens: ColumnElement[int], thresholds: Sequence[int]
             ) -> ColumnElement[int]:
    """:func:`band` in SQL (a NULL count is 0 tokens); a GROUP BY key even without
    thresholds."""
    return _over(input_tokens, thresholds, by_position=False)


def band_index_sql(input_tokens: ColumnElement[int], thresholds: Sequence[int]
                   ) -> ColumnElement[int]:
    """The position of :func:`band` in ``(0, *sorted(thresholds))``: 0 for none, i for
    the i-th threshold (a small integer to pack into a key; see models._rollup_read)."""
    return _over(input_tokens, thresholds, by_position=True)


def _over(input_tokens: ColumnElement[int], thresholds: Sequence[int], *,
          by_position: bool) -> ColumnElement[int]:
    """CASE over the thresholds, largest first: the threshold exceeded (or its
    position), else 0. Integers are inlined, not bound parameters: PostgreSQL matches a
    SELECT expression with its GROUP BY only when both are the same text; and 0 alone
    is CAST, since a bare integer in GROUP BY names a column by position."""
    def n(value: int) -> ColumnElement[int]:
        return literal_column(str(int(value)))

    ordered = list(enumerate(sorted(thresholds), 1))
    if not ordered:
        return cast(n(0), Integer)
    whens = [(input_tokens > n(t), n(i if by_position else t)) for i, t in reversed(ordered)]
    return case(*whens, else_=n(0))


def rate(value: Decimal | gp.TieredPrices, long_context: int) -> tuple[Decimal, int]:
    """(price, tier start): the price of ``value`` for requests in band
    ``long_context``; the start is 0 when the base price applies."""
    if not isinstance(value, gp.TieredPrices):
        return value, 0
    price, start = value.base, 0
    for tier in value.tiers:  # ascending
        if 0 < tier.start <= long_context:
            price, start = tier.price, tier.start
    return price, start
