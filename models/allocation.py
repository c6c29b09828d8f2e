"""Splitting money: largest-remainder rounding and shared-cost rules over teams.

Amounts are exact Decimals until the end; each split is rounded to cents so that the
parts add up to the rounded whole (largest remainder: every part is rounded down, and
the cents left over go to the parts that lost the most, ties to the earlier part).
A pool is spread with cents too, so a team's allocated amount is exactly its direct
cents plus what it received minus what it gave, and the teams add up to the month's
total to the cent.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_FLOOR, ROUND_HALF_UP, Decimal

from models.allocation_file import SharedCostRule

__all__ = ["CENT", "Allocation", "Split", "allocate", "largest_remainder", "to_cents"]

CENT = Decimal("0.01")
_ZERO = Decimal(0)


def to_cents(amount: Decimal) -> Decimal:
    """``amount`` rounded half-up to cents (the rounding of a total)."""
    return amount.quantize(CENT, rounding=ROUND_HALF_UP)


def largest_remainder(amounts: Sequence[Decimal], total: Decimal | None = None) -> list[Decimal]:
    """``amounts`` rounded to cents so that they add up to ``total`` (default: their
    exact sum rounded half-up)."""
    if not amounts:
        return []
    target = to_cents(sum(amounts, _ZERO) if total is None else total)
    floors = [a.quantize(CENT, rounding=ROUND_FLOOR) for a in amounts]
    left = int((target - sum(floors, _ZERO)) / CENT)
    order = sorted(range(len(amounts)), key=lambda i: (-(amounts[i] - floors[i]), i))
    out = list(floors)
    step = CENT if left >= 0 else -CENT
    k = 0
    while left != 0:  # |left| <= n unless ``total`` is far from the sum
        i = order[k % len(order)] if left > 0 else order[-1 - k % len(order)]
        out[i] += step
        left -= 1 if left > 0 else -1
        k += 1
    return out


@dataclass
class Split:
    """One share of a pool given to a team by a rule."""

    rule: str
    method: str
    pool: str
    team: str
    weight: Decimal  # the team's fraction of the pool (0..1)
    amount: Decimal  # exact
    cents: Decimal


@dataclass
class Allocation:
    """Per team ('' = unallocated): base (direct) and allocated amounts in cents."""

    base: dict[str, Decimal]  # exact
    base_cents: dict[str, Decimal]
    allocated: dict[str, Decimal]  # exact
    allocated_cents: dict[str, Decimal]
    splits: list[Split] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def total_cents(self) -> Decimal:
        return sum(self.allocated_cents.values(), _ZERO)

    def received(self, team: str) -> Decimal:
        return sum((s.cents for s in self.splits if s.team == team), _ZERO)

    def given(self, team: str) -> Decimal:
        return sum((s.cents for s in self.splits if s.pool == team), _ZERO)


def allocate(base: Mapping[str, Decimal], rules: Sequence[SharedCostRule],
             base_cents: Mapping[str, Decimal] | None = None) -> Allocation:
    """Apply ``rules`` in order to the teams' ``base`` amounts (exact). ``base_cents``
    (default: largest remainder of ``base``) are the rounded starting amounts."""
    teams = list(base)
    cents = dict(base_cents) if base_cents is not None else dict(
        zip(teams, largest_remainder([base[t] for t in teams]), strict=True))
    exact = dict(base)
    result = Allocation(dict(base), dict(cents), exact, cents)
    for rule in rules:
        pool = rule.pool_team
        amount, amount_cents = exact.get(pool, _ZERO), cents.get(pool, _ZERO)
        shown_pool = rule.pool
        if amount == 0 and amount_cents == 0:
            result.notes.append(f"rule {rule.name!r}: the pool {shown_pool!r} is empty this "
                                f"month; nothing to spread")
            continue
        if rule.method == "fixed":
            targets = [t for t, _ in rule.percentages]
            weights = [p for _, p in rule.percentages]
        else:
            targets = list(rule.targets) if rule.targets is not None else [
                t for t in teams if t and t != pool and base[t] != 0]
            if not targets:
                result.notes.append(f"rule {rule.name!r}: no team to spread {shown_pool!r} "
                                    f"over; it stays where it is")
                continue
            weights = [Decimal(1)] * len(targets)
            if rule.method == "proportional":
                direct = [base.get(t, _ZERO) for t in targets]
                if sum(direct, _ZERO) > 0 and all(d >= 0 for d in direct):
                    weights = direct
                else:
                    result.notes.append(f"rule {rule.name!r}: the targets have no direct cost "
                                        f"this month; {shown_pool!r} was spread evenly")
        total_weight = sum(weights, _ZERO)
        shares = [amount * w / total_weight for w in weights]
        share_cents = largest_remainder(shares, amount_cents)
        for team, w, share, share_c in zip(targets, weights, shares, share_cents, strict=True):
            exact[team] = exact.get(team, _ZERO) + share
            cents[team] = cents.get(team, _ZERO) + share_c
            result.splits.append(Split(rule.name, rule.method, pool, team, w / total_weight,
                                       share, share_c))
        exact[pool] -= amount
        cents[pool] -= amount_cents
    return result
