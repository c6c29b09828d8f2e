"""``spendwatch budgets ...`` and ``spendwatch alerts ...`` (the alerts issue fills this in)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the budgets and alerts commands."""
