"""Alerts and the scheduler that runs them: budgets (a TOML budget file applied to the
database, with its change history), what each budget has spent, alert rules and
their state, the notifiers (email, webhook), what happens after each rollup
(:func:`after_rollup`) and the APScheduler jobs (:class:`SpendScheduler`)."""

from __future__ import annotations

from alerts.budget_file import BudgetFile, BudgetSpec, RuleSpec, load_budget_file
from alerts.budgets import (
    BudgetApplyResult,
    BudgetChange,
    BudgetStatus,
    apply_budget_file,
    budget_history,
    budget_status,
)
from alerts.hooks import AfterRollup, after_rollup, run_after_rollup
from alerts.scheduler import SpendScheduler

__all__ = ["AfterRollup", "BudgetApplyResult", "BudgetChange", "BudgetFile", "BudgetSpec",
           "BudgetStatus", "RuleSpec", "SpendScheduler", "after_rollup", "apply_budget_file",
           "budget_history", "budget_status", "load_budget_file", "run_after_rollup"]
