"""``spendwatch serve``: the dashboard."""

from __future__ import annotations

import argparse

from spendwatch.settings import Settings


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    from dashboard import serve
    from spendwatch.cli_common import open_engine

    engine = open_engine(settings)
    print(f"reporting timezone: {settings.timezone}")
    serve(settings, args.host, args.port, engine=engine)
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the serve command."""
    serve = sub.add_parser(
        "serve", help="serve the dashboard (spend, costs, reliability, budgets, chargeback)",
        description="Serve the Dash dashboard over HTTP. Host and port default to the "
                    "dashboard_host/dashboard_port settings; set dashboard_user and "
                    "dashboard_password for HTTP basic auth (required in practice when "
                    "listening beyond 127.0.0.1: a loud warning is printed otherwise).")
    serve.add_argument("--host", help="address to listen on (SPENDWATCH_DASHBOARD_HOST, "
                       "default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (SPENDWATCH_DASHBOARD_PORT, "
                       "default 8050; 0 picks a free one)")
    serve.set_defaults(handler=cmd_serve)
