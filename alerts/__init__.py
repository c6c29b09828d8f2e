"""Alerts and the scheduler that runs them: what happens after each rollup
(budgets and reliability rules plug in with :func:`after_rollup`) and the APScheduler
jobs (:class:`SpendScheduler`)."""

from __future__ import annotations

from alerts.hooks import AfterRollup, after_rollup, run_after_rollup
from alerts.scheduler import SpendScheduler

__all__ = ["AfterRollup", "SpendScheduler", "after_rollup", "run_after_rollup"]
