"""Engine creation and the schema check every component runs before using the
database.

* One URL for every component: ``SPENDWATCH_DATABASE_URL``, default a SQLite file
  under the data folder (see :mod:`spendwatch.settings`).
* SQLite runs in WAL mode with a busy timeout; its transactions are begun by us so
  that a writer can ask for ``BEGIN IMMEDIATE``
  (``conn.execution_options(sqlite_begin="IMMEDIATE")``).
* An empty database gets the schema on first use; a database at an older revision
  is refused with the command that upgrades it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Connection, Engine, create_engine, event, inspect
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError
from sqlalchemy.pool import NullPool

from spendwatch.errors import DatabaseUnavailableError, DatabaseURLError, SchemaOutdatedError

__all__ = [
    "begin_write",
    "check_schema",
    "create_db_engine",
    "current_revision",
    "head_revision",
    "open_database",
    "parse_database_url",
    "redact",
    "upgrade",
]

log = logging.getLogger("spendwatch.models")

_SUPPORTED = ("sqlite", "postgresql")
_MIGRATIONS = Path(__file__).resolve().parent / "migrations"
_SCHEMA_LOCK_KEY = 0x5350_4E44  # "SPND": advisory lock around schema creation
# Alembic keeps the running migration's context in module globals: two migrations at
# once in one process (two threads opening new databases) trip over each other
# (KeyError: 'config', "table already exists"), so they take turns.
_MIGRATING = threading.Lock()


def parse_database_url(url: str) -> URL:
    """Parse and validate a database URL; PostgreSQL URLs get the psycopg driver."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise DatabaseURLError(
            f"database URL {url!r} does not parse ({exc}); expected e.g. "
            f"sqlite:////path/to/spendwatch.db or postgresql://user@host:5432/dbname"
        ) from None
    backend = parsed.get_backend_name()
    if backend not in _SUPPORTED:
        raise DatabaseURLError(
            f"database URL {redact(parsed)!r} names {backend!r}; spendwatch supports "
            f"sqlite and postgresql URLs"
        )
    if backend == "postgresql" and parsed.get_driver_name() in ("psycopg2", "psycopg2cffi"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if backend == "postgresql" and parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    if backend == "sqlite" and parsed.database in (None, "", ":memory:"):
        raise DatabaseURLError(
            f"database URL {url!r} is an in-memory SQLite database, which each "
            f"connection sees empty; use a file, e.g. sqlite:////tmp/spendwatch.db"
        )
    return parsed


def redact(url: URL | str) -> str:
    """The URL as text with any password hidden."""
    parsed = make_url(url) if isinstance(url, str) else url
    return parsed.render_as_string(hide_password=True)


def _sqlite_on_connect(dbapi_connection: object, _record: object) -> None:
    # Let SQLAlchemy's "begin" event emit BEGIN itself (pysqlite's own implicit
    # transaction handling cannot do BEGIN IMMEDIATE).
    dbapi_connection.isolation_level = None  # type: ignore[attr-defined]
    cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _sqlite_on_begin(conn: Connection) -> None:
    mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
    conn.exec_driver_sql(f"BEGIN {mode}")


def create_db_engine(url: str, *, pool: bool = True) -> Engine:
    """An engine for ``url`` (validated); SQLite files get their folder created."""
    parsed = parse_database_url(url)
    kwargs: dict[str, object] = {"future": True}
    if parsed.get_backend_name() == "sqlite":
        path = Path(parsed.database or "")
        try:
            path.expanduser().resolve().parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DatabaseURLError(
                f"cannot create the folder of SQLite database {path}: {exc}; set "
                f"SPENDWATCH_DATABASE_URL or SPENDWATCH_DATA_DIR to a writable place"
            ) from None
        connect_args: dict[str, object] = {"check_same_thread": False}
        if "timeout" not in parsed.query:  # ?timeout=SECONDS in the URL wins
            connect_args["timeout"] = 30
        kwargs["connect_args"] = connect_args
    else:
        kwargs["pool_pre_ping"] = True
        kwargs["connect_args"] = {"connect_timeout": 5}
    if not pool:
        kwargs["poolclass"] = NullPool
    try:
        engine = create_engine(parsed, **kwargs)
    except NoSuchModuleError as exc:
        raise DatabaseURLError(f"database URL {redact(parsed)!r}: {exc}") from None
    except ModuleNotFoundError as exc:
        raise DatabaseURLError(
            f"database URL {redact(parsed)!r} needs the {exc.name!r} driver; install "
            f"it with: pip install 'spendwatch[postgres]'"
        ) from None
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_on_connect)
        event.listen(engine, "begin", _sqlite_on_begin)
    return engine


