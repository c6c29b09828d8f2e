"""``spendwatch report chargeback``, ``spendwatch month close|reopen|status``,
``spendwatch allocation apply|show`` and ``spendwatch reconcile``; the scheduler's
chargeback work (corrections of closed months, the daily reconciliation) runs after
each rollup."""

from __future__ import annotations

import argparse
import datetime as dt
import getpass
import logging
import socket
import sys
from decimal import Decimal
from pathlib import Path

from spendwatch.cli_common import open_engine, today
from spendwatch.errors import ConfigurationError
from spendwatch.settings import Settings

__all__ = ["register",
           "register_reports"]

log = logging.getLogger("spendwatch.chargeback")


def _who() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # pragma: no cover - no passwd entry
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


# -- report chargeback ------------------------------------------------------------------
def cmd_report_chargeback(args: argparse.Namespace, settings: Settings) -> int:
    from models.chargeback import chargeback_report
    from models.corrections import post_corrections
    from models.exports import (
        atomic_output,
        chargeback_csv,
        chargeback_table,
        focus_csv,
        month_focus_rows,
        write_chargeback_xlsx,
    )
    from models.months import parse_month

    now = today(settings)
    month = parse_month(args.month, now) if args.month else now.replace(day=1)
    if args.format == "xlsx" and not args.output:
        raise ConfigurationError("--format xlsx writes a file: add -o chargeback.xlsx")
    engine = open_engine(settings)
    post_corrections(engine, timezone=settings.timezone)
    adjustment = None
    if args.billing_adjustment:
        from models.reconciliation import parse_project_map, reconciliation

        rec = reconciliation(engine, month, parse_project_map(settings.openai_projects))
        if rec.billed == 0 and rec.estimated == 0:
            raise ConfigurationError(f"no OpenAI bill is stored for {month:%Y-%m}: run "
                                     f"`spendwatch reconcile` first")
        adjustment = rec.drift
    report = chargeback_report(engine, month, by=args.by, adjustment=adjustment)
    if args.format == "xlsx":
        detail = chargeback_report(engine, month, by="project", config=report.config,
                                   adjustment=adjustment)
        with atomic_output(args.output) as tmp:
            write_chargeback_xlsx(report, detail, tmp)
        print(f"wrote {args.output}: {month:%Y-%m} ({report.status}), total "
              f"${report.total:,.2f}", file=sys.stderr)
        return 0
    if args.format == "focus":
        from models.reconciliation import parse_project_map

        rows = month_focus_rows(engine, report, timezone=settings.timezone,
                                project_map=parse_project_map(settings.openai_projects))

        def write(stream: object) -> None:
            focus_csv(rows, stream)  # type: ignore[arg-type]
    elif args.format == "csv":
        def write(stream: object) -> None:
            chargeback_csv(report, stream)  # type: ignore[arg-type]
    else:
        def write(stream: object) -> None:
            print(chargeback_table(report), file=stream)  # type: ignore[arg-type]
    if args.output:
        with atomic_output(args.output) as tmp, tmp.open("w", newline="",
                                                         encoding="utf-8") as fh:
            write(fh)
        print(f"wrote {args.output}: {month:%Y-%m} ({report.status}), total "
              f"${report.total:,.2f}", file=sys.stderr)
    else:
        write(sys.stdout)
    return 0


# -- month ---------------------------------------------------------------------------------
def cmd_month_close(args: argparse.Namespace, settings: Settings) -> int:
    from models.months import close_month, parse_month

    month = parse_month(args.month, today(settings), allow_current=False)
    engine = open_engine(settings)
    rows = close_month(engine, month, by=args.by or _who(), timezone=settings.timezone,
                       today=today(settings))
    print(f"closed {month:%Y-%m}: {rows} daily row(s) frozen; later changes to it go to the "
          f"next open month as corrections")
    return 0


