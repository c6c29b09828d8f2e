"""``spendwatch demo``: a living organisation's usage, through the real pipeline.

1. A separate demo database (``<data_dir>/demo.db`` unless ``--database-url``). A
   complete demo database is reused as it is (``--reset`` regenerates it); one
   holding events the demo did not make is refused.
2. ``--days`` days of usage from :mod:`spendwatch.demo_data` (six teams, fifteen
   projects, eight models, a launch, a 429 storm, a budget overrun, an unpriced
   fine-tune, untagged traffic) are handed to the collector's sink with their past
   timestamps; then a few dozen live calls are made today with the real ``openai``
   SDK, instrumented by the collector, against a local OpenAI-compatible server.
3. :class:`models.rollups.RollupEngine` rolls everything up.
4. The organisation's price rows (``demo_prices.toml``, applied before step 3: a flex
   rate the price library lacks for part of the period) and the example budgets
   (``demo_budgets.toml``) are applied, and the alerts run; their emails go to
   ``<data_dir>/demo/outbox`` (the demo never uses an SMTP server or a webhook, and
   keeps its spool and outbox apart from a real installation's).
5. A summary, the dashboard's URL, and the dashboard (unless ``--no-serve``).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import errno
import json
import socket
import sys
import time
from collections.abc import Callable
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from sqlalchemy import Engine

from spendwatch.errors import ConfigurationError
from spendwatch.settings import Settings

if TYPE_CHECKING:
    from spendwatch.demo_data import Plan

__all__ = ["DEMO_MARKER", "budget_file", "overrun_budget", "register", "run_demo"]

#: rollup_state row written once a demo load is complete (its value: JSON facts).
DEMO_MARKER = "demo_loaded"
_ENVIRONMENT = "demo"
_SHOWN = 10  # alert emails listed in the summary


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    demo = sub.add_parser(
        "demo", help="load 90 days of a demo organisation's usage and open the dashboard",
        description="Create (or reuse) a separate demo database (DATA_DIR/demo.db, or the "
                    "global --database-url, which must be empty or hold only demo data) "
                    "with 90 days of a demo organisation's usage, roll it up, run the "
                    "example budgets' alerts (emails to DATA_DIR/demo/outbox) and serve "
                    "the dashboard.")
    demo.add_argument("--days", type=int, default=90, help="days of history (default 90)")
    demo.add_argument("--seed", type=int, default=42, help="random seed (default 42)")
    demo.add_argument("--reset", action="store_true",
                      help="delete the demo data and generate it again")
    demo.add_argument("--no-serve", action="store_true",
                      help="load the data, print the summary and exit")
    demo.add_argument("--port", type=int, default=8050, help="dashboard port (default 8050)")
    demo.set_defaults(handler=run_demo)


def budget_file() -> Path:
    """The example budgets the demo applies."""
    return Path(str(resources.files("spendwatch") / "demo_budgets.toml"))


def price_file() -> Path:
    """The organisation's price rows the demo applies."""
    return Path(str(resources.files("spendwatch") / "demo_prices.toml"))


