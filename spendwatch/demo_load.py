"""Loading the demo's events the way a running installation would have seen them.

The history before the replay window goes to the collector's sink in one stream and
is rolled up once. The replay window (the current month, and back to the 429 storm
if that was earlier) is then played day by day, as the scheduler would have: each
day's events are written, that day is rolled up and the alerts are evaluated at its
end (and during and after the storm), so budget alerts, the storm's error-rate alert
and its resolution carry the times they would have had. Last, the live SDK calls of
today (:mod:`spendwatch.demo_live`) and their rollup.
"""

from __future__ import annotations

import datetime as dt
import sys
import time
from collections.abc import Callable
from zoneinfo import ZoneInfo

from sqlalchemy import Engine

from collector.sink import EventSink
from models.rollups import RollupEngine
from spendwatch.demo_data import Plan, generate
from spendwatch.progress import ProgressBar
from spendwatch.settings import Settings

__all__ = ["load", "replay_start"]

UTC = dt.UTC
#: The sink's batch: the writer wakes every flush_interval and writes what is queued;
#: the generator waits (once a simulated day) while more than 3/4 of it is queued.
_BATCH = 20_000
Evaluate = Callable[[dt.datetime], None]


def replay_start(plan: Plan, timezone: str) -> dt.datetime:
    """Where the day-by-day replay starts: local midnight of the month's first day, or
    of the storm's day when that was earlier; never before the plan."""
    tz = ZoneInfo(timezone)
    local_end = plan.end.astimezone(tz).date()
    first = min(local_end.replace(day=1), plan.storm_day)
    return max(plan.start, dt.datetime.combine(first, dt.time(0), tz).astimezone(UTC))


def load(engine: Engine, settings: Settings, plan: Plan, seed: int,
         evaluate: Evaluate | None) -> int:
    """Write the plan's events and today's live calls, roll them up (and, when
    ``evaluate`` is given, replay the alerts); returns how many events were made."""
    import collector

    collector.configure(database_url=settings.database_url, data_dir=settings.data_dir,
                        spool_dir=settings.spool_dir, environment=settings.environment,
                        batch_size=_BATCH, queue_size=200_000, flush_interval=0.2,
                        log_level="WARNING")
    sink = collector.get_sink()
    rollups = RollupEngine(engine, timezone=settings.timezone)
    tz = ZoneInfo(settings.timezone)
    replay_from = replay_start(plan, settings.timezone) if evaluate else plan.end
    days = (plan.end - plan.start).days + 1
    bar = ProgressBar(f"generating {days} days of usage")
    made = 0
    day: dt.date | None = None
    for hour, events in enumerate(generate(plan)):
        at = plan.start + dt.timedelta(hours=hour)
        if at >= replay_from:
            local = at.astimezone(tz).date()
            if day is None:  # the history so far: write it, roll it up
                _write(sink, made, settings)
                rollups.run(progress=ProgressBar("rolling up the history"))
                bar = ProgressBar(f"replaying {(plan.end - at).days + 1} days "
                                  f"(daily rollup and alerts)")
                day = local
            elif local != day:
                _close_day(sink, made, settings, rollups, plan, day, at, evaluate)
                day = local
        for event in events:
            collector.record_event(event)
        made += len(events)
        if not (hour + 1) % 24:
            while sink.stats().queued > _BATCH * 3 // 4:  # let the writer catch up
                time.sleep(0.02)
        bar(hour + 1, plan.hours)
    from spendwatch.demo_live import live_calls

    made += live_calls(seed)
    _write(sink, made, settings)
    today = plan.end.astimezone(tz).date()
    if day is None:
        rollups.run(progress=ProgressBar("rolling up"))
    else:
        rollups.run(since=day, until=today)
    sink.close()
    return made


def _close_day(sink: EventSink, made: int, settings: Settings, rollups: RollupEngine,
               plan: Plan, day: dt.date, end: dt.datetime, evaluate: Evaluate | None) -> None:
    """The end of a replayed day: its events written, the storm's checkpoints, its
    rollup, the evaluation at its end."""
    _write(sink, made, settings)
    if evaluate is None:
        return
    if day == plan.storm_day:  # error rates read events: during the storm, then after
        lo, hi = plan.storm_hours
        for hour in (lo + 1, hi + 1):
            at = dt.datetime.combine(day, dt.time(hour), UTC)
            if at < plan.end:
                evaluate(at)
    rollups.run(since=day, until=day)
    evaluate(min(end, plan.end) - dt.timedelta(seconds=1))


def _write(sink: EventSink, made: int, settings: Settings) -> None:
    """Wait until the sink has written everything handed to it."""
    bar = None
    while not sink.flush(timeout=0.5):
        st = sink.stats()
        bar = bar or ProgressBar("writing events")
        bar(st.written + st.spooled, made)
    st = sink.stats()
    if st.written + st.dropped + st.spooled < made or st.dropped or st.spooled:
        print(f"warning: {made:,} events made, {st.written:,} written, {st.spooled:,} kept "
              f"in the spool {settings.spool_dir}, {st.dropped:,} dropped "
              f"({st.last_error or 'no error'})", file=sys.stderr)
