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
from alerts.evaluate import EvaluationResult, deliver_pending, evaluate_alerts
from alerts.hooks import AfterRollup, after_rollup, run_after_rollup
from alerts.scheduler import SpendScheduler
from alerts.state import AlertRecord, Notification, alert_history

__all__ = ["AfterRollup", "AlertRecord", "BudgetApplyResult", "BudgetChange", "BudgetFile",
           "BudgetSpec", "BudgetStatus", "EvaluationResult", "Notification", "RuleSpec",
           "SpendScheduler", "after_rollup", "alert_history", "apply_budget_file",
           "budget_history", "budget_status", "deliver_pending", "evaluate_alerts",
           "load_budget_file", "run_after_rollup"]