def cmd_month_reopen(args: argparse.Namespace, settings: Settings) -> int:
    from models.months import parse_month, reopen_month

    month = parse_month(args.month, today(settings))
    engine = open_engine(settings)
    reopen_month(engine, month, reason=args.reason, by=args.by or _who(),
                 timezone=settings.timezone)
    print(f"reopened {month:%Y-%m} (reason recorded: {args.reason.strip()}); its rollups "
          f"were rebuilt from raw events")
    return 0


def cmd_month_status(args: argparse.Namespace, settings: Settings) -> int:
    from models.corrections import post_corrections
    from models.months import month_statuses
    from spendwatch.tables import format_table

    engine = open_engine(settings)
    post_corrections(engine, timezone=settings.timezone)
    rows = []
    for s in month_statuses(engine):
        last = s.log[-1] if s.log else None
        history = (f"{last[0]} {last[1]:%Y-%m-%d %H:%M} by {last[2]}"
                   + (f": {last[3]}" if last[3] else "")) if last else ""
        rows.append((f"{s.month:%Y-%m}", "closed" if s.closed else "open",
                     f"{s.total:,.2f}", f"{s.corrections:,.2f}" if s.corrections else "",
                     history))
    if not rows:
        print("no months yet: run `spendwatch rollup` first")
        return 0
    print(format_table(("month", "status", "total (USD)", "corrections", "last change"),
                       rows, [False, False, True, True, False]))
    return 0


# -- allocation ------------------------------------------------------------------------------
def cmd_allocation_apply(args: argparse.Namespace, settings: Settings) -> int:
    from models.allocation_file import load_allocation_file
    from models.chargeback import apply_allocation

    load_allocation_file(args.file)  # the file's own problems first, without a database
    engine = open_engine(settings)
    config = apply_allocation(engine, Path(args.file), dry_run=args.dry_run)
    verb = "would apply" if args.dry_run else "applied"
    print(f"{verb} {args.file}: {len(config.cost_centres)} cost centre(s), "
          f"{len(config.rules)} shared-cost rule(s)")
    return 0


def cmd_allocation_show(args: argparse.Namespace, settings: Settings) -> int:
    from models.chargeback import current_allocation

    config = current_allocation(open_engine(settings))
    if not config.text:
        print("no allocation file applied: everything is charged to the team that spent "
              "it; see `spendwatch allocation apply --help`")
        return 0
    print(f"# {config.source}\n{config.text}")
    return 0


# -- reconcile ---------------------------------------------------------------------------------
def cmd_reconcile(args: argparse.Namespace, settings: Settings) -> int:
    from models.reconciliation import fetch_billed_costs, parse_project_map, reconciliation
    from models.reports import parse_day
    from spendwatch.tables import format_table

    utc_today = dt.datetime.now(dt.UTC).date()
    until = parse_day(args.until, "--until") if args.until else utc_today
    since = parse_day(args.since, "--since") if args.since else until.replace(day=1)
    if since > utc_today:
        raise ConfigurationError(f"--since {since} is in the future (today is {utc_today} UTC)")
    project_map = parse_project_map(settings.openai_projects)
    engine = open_engine(settings)
    if not args.no_fetch:
        result = fetch_billed_costs(engine, admin_key=settings.openai_admin_key,
                                    base_url=settings.openai_admin_base_url, since=since,
                                    until=until)
        if result.rows:
            print(f"read {result.rows} billed line(s) for {result.days} day(s) in "
                  f"{result.pages} page(s): ${result.total:,.2f}", file=sys.stderr)
        else:
            print(f"OpenAI's Costs API has no costs for {since} .. {until} (nothing billed "
                  f"yet, or the admin key belongs to another organisation); amounts stored "
                  f"earlier were kept", file=sys.stderr)
    month = since.replace(day=1)
    while month <= until:
        rec = reconciliation(engine, month, project_map)
        rows = [(r.day.isoformat(), r.project, f"{r.estimated:,.2f}",
                 "" if r.billed is None else f"{r.billed:,.2f}",
                 "" if r.difference is None else f"{r.difference:+,.2f}",
                 "" if r.difference_pct is None else f"{r.difference_pct:+.1f}%")
                for r in rec.rows if since <= r.day <= until]
        print(f"{month:%Y-%m}: estimated ${rec.estimated:,.2f}, billed ${rec.billed:,.2f}, "
              f"drift ${rec.drift:+,.2f}"
              + ("" if rec.drift_pct is None else f" ({rec.drift_pct:+.2f}%)"))
        if rows:
            print(format_table(("day (UTC)", "project", "estimated", "billed", "difference",
                                "%"), rows, [False, False, True, True, True, True]))
        if rec.drift_pct is not None and abs(rec.drift_pct) > Decimal(
                str(settings.reconcile_drift_threshold)):
            print(f"drift above the {settings.reconcile_drift_threshold:g}% threshold: check "
                  f"prices (`spendwatch prices check`) and traffic the collector does not see")
        month = (month + dt.timedelta(days=32)).replace(day=1)
    return 0


