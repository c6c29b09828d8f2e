"""spendwatch's collector: wrap an ``openai`` client and every request it makes
becomes a usage event in the database.

    from openai import OpenAI
    import collector

    client = collector.instrument(OpenAI(), team="search", project="ranker")
    with collector.tags(user="u-42", feature="summaries"):
        client.chat.completions.create(model="gpt-4o-mini", messages=[...])
    collector.flush(timeout=5)   # also runs at exit and on SIGTERM

The collector imports neither Dash nor pandas.
"""

from __future__ import annotations

import logging
import os
import threading

from models.events import UsageEvent
from spendwatch.errors import (
    DatabaseURLError,
    InstrumentationError,
    SpendwatchError,
    SpoolError,
    TagError,
)
from spendwatch.settings import Settings, load_settings

from ._exit import forget as forget_sink
from .instrument import instrument, repoint_clients
from .sink import EventSink, EventSource, SinkStats
from .tagging import current_tags, tags
from .targets import TARGETS, Target

__all__ = [
    "TARGETS",
    "DatabaseURLError",
    "EventSink",
    "InstrumentationError",
    "SinkStats",
    "SpendwatchError",
    "SpoolError",
    "TagError",
    "Target",
    "configure",
    "current_tags",
    "flush",
    "get_sink",
    "instrument",
    "record_event",
    "stats",
    "tags",
]

_sink: EventSink | None = None
_sink_lock = threading.Lock()


def _new_sink(settings: Settings) -> EventSink:
    sink = EventSink(settings)
    logging.getLogger("spendwatch").setLevel(settings.log_level)
    return sink


def get_sink() -> EventSink:
    """The process's event sink, made from the settings on first use."""
    global _sink
    sink = _sink
    if sink is None:
        with _sink_lock:
            if _sink is None:
                _sink = _new_sink(load_settings())
            sink = _sink
    return sink


def configure(**overrides: object) -> Settings:
    """Use other settings than the environment's (e.g. ``database_url=``) from now
    on; what the previous sink holds is flushed first. Clients instrumented earlier
    record to the new sink too."""
    global _sink
    settings = load_settings(overrides)
    new = _new_sink(settings)
    with _sink_lock:
        old, _sink = _sink, new
    if old is not None:
        repoint_clients(old.put, new.put)
        old.close()
        forget_sink(old)
    return settings


def record_event(event: UsageEvent | EventSource) -> None:
    """Hand one event to the process's sink (instrumented clients call the sink's
    ``put`` itself)."""
    (_sink or get_sink()).put(event)


def flush(timeout: float = 5.0) -> bool:
    """Write every event recorded so far (to the spool if the database is down) and
    replay the spool if the database is back. True when nothing is left in memory."""
    sink = _sink
    return True if sink is None else sink.flush(timeout)


def stats() -> SinkStats | None:
    """Counters of the sink: enqueued, written, dropped, spooled, replayed, ..."""
    sink = _sink
    return None if sink is None else sink.stats()


def _after_fork_in_child() -> None:
    # The parent's queue and writer thread belong to the parent: start afresh.
    global _sink
    old, _sink = _sink, None
    if old is not None:
        repoint_clients(old.put, record_event)  # a sink of the child's own, on first use
        forget_sink(old)


os.register_at_fork(after_in_child=_after_fork_in_child)
