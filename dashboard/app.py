"""The Dash app's shell: one :class:`AppContext` per app (engine and settings), the
navbar (one link per page, in the static layout), the page container, and optional
HTTP basic auth.

Nothing is read at import time and nothing is kept at module level: each app gets
its own context, which its callbacks close over and its page layouts find through
the Flask app serving the request (:func:`current_context`)."""

from __future__ import annotations

import base64
import datetime as dt
import hmac
import importlib
import sys
import time
from dataclasses import dataclass, field
from typing import Protocol
from zoneinfo import ZoneInfo

import dash
import dash_bootstrap_components as dbc
import flask
from dash import html
from sqlalchemy import Engine

from spendwatch.settings import Settings

__all__ = ["PAGES", "AppContext", "PriceLookup", "bind_warning", "create_app", "current_context",
           "serve"]

#: (module, path, name) of every page, in navbar order.
PAGES: tuple[tuple[str, str, str], ...] = (
    ("dashboard.pages.overview", "/", "Overview"),
    ("dashboard.pages.costs", "/costs", "Costs"),
    ("dashboard.pages.reliability", "/reliability", "Reliability"),
    ("dashboard.pages.budgets", "/budgets", "Budgets and alerts"),
    ("dashboard.pages.chargeback", "/chargeback", "Chargeback"),
)
_EXTENSION = "spendwatch"
_LOOPBACK = ("127.0.0.1", "localhost", "::1")
_PRICE_TTL = 300.0  # seconds a loaded price book is reused


class PriceLookup(Protocol):
    """What the pages need of :class:`models.pricing.PriceBook`."""

    def list_price(self, model: str, service_tier: str | None, is_batch: bool,
                   on: dt.date, long_context: int = 0) -> object | None: ...

    def contract_price(self, model: str, service_tier: str | None, is_batch: bool,
                       on: dt.date, long_context: int = 0) -> object | None: ...


@dataclass(frozen=True)
class AppContext:
    """What every page of one app reads from. ``prices`` (default: the database's
    price book, reloaded every few minutes) prices cache savings; ``clock`` fixes
    "today" (tests and benchmarks)."""

    engine: Engine
    settings: Settings
    prices: PriceLookup | None = None
    clock: dt.date | None = None
    _cache: dict[str, tuple[float, object]] = field(default_factory=dict, repr=False,
                                                    compare=False)

    @property
    def timezone(self) -> ZoneInfo:
        return ZoneInfo(self.settings.timezone)

    def today(self) -> dt.date:
        """Today in the reporting timezone."""
        return self.clock or dt.datetime.now(self.timezone).date()

    def now(self) -> dt.datetime:
        """The current instant (noon of the fixed day when ``clock`` is set)."""
        if self.clock is not None:
            return dt.datetime.combine(self.clock, dt.time(12), self.timezone)
        return dt.datetime.now(dt.UTC)

    def price_book(self) -> PriceLookup:
        if self.prices is not None:
            return self.prices
        cached = self._cache.get("prices")
        if cached is None or time.monotonic() - cached[0] > _PRICE_TTL:
            from models.pricing import PriceBook

            cached = self._cache["prices"] = (time.monotonic(), PriceBook.load(self.engine))
        return cached[1]  # type: ignore[return-value]


def current_context() -> AppContext:
    """The context of the app serving the current request."""
    return flask.current_app.extensions[_EXTENSION]  # type: ignore[no-any-return]


def _navbar() -> dbc.Navbar:
    links = [dbc.NavItem(dbc.NavLink(name, href=path, active="exact",
                                     id="nav-" + (path.strip("/") or "overview")))
             for _, path, name in PAGES]
    return dbc.NavbarSimple(children=links, brand="spendwatch", brand_href="/", color="dark",
                            dark=True, className="mb-3", fluid=True)


def _install_basic_auth(server: flask.Flask, user: str, password: str) -> None:
    expected = f"{user}:{password}".encode()

    @server.before_request
    def _require_login() -> flask.Response | None:
        header = flask.request.headers.get("Authorization", "")
        if header.startswith("Basic "):
            try:
                given = base64.b64decode(header[6:], validate=True)
            except ValueError:
                given = b""
            if hmac.compare_digest(given, expected):
                return None
        return flask.Response("spendwatch: log in with the dashboard user and password\n",
                              401, {"WWW-Authenticate": 'Basic realm="spendwatch"'})


def create_app(settings: Settings, engine: Engine | None = None, *,
               prices: PriceLookup | None = None, clock: dt.date | None = None) -> dash.Dash:
    """The dashboard for ``settings`` (database URL, reporting timezone, basic auth).

    ``engine`` overrides the settings' database (tests, the demo); ``prices`` and
    ``clock`` see :class:`AppContext`."""
    if engine is None:
        from models.database import open_database

        engine = open_database(settings.database_url)
    context = AppContext(engine=engine, settings=settings, prices=prices, clock=clock)
    # Bootstrap's CSS is served from dashboard/assets (MIT, v5.3.8), not a CDN: a
    # self-hosted dashboard must work without internet access.
    app = dash.Dash(__name__, use_pages=True, pages_folder="", title="spendwatch",
                    suppress_callback_exceptions=True, update_title=None)
    app.server.extensions[_EXTENSION] = context
    for module, _, _ in PAGES:
        importlib.import_module(module).register(app, context)
    app.layout = html.Div([_navbar(), dbc.Container(dash.page_container, fluid=True,
                                                    className="pb-5")])
    if settings.dashboard_user and settings.dashboard_password:
        _install_basic_auth(app.server, settings.dashboard_user, settings.dashboard_password)
    return app


def bind_warning(settings: Settings, host: str) -> str | None:
    """The warning for a dashboard reachable beyond this machine without a login."""
    if host in _LOOPBACK or (settings.dashboard_user and settings.dashboard_password):
        return None
    return (f"WARNING: the dashboard listens on {host}, beyond this machine, WITHOUT a "
            f"login: anyone who can reach it sees your organisation's spend. Set "
            f"SPENDWATCH_DASHBOARD_USER and SPENDWATCH_DASHBOARD_PASSWORD (or bind to "
            f"127.0.0.1).")


def serve(settings: Settings, host: str | None = None, port: int | None = None,
          engine: Engine | None = None) -> None:
    """Serve the dashboard until interrupted (blocking); prints the URL first."""
    from werkzeug.serving import make_server

    host = host or settings.dashboard_host
    port = settings.dashboard_port if port is None else port
    warning = bind_warning(settings, host)
    if warning:
        bar = "!" * 78
        print(f"{bar}\n{warning}\n{bar}", file=sys.stderr, flush=True)
    app = create_app(settings, engine)
    server = make_server(host, port, app.server, threaded=True)
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    print(f"dashboard: http://{shown}:{server.server_port}/  (Ctrl+C to stop)", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
