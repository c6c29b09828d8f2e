"""Fixtures for the dashboard's query and callback tests."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

import pytest

from dashboard.app import AppContext
from models.database import open_database
from spendwatch.settings import load_settings
from tests.dashboard.sample import Book


def make_context(engine, today: dt.date | None = None, timezone: str = "UTC") -> AppContext:
    settings = replace(load_settings({"database_url": "sqlite:////nonexistent.db"}, env={}),
                       timezone=timezone)
    return AppContext(engine=engine, settings=settings, prices=Book(), clock=today)


@pytest.fixture
def engine(database):
    engine = open_database(database.url)
    yield engine
    engine.dispose()
