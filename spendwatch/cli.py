"""The ``spendwatch`` command."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import time
from collections.abc import Callable, Sequence

from sqlalchemy import Engine

from spendwatch.cli_common import open_engine
from spendwatch.errors import SpendwatchError
from spendwatch.settings import SETTINGS, Settings, load_settings

__all__ = ["main"]

Handler = Callable[[argparse.Namespace, Settings], int]


def _db_location(settings: Settings) -> str:
    from models.database import redact

    return redact(settings.database_url)


def _engine(settings: Settings, *, auto_create: bool = True) -> Engine:
    return open_engine(settings, auto_create=auto_create)


# -- db ---------------------------------------------------------------------------
def cmd_db_upgrade(args: argparse.Namespace, settings: Settings) -> int:
    from models.database import create_db_engine, upgrade

    print(f"database: {_db_location(settings)}", file=sys.stderr)
    engine = create_db_engine(settings.database_url)
    before, after = upgrade(engine)
    if before == after:
        print(f"schema already at revision {after}")
    else:
        print(f"schema upgraded from {before or 'empty'} to {after}")
    return 0


def cmd_db_current(args: argparse.Namespace, settings: Settings) -> int:
    from models.database import create_db_engine, current_revision, head_revision

    engine = create_db_engine(settings.database_url)
    with engine.connect() as conn:
        current = current_revision(conn)
    head = head_revision()
    print(f"database: {_db_location(settings)}")
    print(f"revision: {current or 'none (empty database)'}; this spendwatch: {head}")
    return 0 if current == head else 1


# -- events -----------------------------------------------------------------------
_TAIL_COLUMNS = ("ts", "endpoint", "model", "team", "project", "user", "input_tokens",
                 "cached_input_tokens", "output_tokens", "latency_ms", "status_code",
                 "error_kind", "attempts")
_TAIL_HEADERS = ("time (UTC)", "endpoint", "model", "team", "project", "user", "in", "cached",
                 "out", "ms", "status", "error", "tries")


def _tail_rows(engine: object, limit: int, after: object | None) -> list[Sequence[object]]:
    from sqlalchemy import select

    from models.schema import usage_events as t

    cols = [t.c[name] for name in _TAIL_COLUMNS]
    query = select(*cols, t.c.model_requested, t.c.usage_reported, t.c.id)
    if after is not None:
        query = query.where(t.c.id > after).order_by(t.c.id.asc())
    else:
        query = query.order_by(t.c.id.desc()).limit(limit)
    with engine.connect() as conn:  # type: ignore[attr-defined]
        rows = list(conn.execute(query))
    if after is None:
        rows.reverse()
    return rows


def _format_tail(rows: Sequence[Sequence[object]]) -> list[list[object]]:
    out: list[list[object]] = []
    for r in rows:
        values = list(r[: len(_TAIL_COLUMNS)])
        values[0] = values[0].strftime("%Y-%m-%d %H:%M:%S")  # type: ignore[union-attr]
        values[2] = values[2] or r[len(_TAIL_COLUMNS)] or "?"
        if not r[len(_TAIL_COLUMNS) + 1]:
            values[6] = values[7] = values[8] = "n/a"
        values[9] = f"{values[9]:.0f}" if values[9] is not None else ""
        out.append(values)
    return out


def cmd_events_tail(args: argparse.Namespace, settings: Settings) -> int:
    from spendwatch.tables import format_table

    engine = _engine(settings)
    rows = _tail_rows(engine, args.n, None)
    right = [False] * 6 + [True] * 5 + [False, True]
    if not rows and not args.follow:
        print("no events yet: wrap a client with collector.instrument(OpenAI()) and make "
              "a call, or run `spendwatch demo`")
        return 0
    print(format_table(_TAIL_HEADERS, _format_tail(rows), right))
    last = rows[-1][-1] if rows else None
    while args.follow:
        time.sleep(args.interval)
        more = _tail_rows(engine, 0, last) if last is not None else _tail_rows(engine, args.n,
                                                                                  None)
        if more:
            body = format_table(_TAIL_HEADERS, _format_tail(more), right).splitlines()[2:]
            print("\n".join(body), flush=True)
            last = more[-1][-1]
    return 0


# -- spool ------------------------------------------------------------------------
def cmd_spool_status(args: argparse.Namespace, settings: Settings) -> int:
    from collector.spool import Spool

    spool = Spool(settings.spool_dir)
    files = spool.files()
    failed = list((spool.directory / "failed").glob("*.jsonl"))
    print(f"spool: {spool.directory}")
    print(f"{len(files)} file(s), {spool.pending_events()} event(s) waiting; "
          f"{len(failed)} file(s) in failed/")
    return 0


def cmd_spool_replay(args: argparse.Namespace, settings: Settings) -> int:
    from collector.sink import is_transient
    from collector.spool import Spool
    from models.event_store import EventStore

    store = EventStore(_engine(settings))
    spool = Spool(settings.spool_dir)
    n = spool.replay(lambda events: store.insert(events, replay=True), is_transient)
    print(f"replayed {n} event(s); {len(spool.files())} file(s) left")
    return 0


# -- settings ---------------------------------------------------------------------
#: Settings whose values are secrets: ``spendwatch settings`` says whether they are set.
_SECRET_MARKERS = ("password", "_key", "secret", "token")


def _shown(name: str, value: object) -> object:
    if any(marker in name for marker in _SECRET_MARKERS):
        return "(set, hidden)" if value else ""
    if name == "database_url" and value:
        from models.database import redact

        return redact(str(value))
    return value


def cmd_settings(args: argparse.Namespace, settings: Settings) -> int:
    from spendwatch.tables import format_table

    if args.markdown:
        print("| setting | environment variable | default | meaning |")
        print("|---|---|---|---|")
        for s in SETTINGS:
            default = f"`{s.default}`" if s.default else "(see meaning)"
            print(f"| `{s.name}` | `{s.env}` | {default} | {s.help} |")
        return 0
    rows = [(s.name, s.env, _shown(s.name, getattr(settings, s.name))) for s in SETTINGS]
    print(f"config file: {settings.config_file}")
    print(format_table(("setting", "environment variable", "value"), rows))
    return 0


# -- parser -----------------------------------------------------------------------------
#: Modules that add their own commands: each has ``register(subparsers)``.
_COMMAND_MODULES = (
    "spendwatch.cli_prices",      # prices apply|list|show|check|update
    "spendwatch.cli_spend",       # rollup, reprice, report spend, scheduler
    "spendwatch.cli_alerts",      # budgets ..., alerts ...
    "spendwatch.cli_dashboard",   # serve
    "spendwatch.cli_chargeback",  # report chargeback, month close|reopen|status, reconcile
    "spendwatch.demo",            # demo
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spendwatch",
        description="Usage monitoring and cost analytics for the OpenAI API.",
        epilog="Settings come from these options, then SPENDWATCH_* environment variables, "
               "then the config file; `spendwatch settings` lists them.")
    parser.add_argument("--database-url", help="database URL (SPENDWATCH_DATABASE_URL)")
    parser.add_argument("--data-dir", help="data folder (SPENDWATCH_DATA_DIR)")
    parser.add_argument("--timezone", help="reporting timezone (SPENDWATCH_TIMEZONE)")
    parser.add_argument("--rollup-interval", help="seconds between scheduled rollups "
                        "(SPENDWATCH_ROLLUP_INTERVAL)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    db = sub.add_parser("db", help="the database schema")
    db_sub = db.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    db_sub.add_parser("upgrade", help="create or upgrade the schema").set_defaults(
        handler=cmd_db_upgrade)
    db_sub.add_parser("current", help="show the schema revision").set_defaults(
        handler=cmd_db_current)

    events = sub.add_parser("events", help="recorded usage events")
    ev_sub = events.add_subparsers(dest="events_command", metavar="ACTION", required=True)
    tail = ev_sub.add_parser("tail", help="print the latest events as a table")
    tail.add_argument("-n", type=int, default=20, help="how many (default 20)")
    tail.add_argument("-f", "--follow", action="store_true", help="keep printing new events")
    tail.add_argument("--interval", type=float, default=1.0, help="seconds between polls")
    tail.set_defaults(handler=cmd_events_tail)

    spool = sub.add_parser("spool", help="events kept on disk while the database was down")
    sp_sub = spool.add_subparsers(dest="spool_command", metavar="ACTION", required=True)
    sp_sub.add_parser("status", help="what is waiting").set_defaults(handler=cmd_spool_status)
    sp_sub.add_parser("replay", help="write it to the database now").set_defaults(
        handler=cmd_spool_replay)

    st = sub.add_parser("settings", help="every setting with its value")
    st.add_argument("--markdown", action="store_true", help="the README's settings table")
    st.set_defaults(handler=cmd_settings)

    for module in _COMMAND_MODULES:
        importlib.import_module(module).register(sub)

    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 0
    try:
        settings = load_settings({"database_url": args.database_url,
                                  "data_dir": args.data_dir, "timezone": args.timezone,
                                  "rollup_interval": args.rollup_interval})
        return handler(args, settings)
    except SpendwatchError as exc:
        print(f"spendwatch: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