def run_demo(args: argparse.Namespace, settings: Settings) -> int:
    from models.database import redact

    if not 1 <= args.days <= 400:
        raise ConfigurationError(f"--days {args.days}: give a number of days from 1 to 400, "
                                 f"e.g. --days 90")
    if not args.no_serve:
        _check_port(settings.dashboard_host, args.port)
    explicit = getattr(args, "database_url", None)
    url = explicit or f"sqlite:///{Path(settings.data_dir) / 'demo.db'}"
    # The demo's own folder (spool, alert outbox), apart from a real installation's.
    folder = Path(settings.data_dir) / "demo"
    demo_settings = dataclasses.replace(
        settings, database_url=url, data_dir=str(folder), spool_dir=str(folder / "spool"),
        environment=_ENVIRONMENT, smtp_host="", alert_webhook_url="",
        dashboard_url=f"http://127.0.0.1:{args.port}")
    print(f"demo database: {redact(url)}", file=sys.stderr)
    engine = _prepare(demo_settings, reset=args.reset, default_file=explicit is None)
    marker = _marker(engine)
    _apply_prices(engine)
    evaluate = _apply_budgets(engine, demo_settings)
    if marker is None:
        started = time.perf_counter()
        generated, plan = _load(engine, demo_settings, args.days, args.seed, evaluate)
        seconds = time.perf_counter() - started
        marker = {"events": generated, "days": args.days, "seed": args.seed,
                  "loaded_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                  "seconds": round(seconds, 1), **plan.facts()}
        _set_marker(engine, marker)
        print(f"generated {generated:,} events; loaded and rolled up in {seconds:.1f} s",
              file=sys.stderr)
    else:
        ends = str(marker.get("end", marker["loaded_at"]))[:10]
        stale = ends < dt.datetime.now(dt.UTC).date().isoformat()
        print(f"reusing the demo data loaded at {marker['loaded_at']} "
              f"({marker['events']:,} events, {marker['days']} days"
              f"{', ending ' + ends if stale else ''}); `spendwatch demo --reset` generates "
              f"it again{' up to today' if stale else ''}", file=sys.stderr)
    outbox = None
    if evaluate is not None:
        evaluate(dt.datetime.now(dt.UTC))
        outbox = Path(demo_settings.data_dir) / "outbox"
    _summary(engine, demo_settings, outbox)
    if args.no_serve:
        print(f"\ndashboard: not started (--no-serve); `spendwatch demo --port {args.port}` "
              f"serves this data at http://127.0.0.1:{args.port}/")
        return 0
    return _serve(engine, demo_settings, args.port)


# -- the demo database -----------------------------------------------------------------
def _prepare(settings: Settings, *, reset: bool, default_file: bool) -> Engine:
    """The demo database, emptied when ``reset`` or when a load was interrupted."""
    from models.database import open_database, redact
    from spendwatch.errors import SchemaOutdatedError

    try:
        engine = open_database(settings.database_url)
    except SchemaOutdatedError as exc:
        if not default_file:
            raise
        if not reset:
            raise SchemaOutdatedError(f"{exc}; or start the demo afresh with: "
                                      f"spendwatch demo --reset") from None
        # a demo database made by another spendwatch version: start afresh
        path = Path(settings.database_url.removeprefix("sqlite:///"))
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        engine = open_database(settings.database_url)
    if _has_events(engine) and _has_foreign_events(engine):
        engine.dispose()
        raise ConfigurationError(
            f"the database {redact(settings.database_url)} holds usage events the demo did "
            f"not make (environment other than {_ENVIRONMENT!r}); the demo needs its own "
            f"database: drop --database-url to use the demo.db file in the data folder, "
            f"or give an empty database")
    complete = _marker(engine) is not None
    if complete and not reset:
        return engine
    outbox = Path(settings.data_dir) / "outbox"
    for old in outbox.glob("*.eml") if outbox.is_dir() else ():
        old.unlink()  # the previous demo's alert emails
    if not _has_events(engine):
        return engine
    print("deleting the previous demo data" + ("" if complete else
          " (an earlier load did not finish)"), file=sys.stderr)
    # Rows, not the file: a dashboard may have the demo database open.
    from models.database import begin_write
    from models.schema import metadata

    with begin_write(engine) as conn:
        for table in reversed(metadata.sorted_tables):
            conn.execute(table.delete())
    return engine


def _has_events(engine: Engine) -> bool:
    from sqlalchemy import select

    from models.schema import usage_events

    with engine.connect() as conn:
        return conn.execute(select(usage_events.c.id).limit(1)).first() is not None


def _has_foreign_events(engine: Engine) -> bool:
    from sqlalchemy import or_, select

    from models.schema import usage_events as t

    query = select(t.c.id).where(or_(t.c.environment.is_(None),
                                     t.c.environment != _ENVIRONMENT)).limit(1)
    with engine.connect() as conn:
        return conn.execute(query).first() is not None


def _marker(engine: Engine) -> dict[str, object] | None:
    from sqlalchemy import select

    from models.schema import rollup_state

    with engine.connect() as conn:
        value = conn.execute(select(rollup_state.c.value).where(
            rollup_state.c.name == DEMO_MARKER)).scalar()
    return None if value is None else json.loads(value)


def _set_marker(engine: Engine, value: dict[str, object]) -> None:
    from sqlalchemy import delete, insert

    from models.database import begin_write
    from models.schema import rollup_state

    with begin_write(engine) as conn:
        conn.execute(delete(rollup_state).where(rollup_state.c.name == DEMO_MARKER))
        conn.execute(insert(rollup_state).values(name=DEMO_MARKER, value=json.dumps(value),
                                                 updated_at=dt.datetime.now(dt.UTC)))


def overrun_budget() -> Decimal:
    """The monthly budget of the team that overruns it, from ``demo_budgets.toml``."""
    import tomllib

    from spendwatch.demo_data import OVERRUN_TEAM

    with budget_file().open("rb") as f:
        data = tomllib.load(f)
    for budget in data.get("budget", []):
        if budget.get("scope") == {"team": OVERRUN_TEAM} and budget["period"] == "monthly":
            return Decimal(str(budget["amount"]))
    raise ConfigurationError(f"{budget_file()} has no monthly budget for team "  # pragma: no cover
                             f"{OVERRUN_TEAM!r}; add one")


# -- loading ---------------------------------------------------------------------------
def _runaway_call_usd(engine: Engine, on: dt.date) -> Decimal:
    """What one call of the runaway agent loop costs at list price (to size it)."""
    from models.pricing import PriceBook
    from spendwatch.demo_data import RUNAWAY

    price = PriceBook.load(engine).list_price(RUNAWAY.model, RUNAWAY.tier, False, on)
    if price is None:  # pragma: no cover - gpt-4.1 is in every price list
        return Decimal("0.0624")
    return (RUNAWAY.input_tokens * price.input_per_mtok
            + RUNAWAY.output_tokens * price.output_per_mtok) / 1_000_000


def _load(engine: Engine, settings: Settings, days: int, seed: int,
          evaluate: Callable[[dt.datetime], None] | None) -> tuple[int, Plan]:
    """Make the plan and load it (:func:`spendwatch.demo_load.load`): returns how many
    events were generated, and the plan."""
    from spendwatch.demo_data import make_plan
    from spendwatch.demo_load import load

    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    plan = make_plan(now - dt.timedelta(seconds=5), days, settings.timezone, seed,
                     overrun_budget_usd=overrun_budget(),
                     runaway_call_usd=_runaway_call_usd(engine, now.date()))
    return load(engine, settings, plan, seed, evaluate), plan


# -- prices, budgets, alerts, summary, serve ----------------------------------------------
def _apply_prices(engine: Engine) -> None:
    """Apply the demo's own price rows (before the rollups price anything)."""
    from models.price_file import apply_prices, load_price_file

    path = price_file()
    apply_prices(engine, load_price_file(path), source=str(path))


def _apply_budgets(engine: Engine,
                   settings: Settings) -> Callable[[dt.datetime], None] | None:
    """Apply the example budgets (when this spendwatch has budgets); returns how to
    evaluate the alerts at a moment, when it has alert evaluation."""
    import alerts

    apply = getattr(alerts, "apply_budget_file", None)
    if apply is not None:
        apply(engine, budget_file(), actor="spendwatch demo")
    evaluate_alerts = getattr(alerts, "evaluate_alerts", None)
    if evaluate_alerts is None:
        print("(alert evaluation is not part of this spendwatch yet)", file=sys.stderr)
        return None

    def evaluate(at: dt.datetime) -> None:
        evaluate_alerts(engine, settings, now=at)

    return evaluate


def _summary(engine: Engine, settings: Settings, outbox: Path | None) -> None:
    from sqlalchemy import func, select

    from models.reports import spend_report
    from models.schema import usage_events
    from spendwatch.tables import format_table

    with engine.connect() as conn:
        count = conn.execute(select(func.count()).select_from(usage_events)).scalar() or 0
    today = dt.datetime.now(ZoneInfo(settings.timezone)).date()
    month = today.replace(day=1)
    rows = spend_report(engine, by=["team"], period="month", since=month, until=today)
    table = [(r.keys["team"] or "(unallocated)", f"{r.requests:,}",
              "unpriced tokens" if r.cost_contract is None else f"${r.cost_contract:,.2f}",
              f"{r.tokens['unpriced_tokens']:,}" if r.unpriced else "")
             for r in rows]
    print(f"\n{count:,} usage events in the demo database. Spend by team this month "
          f"({month:%B %Y}, contracted prices):")
    print(format_table(("team", "requests", "spend", "unpriced tokens"), table,
                       [False, True, True, True]))
    if outbox is not None:
        emails = sorted(outbox.glob("*.eml") if outbox.is_dir() else [],
                        key=lambda p: (p.stat().st_mtime_ns, p.name))
        print(f"\nAlert emails ({len(emails)}, written to {outbox}), the latest:")
        if len(emails) > _SHOWN:
            print(f"  ... {len(emails) - _SHOWN} earlier")
        for path in emails[-_SHOWN:]:
            print(f"  {_subject(path)}")


def _subject(path: Path) -> str:
    from email import message_from_binary_file, policy

    with path.open("rb") as f:
        subject = message_from_binary_file(f, policy=policy.default)["Subject"]
    return " ".join(str(subject or path.name).split())


def _serve(engine: Engine, settings: Settings, port: int) -> int:
    import dashboard

    serve = getattr(dashboard, "serve", None)
    if serve is None:
        print("The dashboard is not part of this spendwatch yet; explore the demo with:\n"
              f"  spendwatch --database-url {settings.database_url} report spend --by "
              f"team,project", file=sys.stderr)
        return 0
    print(flush=True)
    serve(settings, settings.dashboard_host, port, engine=engine)
    return 0


def _check_port(host: str, port: int) -> None:
    """Fail before loading anything when the dashboard's port is taken."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise ConfigurationError(f"cannot listen on {host}:{port} ({exc}); check "
                                         f"dashboard_host, or use --no-serve") from None
            raise ConfigurationError(f"port {port} is in use (another dashboard or "
                                     f"program), so the demo could not serve on it; run: "
                                     f"spendwatch demo --port {port + 1}") from None
