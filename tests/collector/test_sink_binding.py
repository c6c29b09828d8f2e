"""Instrumented clients queue their calls with the sink's own ``put`` (no
``record_event`` frame per call); ``configure()`` points every client instrumented
earlier at the new sink, through budget enforcement's wrapper too."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import collector
from collector._recorder import ClientInfo
from collector.budget_guard import BudgetGuard
from collector.instrument import _CLIENTS, repoint_clients


def test_repoint_moves_only_the_clients_of_the_old_sink():
    old, new, other = [], [], []
    mine = ClientInfo("openai", {}, False, True, sink_put=old.append)
    theirs = ClientInfo("openai", {}, False, True, sink_put=other.append)
    guarded = ClientInfo("openai", {}, False, True, sink_put=old.append)
    guard = BudgetGuard.__new__(BudgetGuard)
    guard._own_lock, guard._pending = None, []  # not the active guard: only hands off
    guard._observe(guarded)
    for info in (mine, theirs, guarded):
        _CLIENTS.add(info)
    repoint_clients(old.append, new.append)
    mine.sink_put("a")
    theirs.sink_put("b")
    guarded.sink_put("c")  # the guard's wrapper stays, and hands off to the new sink
    assert (old, new, other) == ([], ["a", "c"], ["b"])


def test_a_client_instrumented_before_configure_records_to_the_new_database(
        fake_openai, tmp_path: Path):
    from openai import OpenAI

    first, second = tmp_path / "first.db", tmp_path / "second.db"
    collector.configure(database_url=f"sqlite:///{first}", spool_dir=str(tmp_path / "s1"))
    client = collector.instrument(OpenAI(base_url=fake_openai.base_url, api_key="x"))
    client.embeddings.create(model="e", input="x")
    collector.configure(database_url=f"sqlite:///{second}", spool_dir=str(tmp_path / "s2"))
    client.embeddings.create(model="e", input="y")
    assert collector.flush(10)
    collector.get_sink().close(timeout=5)

    def count(path: Path) -> int:
        with sqlite3.connect(path) as conn:
            return conn.execute("SELECT count(*) FROM usage_events").fetchone()[0]

    assert (count(first), count(second)) == (1, 1)
