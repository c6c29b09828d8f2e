"""``spendwatch scheduler``: APScheduler 3.x jobs over one database.

* every ``rollup_interval`` seconds: the incremental rollup, then the after-rollup
  hooks (alert evaluation; chargeback corrections, the daily reconciliation and
  the automatic month close);
* every night at 00:30 in the reporting timezone: yesterday re-aggregated in full
  from raw events (a consistency check that also absorbs anything the watermark
  could have missed);
* a database lease decides which of several schedulers works: the others stand by
  and take over within one lease period if it stops. Both are logged.
* SIGTERM/SIGINT: finish the running job, release the lease, exit 0.
"""

from __future__ import annotations

import datetime as dt
import logging
import signal
import threading
from types import FrameType
from zoneinfo import ZoneInfo

from sqlalchemy import Engine

from alerts import chargeback_jobs  # noqa: F401  (registers its after-rollup hook)
from alerts.evaluate import use_settings
from alerts.hooks import run_after_rollup
from models.leases import Lease
from models.rollups import RollupEngine, RollupResult
from spendwatch.errors import ConfigurationError
from spendwatch.settings import Settings

__all__ = ["SpendScheduler"]

log = logging.getLogger("spendwatch.scheduler")
LEASE_NAME = "scheduler"


class SpendScheduler:
    def __init__(self, engine: Engine, settings: Settings) -> None:
        self.engine = engine
        self.settings = settings
        use_settings(settings)  # the after-rollup alert evaluation uses them
        self.tz = ZoneInfo(settings.timezone)
        ttl = dt.timedelta(seconds=max(3 * settings.rollup_interval, 30))
        self.lease = Lease(engine, LEASE_NAME, ttl)
        self._holding: bool | None = None  # None: not asked yet
        self._stopping = threading.Event()
        self._scheduler: object | None = None

    # -- jobs -----------------------------------------------------------------------------
    def _have_lease(self) -> bool:
        state = self.lease.acquire()
        if state.held != self._holding:  # log changes only, not every run
            if state.held:
                log.info("scheduler %s holds the lease until %s; running the jobs",
                         self.lease.holder, state.expires_at.isoformat(timespec="seconds"))
            else:
                log.info("scheduler %s standing by: the lease is held by %s until %s",
                         self.lease.holder, state.holder,
                         state.expires_at.isoformat(timespec="seconds"))
        self._holding = state.held
        return state.held

    def rollup_job(self) -> RollupResult | None:
        if self._stopping.is_set() or not self._have_lease():
            return None
        result = RollupEngine(self.engine, timezone=self.settings.timezone).run()
        log.info("rollup: %d day(s), %d row(s) in %.2fs", len(result.days), result.rows,
                 result.seconds)
        run_after_rollup(self.engine, result)
        return result

    def nightly_job(self) -> RollupResult | None:
        if self._stopping.is_set() or not self._have_lease():
            return None
        yesterday = dt.datetime.now(self.tz).date() - dt.timedelta(days=1)
        result = RollupEngine(self.engine, timezone=self.settings.timezone).run(
            since=yesterday, until=yesterday)
        log.info("nightly check of %s: %d row(s) rebuilt from raw events", yesterday,
                 result.rows)
        return result

    # -- running --------------------------------------------------------------------------------
    def run_once(self) -> RollupResult | None:
        """One rollup (and its hooks) if this process gets the lease."""
        try:
            return self.rollup_job()
        finally:
            if self._holding:
                self.lease.release()

    def run_forever(self) -> None:
        try:
            from apscheduler.schedulers.blocking import BlockingScheduler
            from apscheduler.triggers.cron import CronTrigger
            from apscheduler.triggers.interval import IntervalTrigger
        except ImportError:
            raise ConfigurationError("the scheduler needs APScheduler 3: pip install "
                                     "'spendwatch[server]'") from None
        scheduler = BlockingScheduler(timezone=self.tz)
        self._scheduler = scheduler
        now = dt.datetime.now(self.tz)
        scheduler.add_job(self._guard(self.rollup_job), IntervalTrigger(
            seconds=self.settings.rollup_interval, timezone=self.tz), id="rollup",
            next_run_time=now, max_instances=1, coalesce=True)
        scheduler.add_job(self._guard(self.nightly_job),
                          CronTrigger(hour=0, minute=30, timezone=self.tz), id="nightly",
                          max_instances=1, coalesce=True)

        def stop(signum: int, frame: FrameType | None) -> None:
            log.info("scheduler %s: signal %d, stopping after the running job",
                     self.lease.holder, signum)
            self._stopping.set()
            scheduler.shutdown(wait=False)

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        log.info("scheduler %s: rollup every %gs, nightly check at 00:30 %s",
                 self.lease.holder, self.settings.rollup_interval, self.settings.timezone)
        try:
            scheduler.start()
        finally:
            if self._holding:
                self.lease.release()
                log.info("scheduler %s released the lease", self.lease.holder)

    @staticmethod
    def _guard(job: object) -> object:
        def run() -> None:
            try:
                job()  # type: ignore[operator]
            except Exception:
                log.exception("scheduler job failed; it runs again at its next time")

        run.__name__ = getattr(job, "__name__", "job")
        return run
