"""``spendwatch budgets ...`` and ``spendwatch alerts ...``."""

from __future__ import annotations

import argparse
import json
import sys
from decimal import Decimal

from spendwatch.cli_common import open_engine
from spendwatch.settings import Settings

__all__ = ["register"]

_FILE_HELP = """\
A budget file is TOML: [[budget]] tables, optional [[rule]] tables and [defaults].

  [defaults]                                   # optional, for every budget and rule
  recipients = ["finance@example.com"]
  webhooks = ["https://hooks.slack.com/services/T000/B000/XXX"]

  [[budget]]
  name = "search-monthly"
  scope = { team = "search" }          # team, project, model, user (any combination);
                                       # omit for all spend
  period = "monthly"                   # daily | weekly | monthly (reporting timezone)
  amount = "500.00"                    # USD
  cost = "contract"                    # contract (negotiated, else list) | list
  thresholds = [50, 80, 90, 100]       # percent, ascending, 1..100 (this is the default)
  recipients = ["search-lead@example.com"]
  mode = "notify"                      # notify | block | downgrade (collector enforcement)
  downgrade = { "gpt-4o" = "gpt-4o-mini" }   # for mode = "downgrade"

  [[rule]]
  name = "429 storm"
  kind = "error_rate"                  # forecast | error_rate | latency_p95 |
                                       # spend_spike | unpriced |
                                       # reconciliation_drift (see the README)
  classes = ["rate_limit"]             # rate_limit, client, server, network
  threshold = 10                       # percent of requests in the window
  min_requests = 20
  window_minutes = 15

The whole file is checked first; if anything is wrong nothing is applied. The file
is the whole truth: budgets and rules missing from it are deactivated. Every change
is kept (`spendwatch budgets history`)."""


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the budgets and alerts commands."""
    budgets = sub.add_parser("budgets", help="budgets: apply a budget file, list spend "
                                             "against each, show the change history")
    bsub = budgets.add_subparsers(dest="budgets_command", metavar="ACTION", required=True)
    apply = bsub.add_parser("apply", help="check a budget file and store its budgets and rules",
                            description=_FILE_HELP,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    apply.add_argument("file", metavar="FILE", help="the TOML budget file")
    apply.add_argument("--dry-run", action="store_true",
                       help="show what would change; write nothing")
    apply.add_argument("--actor", help="who makes the change (default: the OS user)")
    apply.set_defaults(handler=cmd_budgets_apply)
    bsub.add_parser("list", help="each budget's spend, percentage and forecast now"
                    ).set_defaults(handler=cmd_budgets_list)
    history = bsub.add_parser("history", help="every change to budgets and rules: who, when, "
                                              "before and after")
    history.add_argument("--name", help="only this budget or rule")
    history.add_argument("-n", type=int, default=50, help="how many changes (default 50)")
    history.set_defaults(handler=cmd_budgets_history)
    _register_alerts(sub)


def _register_alerts(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    alerts = sub.add_parser("alerts", help="alerts: evaluate, list the history, send a test")
    asub = alerts.add_subparsers(dest="alerts_command", metavar="ACTION", required=True)
    listing = asub.add_parser("list", help="alert history with the state of each message")
    listing.add_argument("-n", type=int, default=50, help="how many alerts (default 50)")
    listing.set_defaults(handler=cmd_alerts_list)
    asub.add_parser("run", help="evaluate budgets and rules once and send what is due "
                    "(the scheduler does this after each rollup)"
                    ).set_defaults(handler=cmd_alerts_run)
    test = asub.add_parser("test", help="send a test message")
    test.add_argument("--channel", choices=("email", "webhook"), required=True)
    test.add_argument("--to", help="address or URL (default: the configured ones)")
    test.set_defaults(handler=cmd_alerts_test)


def _money(value: Decimal | None) -> str:
    return "" if value is None else f"${value:,.2f}"


def cmd_budgets_apply(args: argparse.Namespace, settings: Settings) -> int:
    from alerts.budget_file import load_budget_file
    from alerts.budgets import apply_budgets

    parsed = load_budget_file(args.file)  # refused as a whole before the database is touched
    engine = open_engine(settings)
    try:
        result = apply_budgets(engine, parsed, actor=args.actor, dry_run=args.dry_run)
    finally:
        engine.dispose()
    for change in result.changes:
        print(f"{change.action} {change.kind} {change.name}")
        if change.action == "changed":
            for line in change.diff():
                print(f"    {line}")
    counts = {a: sum(1 for c in result.changes if c.action == a)
              for a in ("added", "changed", "removed")}
    print(f"{counts['added']} added, {counts['changed']} changed, {counts['removed']} removed, "
          f"{len(result.unchanged)} unchanged"
          + (" (dry run: nothing was written)" if args.dry_run else ""))
    return 0


def cmd_budgets_list(args: argparse.Namespace, settings: Settings) -> int:
    from alerts.budgets import budget_status
    from spendwatch.tables import format_table

    engine = open_engine(settings)
    try:
        rows = budget_status(engine, settings)
    finally:
        engine.dispose()
    if not rows:
        print("no budgets: define some in a TOML file and run `spendwatch budgets apply FILE`")
        return 0
    table = [[s.name, s.budget.scope_key, s.period.label, s.budget.mode, _money(s.amount),
              _money(s.spend.cost), f"{s.percent}%", _money(s.forecast),
              f"{s.spend.unpriced_tokens:,} tokens ({', '.join(s.spend.unpriced_models)})"
              if s.spend.unpriced_tokens else ""] for s in rows]
    print(format_table(("budget", "scope", "period", "mode", "amount", "spend", "used",
                        "forecast", "unpriced (not costed)"), table,
                       [False] * 4 + [True] * 4 + [False]))
    return 0


def cmd_budgets_history(args: argparse.Namespace, settings: Settings) -> int:
    from alerts.budgets import budget_history

    engine = open_engine(settings)
    try:
        rows = budget_history(engine, name=args.name, limit=args.n)
    finally:
        engine.dispose()
    if not rows:
        print("no changes recorded yet")
        return 0
    for r in rows:
        when = r["changed_at"].isoformat(timespec="seconds")  # type: ignore[union-attr]
        print(f"{when}  {r['actor']}  {r['action']} {r['kind']} {r['name']}  ({r['source']})")
        print(f"    before: {json.dumps(r['before'], sort_keys=True)}")
        print(f"    after:  {json.dumps(r['after'], sort_keys=True)}")
    return 0


def cmd_alerts_list(args: argparse.Namespace, settings: Settings) -> int:
    from alerts.state import alert_history
    from spendwatch.tables import format_table

    engine = open_engine(settings)
    try:
        rows = alert_history(engine, limit=args.n)
    finally:
        engine.dispose()
    if not rows:
        print("no alerts yet")
        return 0
    table = []
    for a in rows:
        sends = "; ".join(f"{n.kind} {n.channel} {n.status}"
                          + (f" x{n.attempts}" if n.attempts > 1 else "")
                          + (f" ({n.last_error})" if n.last_error and n.status != "sent" else "")
                          for n in a.notifications) or "no recipients"
        table.append([a.triggered_at.isoformat(timespec="seconds"), a.status, a.rule, a.scope,
                      a.threshold, a.period, sends])
    print(format_table(("triggered (UTC)", "status", "rule", "scope", "threshold", "period",
                        "messages"), table))
    return 0


def cmd_alerts_run(args: argparse.Namespace, settings: Settings) -> int:
    from alerts.evaluate import evaluate_alerts

    engine = open_engine(settings)
    try:
        result = evaluate_alerts(engine, settings)
    finally:
        engine.dispose()
    for line in result.lines():
        print(line)
    return 1 if result.failed else 0


def cmd_alerts_test(args: argparse.Namespace, settings: Settings) -> int:
    from alerts.notifiers import send_test

    where = send_test(settings, args.channel, args.to)
    print(f"test message sent: {where}", file=sys.stdout)
    return 0
