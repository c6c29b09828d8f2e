"""uuid7: RFC 9562 layout, strictly increasing within a process, thread-safe."""

from __future__ import annotations

import copy
import itertools
import pickle
import threading
import time
import uuid

import pytest

from models import ids
from models.ids import uuid7, uuid7_time_ms

NOW_NS = 1_700_000_000_123_000_000


@pytest.fixture
def fresh_state(monkeypatch):
    """Forget earlier ids so that an explicit now_ns in the past is honoured."""
    monkeypatch.setattr(ids, "_last_ms", 0)
    monkeypatch.setattr(ids, "_counter", 0)


def test_version_and_variant_bits():
    for _ in range(100):
        u = uuid7()
        assert u.version == 7
        assert u.variant == uuid.RFC_4122
        assert (u.int >> 76) & 0xF == 7
        assert (u.int >> 62) & 0b11 == 0b10


def test_strictly_increasing_and_unique_in_one_thread():
    values = [uuid7() for _ in range(10_000)]
    assert all(a < b for a, b in itertools.pairwise(values))
    assert all(a.hex < b.hex for a, b in itertools.pairwise(values))
    assert len(set(values)) == len(values)


def test_unique_across_threads():
    results: list[list[uuid.UUID]] = [[] for _ in range(8)]
    barrier = threading.Barrier(8)

    def work(out: list[uuid.UUID]) -> None:
        barrier.wait()
        for _ in range(2_000):
            out.append(uuid7())

    threads = [threading.Thread(target=work, args=(out,)) for out in results]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    everything = [u for out in results for u in out]
    assert len(everything) == 16_000
    assert len(set(everything)) == 16_000
    for out in results:  # each thread also sees its own ids increasing
        assert all(a < b for a, b in itertools.pairwise(out))


def test_time_round_trip(fresh_state):
    u = uuid7(now_ns=NOW_NS)
    assert uuid7_time_ms(u) == 1_700_000_000_123


def test_time_of_current_clock(fresh_state):
    before = time.time_ns() // 1_000_000
    u = uuid7()
    after = time.time_ns() // 1_000_000
    assert before <= uuid7_time_ms(u) <= after


def test_clock_going_back_keeps_order(fresh_state):
    later = uuid7(now_ns=NOW_NS + 5_000_000)
    earlier = uuid7(now_ns=NOW_NS)
    assert earlier > later
    # the code keeps the last millisecond and counts up instead of going back
    assert uuid7_time_ms(earlier) == uuid7_time_ms(later) == 1_700_000_000_128


def test_counter_exhaustion_borrows_next_millisecond(fresh_state):
    values = [uuid7(now_ns=NOW_NS) for _ in range(5_000)]
    assert all(a < b for a, b in itertools.pairwise(values))
    assert all(u.version == 7 and u.variant == uuid.RFC_4122 for u in values)
    assert uuid7_time_ms(values[0]) == 1_700_000_000_123
    assert uuid7_time_ms(values[-1]) == 1_700_000_000_124


def test_is_a_real_uuid():
    u = uuid7()
    assert type(u) is uuid.UUID
    parsed = uuid.UUID(str(u))
    assert u == parsed
    assert hash(u) == hash(parsed)
    assert {u: 1}[parsed] == 1
    assert uuid.UUID(hex=u.hex) == u
    assert pickle.loads(pickle.dumps(u)) == u
    assert copy.deepcopy(u) == u
    assert u.is_safe is uuid.SafeUUID.unknown