@contextmanager
def begin_write(engine: Engine) -> Iterator[Connection]:
    """A write transaction: ``BEGIN IMMEDIATE`` on SQLite (so a read-then-write never
    fails half-way with "database is locked"), a plain transaction elsewhere."""
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            conn = conn.execution_options(sqlite_begin="IMMEDIATE")
        with conn.begin():
            yield conn


def _alembic_config(connection: Connection | None = None) -> object:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(_alembic_config())  # type: ignore[arg-type]
    heads = script.get_heads()
    return heads[0]


def _known_revisions() -> set[str]:
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(_alembic_config())  # type: ignore[arg-type]
    return {rev.revision for rev in script.walk_revisions()}


def current_revision(conn: Connection) -> str | None:
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(conn).get_current_revision()


def _unavailable(engine: Engine, exc: Exception) -> DatabaseUnavailableError:
    reason = str(getattr(exc, "orig", exc)).strip().splitlines()[0] if str(exc) else repr(exc)
    return DatabaseUnavailableError(
        f"cannot reach the database {redact(engine.url)}: {reason}; check that the server "
        f"is running and SPENDWATCH_DATABASE_URL is right"
    )


def _upgrade_locked(conn: Connection, target: str) -> None:
    from alembic import command

    command.upgrade(_alembic_config(conn), target)  # type: ignore[arg-type]


def upgrade(engine: Engine, target: str = "head") -> tuple[str | None, str]:
    """Bring the schema to ``target``; returns (revision before, revision after)."""
    try:
        with _MIGRATING, begin_write(engine) as conn:
            if engine.dialect.name == "postgresql":
                conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_SCHEMA_LOCK_KEY})")
            before = current_revision(conn)
            _upgrade_locked(conn, target)
            after = current_revision(conn) or target
    except OperationalError as exc:
        raise _unavailable(engine, exc) from exc
    return before, after


def check_schema(engine: Engine, *, auto_create: bool = True) -> str:
    """Make sure the schema is the one this code expects.

    An empty database gets the schema (when ``auto_create``); one at another
    revision raises :class:`SchemaOutdatedError` naming the fix.
    """
    head = head_revision()
    try:
        with engine.connect() as conn:
            current = current_revision(conn)
            has_events = inspect(conn).has_table("usage_events")
    except OperationalError as exc:
        raise _unavailable(engine, exc) from exc
    if current == head:
        return head
    if current is None and not has_events:
        if not auto_create:
            raise SchemaOutdatedError(
                f"the database {redact(engine.url)} has no spendwatch schema; create it "
                f"with: spendwatch db upgrade"
            )
        before, after = upgrade(engine)
        if before is None:
            log.info("created the spendwatch schema (revision %s) in %s", after,
                     redact(engine.url))
        return after
    if current is None:
        raise SchemaOutdatedError(
            f"the database {redact(engine.url)} has a usage_events table but no spendwatch "
            f"revision; it was not made by spendwatch, or by a much older one. Point "
            f"SPENDWATCH_DATABASE_URL at another database"
        )
    if current in _known_revisions():
        raise SchemaOutdatedError(
            f"the database {redact(engine.url)} is at schema revision {current}, this "
            f"spendwatch needs {head}; run: spendwatch db upgrade"
        )
    raise SchemaOutdatedError(
        f"the database {redact(engine.url)} is at schema revision {current}, which is "
        f"newer than this spendwatch knows ({head}); upgrade spendwatch "
        f"(pip install -U spendwatch)"
    )


def open_database(url: str, *, auto_create: bool = True, pool: bool = True) -> Engine:
    """Engine for ``url`` with its schema checked (and created if empty)."""
    engine = create_db_engine(url, pool=pool)
    try:
        check_schema(engine, auto_create=auto_create)
    except Exception:
        engine.dispose()
        raise
    return engine