# -- parsers -------------------------------------------------------------------------------------
def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the month, allocation and reconciliation commands."""
    month = sub.add_parser("month", help="close, reopen and list chargeback months")
    m_sub = month.add_subparsers(dest="month_command", metavar="ACTION", required=True)
    close = m_sub.add_parser("close", help="freeze a month's rollups and reports")
    close.add_argument("month", help="YYYY-MM (a month that has ended)")
    close.add_argument("--by", help="who closes it (default user@host)")
    close.set_defaults(handler=cmd_month_close)
    reopen = m_sub.add_parser("reopen", help="reopen a closed month (needs a reason)")
    reopen.add_argument("month", help="YYYY-MM")
    reopen.add_argument("--reason", required=True, help="why (recorded)")
    reopen.add_argument("--by", help="who reopens it (default user@host)")
    reopen.set_defaults(handler=cmd_month_reopen)
    m_sub.add_parser("status", help="every month: open or closed, and its last change"
                     ).set_defaults(handler=cmd_month_status)

    alloc = sub.add_parser("allocation", help="cost centres and shared-cost rules")
    a_sub = alloc.add_subparsers(dest="allocation_command", metavar="ACTION", required=True)
    apply = a_sub.add_parser("apply", help="apply an allocation file (TOML)")
    apply.add_argument("file")
    apply.add_argument("--dry-run", action="store_true", help="validate only")
    apply.set_defaults(handler=cmd_allocation_apply)
    a_sub.add_parser("show", help="the allocation file in force").set_defaults(
        handler=cmd_allocation_show)

    rec = sub.add_parser("reconcile", help="compare estimates with OpenAI's Costs API")
    rec.add_argument("--since", help="first UTC day (default: the 1st of this month)")
    rec.add_argument("--until", help="last UTC day (default: today)")
    rec.add_argument("--no-fetch", action="store_true",
                     help="compare with the amounts already stored")
    rec.set_defaults(handler=cmd_reconcile)


def register_reports(rep_sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``report chargeback`` under ``spendwatch report``."""
    cb = rep_sub.add_parser("chargeback", help="monthly chargeback by team, project, "
                            "cost centre or user")
    cb.add_argument("--month", help="YYYY-MM (default: this month)")
    cb.add_argument("--by", choices=("team", "project", "cost-centre", "user"), default="team")
    cb.add_argument("--format", choices=("table", "csv", "xlsx", "focus"), default="table")
    cb.add_argument("-o", "--output", help="write to this file (required for xlsx)")
    cb.add_argument("--billing-adjustment", action="store_true",
                    help="add the difference between OpenAI's bill and the estimate as a "
                         "line spread over teams in proportion to their estimates")
    cb.set_defaults(handler=cmd_report_chargeback)
