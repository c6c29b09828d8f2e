"""How numbers look on the dashboard: money with its currency and a precision that
suits its size, counts with thousands separators, percentages and changes.

Money stays ``Decimal`` up to here; :func:`to_float` is the one place a chart gets a
float (plotly needs numbers), and tables and CSV files keep the exact value."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

__all__ = ["CURRENCY", "UNPRICED", "format_change", "format_count", "format_money",
           "format_ms", "format_percent", "to_float"]

CURRENCY = "USD"
UNPRICED = "unpriced"
_CENT = Decimal("0.01")


def format_money(amount: Decimal | None, *, unpriced_tokens: int = 0) -> str:
    """``$1,234.56``; below a dollar four significant decimals (``$0.0042``); ``None``
    with unpriced tokens is ``unpriced`` (never $0); a priced amount that also has
    unpriced tokens says so."""
    if amount is None:
        return UNPRICED if unpriced_tokens else "$0.00"
    text = _money(amount)
    return f"{text} + {UNPRICED}" if unpriced_tokens else text


def _money(amount: Decimal) -> str:
    sign = "-" if amount < 0 else ""
    value = abs(amount)
    if value == 0:
        return "$0.00"
    if value >= 1:
        return f"{sign}${value.quantize(_CENT, ROUND_HALF_UP):,.2f}"
    # below $1: enough decimals for four significant digits, at least cents
    exponent = value.adjusted()  # -1 for 0.1..0.99, -3 for 0.001..
    places = max(2, 3 - exponent)
    quantum = Decimal(1).scaleb(-places)
    return f"{sign}${value.quantize(quantum, ROUND_HALF_UP):.{places}f}"


def to_float(amount: Decimal | None) -> float | None:
    """For charts only (plotly plots floats); None stays None (a gap, not $0)."""
    return None if amount is None else float(amount)


def format_count(value: int | float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:,.0f}"


def format_percent(value: float | None, places: int = 1) -> str:
    return "n/a" if value is None else f"{value * 100:.{places}f} %"


def format_ms(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value / 1000:,.2f} s" if value >= 1000 else f"{value:,.0f} ms"


def format_change(current: Decimal | float | int | None, previous: Decimal | float | int | None,
                  *, points: bool = False) -> str:
    """The change against the previous period: ``+12.5 %`` (or ``+0.4 pp`` for rates
    with ``points=True``); ``n/a`` when there is nothing to compare with."""
    if current is None or previous is None:
        return "n/a"
    if points:
        return f"{(float(current) - float(previous)) * 100:+.1f} pp"
    if previous == 0:
        return "new" if current else "±0 %"
    change = (Decimal(str(current)) - Decimal(str(previous))) / Decimal(str(previous)) * 100
    return f"{change:+.1f} %"
