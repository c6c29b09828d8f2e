"""The schema check, bad input refused at instrument() time, and the command line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from openai import OpenAI
from sqlalchemy import text

import collector
from models import database as dbmod
from models.database import check_schema, create_db_engine, open_database, upgrade
from spendwatch.errors import (
    DatabaseUnavailableError,
    DatabaseURLError,
    InstrumentationError,
    SchemaOutdatedError,
    SpendwatchError,
    SpoolError,
    TagError,
)

ROOT = Path(__file__).resolve().parents[2]


def test_empty_database_gets_schema_on_first_use(database):
    engine = open_database(database.url)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM usage_events")).scalar() == 0
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == \
            dbmod.head_revision()
    engine.dispose()


def test_no_schema_without_auto_create_names_the_command(database):
    engine = create_db_engine(database.url)
    with pytest.raises(SchemaOutdatedError, match="spendwatch db upgrade"):
        check_schema(engine, auto_create=False)
    engine.dispose()


def test_older_revision_refused_with_upgrade_command(database):
    from alembic import command

    engine = create_db_engine(database.url)
    with engine.begin() as conn:  # a database made by an older spendwatch: at 0001
        command.upgrade(dbmod._alembic_config(conn), "0001")
    with pytest.raises(SchemaOutdatedError) as info:
        check_schema(engine)
    assert "revision 0001" in str(info.value) and "spendwatch db upgrade" in str(info.value)
    assert upgrade(engine) == ("0001", dbmod.head_revision())  # the fix it names works
    check_schema(engine)
    engine.dispose()


def test_newer_revision_refused_with_upgrade_spendwatch(database):
    engine = open_database(database.url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = 'f00d'"))
    with pytest.raises(SchemaOutdatedError, match="newer than this spendwatch"):
        check_schema(engine)
    engine.dispose()


def test_upgrade_is_idempotent(database):
    engine = create_db_engine(database.url)
    assert upgrade(engine) == (None, dbmod.head_revision())
    assert upgrade(engine) == (dbmod.head_revision(), dbmod.head_revision())
    engine.dispose()


def test_foreign_table_is_not_adopted(database):
    engine = create_db_engine(database.url)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE usage_events (id integer)"))
    with pytest.raises(SchemaOutdatedError, match="not made by spendwatch"):
        check_schema(engine)
    engine.dispose()


@pytest.mark.parametrize("url", ["mysql://root@localhost/x", "not a url", "sqlite://",
                                 "sqlite:///:memory:"])
def test_bad_database_url(url):
    with pytest.raises(DatabaseURLError) as info:
        create_db_engine(url)
    assert isinstance(info.value, ValueError) and isinstance(info.value, SpendwatchError)


def test_unreachable_database_is_a_clear_error():
    engine = create_db_engine("postgresql://postgres@127.0.0.1:1/nothing")
    with pytest.raises(DatabaseUnavailableError) as info:
        check_schema(engine)
    message = str(info.value)
    assert "127.0.0.1:1" in message and "SPENDWATCH_DATABASE_URL" in message
    assert isinstance(info.value, ConnectionError)


def test_instrument_refuses_bad_input_before_any_request(fake_openai, tmp_path):
    collector.configure(database_url=f"sqlite:///{tmp_path}/x.db",
                        spool_dir=str(tmp_path / "spool"))
    before = fake_openai.requests
    with pytest.raises(InstrumentationError, match="OpenAI"):
        collector.instrument(object())  # type: ignore[type-var]
    client = OpenAI(base_url=fake_openai.base_url, api_key="t")
    with pytest.raises(TagError, match="team"):
        collector.instrument(client, team=42)  # type: ignore[arg-type]
    with pytest.raises(TagError, match="200"):
        collector.instrument(client, project="x" * 201)
    with pytest.raises(TagError), collector.tags(user=["u"]):  # type: ignore[arg-type]
        pass
    assert fake_openai.requests == before


def test_bad_url_and_spool_fail_at_configure_time(tmp_path):
    with pytest.raises(DatabaseURLError, match="oracle"):
        collector.configure(database_url="oracle://scott@db/orcl")
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(SpoolError, match="SPENDWATCH_SPOOL_DIR"):
        collector.configure(database_url=f"sqlite:///{tmp_path}/x.db",
                            spool_dir=str(blocker / "spool"))


def test_queue_full_drops_and_counts(fake_openai, tmp_path):
    collector.configure(database_url=f"sqlite:///{tmp_path}/x.db",
                        spool_dir=str(tmp_path / "spool"), queue_size=5,
                        flush_interval=60, batch_size=1000)
    client = collector.instrument(OpenAI(base_url=fake_openai.base_url, api_key="t"))
    for _ in range(8):
        client.embeddings.create(model="e", input="x")
    stats = collector.stats()
    assert stats.dropped == 3 and stats.enqueued == 5
    assert collector.flush(10)
    assert collector.stats().written == 5
    collector.get_sink().close()


def test_recording_bug_is_logged_not_raised(fake_openai, recording, monkeypatch, caplog):
    import sys

    from collector import _recorder

    def broken(*args, **kwargs):
        raise RuntimeError("recorder bug")

    # A complete result is read in the wrapper's module (collector.instrument, whose
    # name the package's instrument() function shadows); anything else by a Call.
    monkeypatch.setattr(sys.modules["collector.instrument"], "read_usage", broken)
    client = collector.instrument(OpenAI(base_url=fake_openai.base_url, api_key="t"))
    result = client.embeddings.create(model="e", input="x")
    assert result.usage.prompt_tokens == 8  # the caller got its answer
    assert caplog.text.count("could not record a call") == 1
    monkeypatch.setattr(_recorder.Call, "after", broken)
    chunks = list(client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "hi"}], stream=True))
    assert chunks and chunks[0].choices  # the stream reached the caller whole
    assert caplog.text.count("could not record a call") == 2


def run_cli(*args: str, env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "spendwatch.cli", *args], env=env,
                          capture_output=True, text=True, timeout=120)


def test_cli_help_upgrade_and_tail(fake_openai, recording):
    help_ = run_cli("--help")
    assert help_.returncode == 0 and "events" in help_.stdout and "db" in help_.stdout
    empty = run_cli("--database-url", recording.url, "events", "tail")
    assert empty.returncode == 0 and "no events yet" in empty.stdout
    assert recording.url.split("?")[0].split("@")[-1] in empty.stderr  # location printed
    up = run_cli("--database-url", recording.url, "db", "upgrade")
    assert up.returncode == 0 and "already at revision" in up.stdout
    client = collector.instrument(OpenAI(base_url=fake_openai.base_url, api_key="t"),
                                  team="search", project="ranker")
    client.chat.completions.create(model="gpt-4o-mini", messages=[])
    client.moderations.create(input="x")
    assert collector.flush(10)
    tail = run_cli("--database-url", recording.url, "events", "tail", "-n", "5")
    assert tail.returncode == 0, tail.stderr
    lines = tail.stdout.splitlines()
    assert lines[0].split()[:4] == ["time", "(UTC)", "endpoint", "model"]
    assert "chat.completions" in lines[2] and "search" in lines[2] and "20" in lines[2]
    assert "moderations" in lines[3] and "n/a" in lines[3]  # usage not reported


def test_cli_reports_errors_without_traceback(tmp_path):
    result = run_cli("--database-url", "postgresql://postgres@127.0.0.1:1/x", "events", "tail")
    assert result.returncode == 2
    assert "cannot reach the database" in result.stderr and "Traceback" not in result.stderr
    bad = run_cli("--database-url", "oracle://x", "db", "upgrade")
    assert bad.returncode == 2 and "supports sqlite and postgresql" in bad.stderr


def test_cli_spool_status_and_replay(tmp_path, database):
    import datetime as dt

    from collector.spool import Spool
    from models.events import UsageEvent
    from models.ids import uuid7

    spool = Spool(tmp_path / "spool")
    events = [UsageEvent(id=uuid7(), ts=dt.datetime.now(dt.UTC), provider="openai",
                         endpoint="embeddings", usage_reported=True, input_tokens=3)
              for _ in range(4)]
    spool.write(events[:2])
    spool.write(events[2:])
    env = {"SPENDWATCH_SPOOL_DIR": str(tmp_path / "spool")}
    status = run_cli("--database-url", database.url, "spool", "status", env_extra=env)
    assert "2 file(s), 4 event(s) waiting" in status.stdout
    replay = run_cli("--database-url", database.url, "spool", "replay", env_extra=env)
    assert replay.returncode == 0 and "replayed 4 event(s)" in replay.stdout
    assert database.scalar("SELECT sum(input_tokens) FROM usage_events") == 12
    again = run_cli("--database-url", database.url, "spool", "replay", env_extra=env)
    assert "replayed 0 event(s)" in again.stdout


def test_new_databases_opened_at_once_in_one_process(tmp_path):
    """Alembic keeps a running migration in module globals: four threads creating four
    new databases at the same moment used to fail (KeyError: 'config', "table
    usage_events already exists") in most rounds."""
    import threading

    errors: list[str] = []

    def create(path) -> None:
        try:
            open_database(f"sqlite:///{path}").dispose()
        except Exception as exc:  # the test reports every failure
            errors.append(repr(exc))

    for round_ in range(5):
        threads = [threading.Thread(target=create, args=(tmp_path / f"{round_}-{i}.db",))
                   for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert errors == []
