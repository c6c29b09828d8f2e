"""Spool: durable JSON-lines files replayed in write order."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path

import pytest

from collector.spool import MAX_FILE_FAILURES, Spool
from models.events import UsageEvent
from models.ids import uuid7
from spendwatch.errors import SpoolError

T0 = dt.datetime(2025, 3, 1, 12, 0, 0, 123456, tzinfo=dt.UTC)


def event(n: int, **extra: object) -> UsageEvent:
    fields: dict[str, object] = dict(
        id=uuid7(), ts=T0 + dt.timedelta(seconds=n), provider="openai",
        endpoint="chat.completions", model_requested="gpt-4o", model="gpt-4o-2024-08-06",
        streamed=bool(n % 2), usage_reported=True, input_tokens=100 + n,
        cached_input_tokens=n, output_tokens=7, latency_ms=12.5 + n, status_code=200,
        team="search", tags={"tenant": f"t-{n}", "region": "eu"})
    return UsageEvent(**(fields | extra))  # type: ignore[arg-type]


class Recorder:
    def __init__(self, fail: BaseException | None = None) -> None:
        self.calls: list[list[UsageEvent]] = []
        self.fail = fail

    def __call__(self, events: Sequence[UsageEvent]) -> None:
        self.calls.append(list(events))
        if self.fail is not None:
            raise self.fail


def test_write_read_round_trip(tmp_path):
    spool = Spool(tmp_path / "spool")
    events = [event(1), event(2, error_kind="server", status_code=503, attempts=3),
              event(3, tags=None, ttft_ms=0.25)]
    path = spool.write(events)
    assert path.parent == tmp_path / "spool"
    assert path.suffix == ".jsonl"
    back = Spool.read(path)
    assert back == events
    assert all(b.ts.tzinfo is not None for b in back)
    assert [b.id for b in back] == [e.id for e in events]


def test_directory_is_created_with_parents(tmp_path):
    Spool(tmp_path / "a" / "b" / "spool")
    assert (tmp_path / "a" / "b" / "spool").is_dir()


def test_file_names_sort_in_write_order(tmp_path):
    spool = Spool(tmp_path)
    written = [spool.write([event(n)]) for n in range(50)]
    assert spool.files() == written
    assert sorted(p.name for p in written) == [p.name for p in written]
    assert list(tmp_path.glob(".*.tmp")) == []


def test_pending_events(tmp_path):
    spool = Spool(tmp_path)
    assert spool.pending_events() == 0
    spool.write([event(1), event(2)])
    spool.write([event(3), event(4), event(5)])
    assert spool.pending_events() == 5


def test_replay_inserts_in_order_and_deletes(tmp_path):
    spool = Spool(tmp_path)
    batches = [[event(1), event(2)], [event(3)], [event(4), event(5), event(6)]]
    for batch in batches:
        spool.write(batch)
    insert = Recorder()
    assert spool.replay(insert, lambda exc: False) == 6
    assert insert.calls == batches
    assert spool.files() == []
    assert spool.pending_events() == 0


def test_transient_failure_stops_and_keeps_files(tmp_path):
    spool = Spool(tmp_path)
    paths = [spool.write([event(n)]) for n in range(3)]
    insert = Recorder(fail=ConnectionError("database went away"))
    with pytest.raises(ConnectionError, match="went away"):
        spool.replay(insert, lambda exc: isinstance(exc, ConnectionError))
    assert len(insert.calls) == 1  # stopped at the first file
    assert spool.files() == paths
    assert not (tmp_path / "failed").exists()


def test_non_transient_failure_moves_file_after_max_failures(tmp_path):
    spool = Spool(tmp_path)
    bad = spool.write([event(1)])
    good = spool.write([event(2)])

    def insert(events: Sequence[UsageEvent]) -> None:
        if events[0].input_tokens == 101:
            raise ValueError("row rejected")

    assert spool.replay(insert, lambda exc: False) == 1  # the bad file does not block
    assert spool.files() == [bad]
    assert not good.exists()
    for _ in range(MAX_FILE_FAILURES - 2):
        assert spool.replay(insert, lambda exc: False) == 0
        assert spool.files() == [bad]
    assert spool.replay(insert, lambda exc: False) == 0
    assert spool.files() == []
    moved = tmp_path / "failed" / bad.name
    assert moved.is_file()
    assert Spool.read(moved)[0].input_tokens == 101


def test_unwritable_directory_raises_spool_error(tmp_path):
    blocker = tmp_path / "regular-file"
    blocker.write_text("not a directory")
    target = blocker / "spool"
    with pytest.raises(SpoolError) as info:
        Spool(target)
    assert isinstance(info.value, OSError)
    assert str(target) in str(info.value)
    assert "SPENDWATCH_SPOOL_DIR" in str(info.value)


def test_spool_path_is_a_file(tmp_path):
    blocker = tmp_path / "spool"
    blocker.write_text("")
    with pytest.raises(SpoolError, match="SPENDWATCH_SPOOL_DIR"):
        Spool(Path(blocker))
