"""Fixtures shared by every test: the OpenAI-compatible server, the two databases
(a temporary SQLite file and the local PostgreSQL server), and a collector pointed
at one of them."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

import collector
from spendwatch.fake_openai import FakeOpenAI

PG_URL = os.environ.get("SPENDWATCH_TEST_POSTGRES_URL",
                        "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REQUIRE_PG = os.environ.get("SPENDWATCH_REQUIRE_POSTGRES") == "1"
_pg_state: dict[str, str | None] = {}


def postgres_unavailable() -> str | None:
    """None when the PostgreSQL server answers, else the reason."""
    if "reason" not in _pg_state:
        try:
            engine = create_engine(PG_URL, connect_args={"connect_timeout": 3})
            with engine.connect() as conn:
                conn.execute(text("select 1"))
            engine.dispose()
            _pg_state["reason"] = None
        except Exception as exc:
            _pg_state["reason"] = f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
    return _pg_state["reason"]


_BROWSER_FIXTURES = {"page", "context", "browser", "playwright"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Browser tests run last. pytest-playwright's sync API keeps an asyncio loop
    running on the main thread from its first use to the end of the session, after
    which every ``asyncio.run`` in a later test fails with "cannot be called from a
    running event loop"."""
    items.sort(key=lambda item: bool(_BROWSER_FIXTURES & set(
        getattr(item, "fixturenames", ())) or "browser" in item.keywords))


@pytest.fixture(scope="session")
def fake_openai() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


@dataclass
class Database:
    kind: str
    url: str
    engine: Engine
    #: for PostgreSQL: the schema this test owns
    schema: str | None = None

    def scalar(self, sql: str, **params: object) -> object:
        with self.engine.connect() as conn:
            return conn.execute(text(sql), params).scalar()

    def rows(self, sql: str, **params: object) -> list[object]:
        with self.engine.connect() as conn:
            return list(conn.execute(text(sql), params))


def _pg_database() -> Iterator[Database]:
    reason = postgres_unavailable()
    if reason is not None:
        if REQUIRE_PG:
            pytest.fail(f"PostgreSQL is required (SPENDWATCH_REQUIRE_POSTGRES=1) but "
                        f"{PG_URL} is unreachable: {reason}")
        pytest.skip(f"PostgreSQL not reachable at {PG_URL} ({reason}); "
                    f"the SQLite variant of this test ran")
    schema = f"sw_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = make_url(PG_URL).update_query_dict({"options": f"-csearch_path={schema}"})
    url_text = url.render_as_string(hide_password=False)
    engine = create_engine(url_text)
    try:
        yield Database("postgresql", url_text, engine, schema)
    finally:
        engine.dispose()
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """An empty database: a temporary SQLite file, or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'spendwatch.db'}"
        engine = create_engine(url)
        yield Database("sqlite", url, engine)
        engine.dispose()
    else:
        yield from _pg_database()


@pytest.fixture
def recording(database: Database, tmp_path: Path) -> Iterator[Database]:
    """The collector records to ``database`` (spool under tmp_path)."""
    collector.configure(database_url=database.url, spool_dir=str(tmp_path / "spool"),
                        flush_interval=0.05)
    yield database
    collector.flush(timeout=10)
    collector.get_sink().close(timeout=5)


def events(db: Database, where: str = "1=1", **params: object) -> list[object]:
    return db.rows(f"SELECT * FROM usage_events WHERE {where} ORDER BY ts, id", **params)
