"""``spendwatch rollup``, ``spendwatch reprice`` and ``spendwatch report spend``."""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import sys
from decimal import Decimal

from spendwatch.cli_common import open_engine, today
from spendwatch.errors import ConfigurationError
from spendwatch.settings import Settings

__all__ = ["register"]


_engine = open_engine
_today = today


def _range(args: argparse.Namespace, settings: Settings) -> tuple[dt.date | None, dt.date | None]:
    from models.reports import parse_day

    today = _today(settings)
    since = parse_day(args.since, "--since") if args.since else None
    until = parse_day(args.until, "--until") if getattr(args, "until", None) else None
    if since is not None and since > today:
        raise ConfigurationError(f"--since {since} is in the future (today is {today} in "
                                 f"{settings.timezone})")
    if since is not None and until is not None and since > until:
        raise ConfigurationError(f"--since {since} is after --until {until}; swap them")
    return since, until


def cmd_rollup(args: argparse.Namespace, settings: Settings) -> int:
    from models.rollups import RollupEngine
    from spendwatch.progress import ProgressBar

    since, until = _range(args, settings)
    engine = _engine(settings)
    result = RollupEngine(engine, timezone=settings.timezone).run(
        since=since, until=until, rebuild=args.rebuild, progress=ProgressBar("rollup"))
    print(f"rolled up {len(result.days)} day(s) into {result.rows} row(s), "
          f"{len(result.months)} month(s), in {result.seconds:.2f}s "
          f"(timezone {settings.timezone})")
    if result.skipped_closed:
        print(f"left {len(result.skipped_closed)} day(s) of closed months unchanged")
    return 0


def cmd_reprice(args: argparse.Namespace, settings: Settings) -> int:
    from models.rollups import RollupEngine
    from spendwatch.progress import ProgressBar

    since, _ = _range(args, settings)
    engine = _engine(settings)
    result = RollupEngine(engine, timezone=settings.timezone).run(
        since=since, until=_today(settings), progress=ProgressBar("reprice"))
    print(f"repriced {len(result.days)} day(s) from {since} ({result.rows} row(s))")
    if result.skipped_closed:
        print(f"{len(result.skipped_closed)} day(s) belong to closed months and were not "
              f"changed; their corrections go to the next open month")
    return 0


def _money(value: Decimal | None) -> str:
    return "" if value is None else f"{value:,.4f}"


def cmd_report_spend(args: argparse.Namespace, settings: Settings) -> int:
    from models.reports import spend_report

    since, until = _range(args, settings)
    today = _today(settings)
    since = since or today.replace(day=1)
    until = until or today
    by = [d.strip() for d in args.by.split(",") if d.strip()]
    engine = _engine(settings)
    rows = spend_report(engine, by=by, period=args.period, since=since, until=until)
    headers = ["period", *by, "requests", "errors", "input_tokens", "cached_input_tokens",
               "output_tokens", "reasoning_tokens", "unpriced_tokens", "cost_list_usd",
               "cost_contract_usd"]

    def values(r: object) -> list[object]:
        t = r.tokens  # type: ignore[attr-defined]
        return [r.period.isoformat(), *r.keys.values(), r.requests, r.errors,  # type: ignore[attr-defined]
                t["input_tokens"], t["cached_input_tokens"], t["output_tokens"],
                t["reasoning_tokens"], t["unpriced_tokens"], r.cost_list, r.cost_contract]  # type: ignore[attr-defined]

    if args.format == "json":
        out = [dict(zip(headers, [str(v) if isinstance(v, Decimal) else v
                                  for v in values(r)], strict=True)) for r in rows]
        json.dump({"since": since.isoformat(), "until": until.isoformat(),
                   "timezone": settings.timezone, "rows": out}, sys.stdout, indent=2)
        print()
    elif args.format == "csv":
        writer = csv.writer(sys.stdout)
        writer.writerow(headers)
        for r in rows:
            writer.writerow(["" if v is None else v for v in values(r)])
    else:
        from spendwatch.tables import format_table

        if not rows:
            print(f"no spend between {since} and {until}: run `spendwatch rollup` first, or "
                  f"record usage with collector.instrument()")
            return 0
        table_rows = []
        for r in rows:
            v = values(r)
            v[-2], v[-1] = _money(v[-2]), _money(v[-1])  # type: ignore[arg-type]
            table_rows.append(v)
        right = [False] * (1 + len(by)) + [True] * 9
        print(format_table(headers, table_rows, right))
        total_list = sum((r.cost_list or Decimal(0) for r in rows), Decimal(0))
        total_contract = sum((r.cost_contract or Decimal(0) for r in rows), Decimal(0))
        print(f"\n{since} .. {until} ({settings.timezone}): list ${total_list:,.2f}, "
              f"contracted ${total_contract:,.2f}")
        if any(r.unpriced for r in rows):
            print("rows with unpriced tokens have no cost: add a price with "
                  "`spendwatch prices apply FILE` (see `spendwatch prices check`)")
    return 0


def cmd_scheduler(args: argparse.Namespace, settings: Settings) -> int:
    import logging

    from alerts.scheduler import SpendScheduler

    logging.getLogger("spendwatch").setLevel(logging.INFO)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    scheduler = SpendScheduler(_engine(settings), settings)
    if args.once:
        result = scheduler.run_once()
        print("another scheduler holds the lease: nothing done" if result is None else
              f"rolled up {len(result.days)} day(s) into {result.rows} row(s)")
        return 0
    scheduler.run_forever()
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    sched = sub.add_parser("scheduler", help="run the rollup and alert jobs on a schedule")
    sched.add_argument("--once", action="store_true",
                       help="run the rollup (and its alerts) once and exit, e.g. from cron")
    sched.set_defaults(handler=cmd_scheduler)

    rollup = sub.add_parser("rollup", help="roll events up into daily and monthly spend")
    rollup.add_argument("--since", help="re-aggregate from this local day (YYYY-MM-DD)")
    rollup.add_argument("--until", help="...up to this local day")
    rollup.add_argument("--rebuild", action="store_true", help="rebuild every rollup row")
    rollup.set_defaults(handler=cmd_rollup)

    reprice = sub.add_parser("reprice", help="recompute costs after a price change")
    reprice.add_argument("--since", required=True, help="first local day to reprice")
    reprice.set_defaults(handler=cmd_reprice)

    report = sub.add_parser("report", help="reports read from rollups")
    rep_sub = report.add_subparsers(dest="report_command", metavar="REPORT", required=True)
    spend = rep_sub.add_parser("spend", help="spend by model, team, project, ...")
    spend.add_argument("--by", default="model,team,project",
                       help="comma-separated: model, team, project, endpoint, "
                            "service_tier, long_context (the input-token threshold its "
                            "requests exceeded, 0 for none; default model,team,project)")
    spend.add_argument("--period", choices=("day", "month"), default="month")
    spend.add_argument("--since", help="first local day (default: start of this month)")
    spend.add_argument("--until", help="last local day (default: today)")
    spend.add_argument("--format", choices=("table", "csv", "json"), default="table")
    spend.set_defaults(handler=cmd_report_spend)

    from spendwatch import cli_chargeback

    cli_chargeback.register_reports(rep_sub)
