"""The one error hierarchy of spendwatch.

Every error raised on purpose derives from :class:`SpendwatchError` and also from
the builtin a caller would naturally catch (``ValueError`` for bad input,
``LookupError`` for unknown names, ``ConnectionError`` for an unreachable
database). Each message names the offending value and says how to fix it.
"""

from __future__ import annotations

__all__ = [
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
