"""Helpers shared by the command modules."""

from __future__ import annotations

import datetime as dt
import sys
from zoneinfo import ZoneInfo

from sqlalchemy import Engine

from spendwatch.settings import Settings

__all__ = ["open_engine", "today"]


def open_engine(settings: Settings, *, auto_create: bool = True) -> Engine:
    """The database of ``settings`` with its schema checked; its location goes to
    stderr so every command says which database it used."""
    from models.database import open_database, redact

    print(f"database: {redact(settings.database_url)}", file=sys.stderr)
    return open_database(settings.database_url, auto_create=auto_create)


def today(settings: Settings) -> dt.date:
    """Today in the reporting timezone."""
    return dt.datetime.now(ZoneInfo(settings.timezone)).date()
