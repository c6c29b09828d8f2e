"""``spendwatch report chargeback``, ``spendwatch month ...`` and reconciliation
(the chargeback issue fills this in)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the month and reconciliation commands."""


def register_reports(rep_sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``report chargeback`` under ``spendwatch report``."""
