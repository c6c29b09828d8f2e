"""The one error hierarchy of spendwatch.

Every error raised on purpose derives from :class:`SpendwatchError` and also from
the builtin a caller would naturally catch (``ValueError`` for bad input,
``LookupError`` for unknown names, ``ConnectionError`` for an unreachable
database). Each message names the offending value and says how to fix it.
"""

from __future__ import annotations

__all__ = [
    "AlertDeliveryError",
    "BudgetExceededError",
    "BudgetFileError",
    "ConfigurationError",
    "DatabaseURLError",
    "DatabaseUnavailableError",
    "InstrumentationError",
    "PriceFileError",
    "SchemaOutdatedError",
    "SpendwatchError",
    "SpoolError",
    "TagError",
    "UnknownModelError",
]


class SpendwatchError(Exception):
    """Root of every error spendwatch raises on purpose."""


class ConfigurationError(SpendwatchError, ValueError):
    """A setting has a value spendwatch cannot use."""


class DatabaseURLError(ConfigurationError):
    """The database URL does not parse or names an unsupported database."""


class DatabaseUnavailableError(SpendwatchError, ConnectionError):
    """The database cannot be reached (down, wrong host, wrong credentials)."""


class SchemaOutdatedError(SpendwatchError, RuntimeError):
    """The database schema is at another revision than this version expects."""


class InstrumentationError(SpendwatchError, TypeError):
    """``instrument()`` was given something it cannot instrument."""


class TagError(SpendwatchError, ValueError):
    """A tag name or value is not acceptable (not a string, too long, reserved)."""


class SpoolError(SpendwatchError, OSError):
    """The local spool directory cannot be created or written."""


class PriceFileError(ConfigurationError):
    """A price file is refused as a whole (the message names file, line and fix)."""


class UnknownModelError(SpendwatchError, LookupError):
    """No price is known for a model (it is ``unpriced``)."""


class BudgetFileError(ConfigurationError):
    """A budget file is refused as a whole (the message names file, line and fix)."""


class BudgetExceededError(SpendwatchError, RuntimeError):
    """A ``block`` budget has been spent: the call was not sent.

    ``scope`` names what the budget covers (e.g. ``team=search``), ``spend`` and
    ``limit`` are USD (Decimal) for the current ``period``."""

    def __init__(self, budget: str, scope: str, spend: object, limit: object,
                 period: str) -> None:
        self.budget, self.scope, self.spend, self.limit, self.period = (
            budget, scope, spend, limit, period)
        super().__init__(
            f"budget {budget!r} ({scope}) is spent: ${spend} of ${limit} for {period}; the "
            f"call was not sent. Raise the amount in the budget file and run `spendwatch "
            f"budgets apply FILE`, or wait for the next period")


class AlertDeliveryError(SpendwatchError, ConnectionError):
    """An alert message could not be delivered (SMTP or webhook down or refusing)."""


# -- chargeback errors
class AllocationFileError(ConfigurationError):
    """An allocation file is refused as a whole (the message names file, line and fix)."""


class MonthStateError(SpendwatchError, ValueError):
    """A month cannot be closed, reopened or changed in the state it is in (closed twice,
    reopened without a reason, in the future, ...)."""


class ExportError(SpendwatchError, OSError):
    """A report could not be written (the partial file is removed)."""


class ReconciliationError(SpendwatchError, ConnectionError):
    """OpenAI's Costs API could not be read (no admin key, refused, unreachable, or an
    answer spendwatch cannot use); nothing was stored."""


__all__ += ["AllocationFileError", "ExportError", "MonthStateError",
            "ReconciliationError"]
