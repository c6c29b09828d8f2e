"""The Dash dashboard: :func:`create_app` builds it for a set of settings,
:func:`serve` serves it (``spendwatch serve``).

Dash, Plotly and pandas are imported on first use, so ``import dashboard`` stays
cheap."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import dash
    from sqlalchemy import Engine

    from spendwatch.settings import Settings

__all__ = ["create_app", "serve"]


def create_app(settings: Settings, engine: Engine | None = None) -> dash.Dash:
    """The multi-page Dash app for ``settings`` (see :mod:`dashboard.app`)."""
    from dashboard.app import create_app as _create_app

    return _create_app(settings, engine)


def serve(settings: Settings, host: str | None = None, port: int | None = None,
          engine: Engine | None = None) -> None:
    """Serve the dashboard until interrupted; prints its URL first (blocking)."""
    from dashboard.app import serve as _serve

    _serve(settings, host, port, engine)
