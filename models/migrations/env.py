"""Alembic environment: migrations run on the connection spendwatch hands over
(``config.attributes["connection"]``), on SQLite and PostgreSQL alike."""

from __future__ import annotations

from alembic import context

from models.schema import metadata

config = context.config
connection = config.attributes.get("connection")


def run_migrations() -> None:
    if connection is None:
        from models.database import create_db_engine

        url = config.get_main_option("sqlalchemy.url")
        if not url:
            raise RuntimeError("run migrations with: spendwatch db upgrade")
        engine = create_db_engine(url)
        with engine.begin() as conn:
            _run(conn)
        return
    _run(connection)


def _run(conn: object) -> None:
    context.configure(
        connection=conn,
        target_metadata=metadata,
        render_as_batch=conn.dialect.name == "sqlite",  # type: ignore[attr-defined]
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise RuntimeError("spendwatch migrations run online only: spendwatch db upgrade")
run_migrations()
