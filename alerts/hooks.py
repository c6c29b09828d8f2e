"""What runs after each rollup. The alerts evaluate here (the alerts issue plugs its
evaluation in with :func:`after_rollup`); the scheduler calls :func:`run_after_rollup`."""

from __future__ import annotations

import logging
from collections.abc import Callable

from sqlalchemy import Engine

from models.rollups import RollupResult

__all__ = ["AfterRollup", "after_rollup", "run_after_rollup"]

log = logging.getLogger("spendwatch.scheduler")

AfterRollup = Callable[[Engine, RollupResult], None]
_hooks: list[AfterRollup] = []


def after_rollup(hook: AfterRollup) -> AfterRollup:
    """Register ``hook(engine, result)`` to run after every rollup (a decorator)."""
    if hook not in _hooks:
        _hooks.append(hook)
    return hook


def run_after_rollup(engine: Engine, result: RollupResult) -> None:
    """Run every hook; one that fails is logged and does not stop the others."""
    for hook in list(_hooks):
        try:
            hook(engine, result)
        except Exception:
            log.exception("after-rollup hook %s failed", getattr(hook, "__name__", hook))
