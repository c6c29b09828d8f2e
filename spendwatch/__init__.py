"""spendwatch: the command line, the settings and the error hierarchy shared by
the collector, models, alerts and dashboard packages."""

from __future__ import annotations

from spendwatch.errors import SpendwatchError

__version__ = "0.1.0"

__all__ = ["SpendwatchError", "__version__"]
