"""``spendwatch prices``: the organisation's price table and which price applies.

``register(subparsers)`` adds the command group to the ``spendwatch`` parser.
"""

from __future__ import annotations

import argparse
import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING

from spendwatch.cli_common import open_engine
from spendwatch.cli_price_update import add_arguments as add_update_arguments
from spendwatch.cli_price_update import cmd_prices_update
from spendwatch.settings import Settings

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from models.pricing import OrgPrice, PriceBook, PriceRow

__all__ = ["register"]

_FILE_HELP = """\
A price file is TOML with one [[price]] table per price:

  [[price]]
  model = "gpt-4o"               # or a prefix ending in '*': "ft:gpt-4o-mini-2024-07-18:acme:*"
  service_tier = "default"       # default | flex | priority | batch | *  (optional, default *)
  kind = "contract"              # contract (negotiated) | list (a model the list lacks)
  effective_from = 2026-01-01    # first UTC day it applies
  input_per_mtok = "2.00"        # USD per million tokens, exact
  cached_input_per_mtok = "1.00" # optional (else cached tokens bill at the input price)
  cache_write_per_mtok = "2.50"  # optional
  output_per_mtok = "8.00"
  audio_input_per_mtok = "40"    # optional
  audio_output_per_mtok = "80"   # optional
  note = "MSA 2026, schedule B"  # optional

The whole file is checked first; if anything is wrong nothing is applied. A row with
the same model, tier, kind and effective_from as a stored one corrects it."""

_PRICE_HEADERS = ("input", "cached", "cache write", "output", "audio in", "audio out")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``prices apply|list|show|check|update`` to ``subparsers``."""
    prices = subparsers.add_parser(
        "prices", help="price tables: apply the organisation's prices, show which applies",
        description="List prices come from the genai-prices library: the data bundled with "
                    "spendwatch, or the data `spendwatch prices update` stored in the "
                    "database; the organisation's own table adds contracted prices and "
                    "models the library does not know.")
    sub = prices.add_subparsers(dest="prices_command", metavar="ACTION", required=True)

    apply = sub.add_parser("apply", help="check a price file and store its rows",
                           description=_FILE_HELP,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    apply.add_argument("file", metavar="FILE", help="the TOML price file")
    apply.add_argument("--dry-run", action="store_true",
                       help="show what would be added or changed; write nothing")
    apply.set_defaults(handler=cmd_prices_apply)

    listing = sub.add_parser("list", help="the organisation's rows and today's list price of "
                                          "every model seen in usage events")
    listing.add_argument("--model", metavar="SUBSTRING", help="only models containing this")
    listing.set_defaults(handler=cmd_prices_list)

    show = sub.add_parser("show", help="which list and contract price apply to a model, and why")
    show.add_argument("model", metavar="MODEL", help="model name as the API reports it")
    show.add_argument("--at", type=_utc_day, metavar="YYYY-MM-DD",
                      help="the UTC day (default: today)")
    show.add_argument("--tier", default="default",
                      help="service tier: default, flex or priority (default: default)")
    show.add_argument("--batch", action="store_true", help="the Batch API rate")
    show.add_argument("--input-tokens", type=_count, metavar="N", default=0,
                      help="the rate of a request with N input tokens (long-context rates "
                           "apply above a threshold; default: the base rate)")
    show.set_defaults(handler=cmd_prices_show)

    sub.add_parser("check", help="models seen in usage events that have no list price today "
                                 "(exit 1 if any)").set_defaults(handler=cmd_prices_check)
    update = sub.add_parser(
        "update", help="fetch genai-prices' current data and price with it from now on",
        description="Fetch genai-prices' current price data, check it, store it in the "
                    "database (shared by the scheduler, the dashboard and the command line) "
                    "and say which OpenAI list prices changed and from which day to reprice.")
    add_update_arguments(update)
    update.set_defaults(handler=cmd_prices_update)


# -- handlers -------------------------------------------------------------------------
def cmd_prices_apply(args: argparse.Namespace, settings: Settings) -> int:
    from models.price_file import apply_prices, load_price_file
    from spendwatch.tables import format_table

    rows = load_price_file(args.file)  # refused as a whole before the database is touched
    engine = _engine(settings)
    try:
        result = apply_prices(engine, rows, source=str(args.file), dry_run=args.dry_run)
    finally:
        engine.dispose()
    table: list[list[object]] = []
    for action, row in ([("added", r) for r in result.added]
                        + [("changed", c.new) for c in result.changed]
                        + [("unchanged", r) for r in result.unchanged]):
        table.append([action, row.model, row.service_tier, row.kind,
                      row.effective_from.isoformat(), *_prices(row), row.source or ""])
    headers = ("action", "model", "tier", "kind", "from", *_PRICE_HEADERS, "source")
    print(format_table(headers, table, [False] * 5 + [True] * 6 + [False]))
    for change in result.changed:
        diffs = ", ".join(f"{name.removesuffix('_per_mtok')} {_fmt(getattr(change.old, name))}"
                          f" -> {_fmt(getattr(change.new, name))}" for name in change.fields)
        print(f"corrected {change.old.ref}: {diffs}")
    print(f"{len(result.added)} added, {len(result.changed)} changed, "
          f"{len(result.unchanged)} unchanged"
          + (" (dry run: nothing was written)" if args.dry_run else ""))
    return 0


def cmd_prices_list(args: argparse.Namespace, settings: Settings) -> int:
    from spendwatch.tables import format_table

    book, seen = _book_and_seen(settings)
    needle = (args.model or "").lower()
    rows = [r for r in book.org_rows if needle in r.model.lower()]
    print("organisation prices (org_prices), USD per million tokens:")
    if rows:
        print(format_table(
            ("id", "model", "tier", "kind", "from", *_PRICE_HEADERS, "source", "note"),
            [[r.id, r.model, r.service_tier, r.kind, r.effective_from.isoformat(),
              *_prices(r), r.source, r.note] for r in rows],
            [True] + [False] * 4 + [True] * 6 + [False, False]))
    else:
        print("  none" + (f" matching {args.model!r}" if needle else "")
              + ": add some with `spendwatch prices apply FILE`")
    today = _today()
    usage = [s for s in seen if needle in s.model.lower()]
    print(f"\nlist prices on {today.isoformat()} (UTC) of the models seen in usage events:")
    if not usage:
        print("  no usage events" + (f" for models matching {args.model!r}" if needle else ""))
        return 0
    table: list[list[object]] = []
    for s in usage:
        row = book.list_price(s.model, s.tier, s.batch, today)
        prices = _prices(row) if row else ["unpriced", "", "", "", "", ""]
        table.append([s.model, s.tier or "", "yes" if s.batch else "", s.events, *prices,
                      _long_context(book, s.model, s.tier, s.batch, today, row),
                      row.ref if row else "add a kind = \"list\" row: spendwatch prices apply"])
    print(format_table(("model", "tier", "batch", "events", *_PRICE_HEADERS, "long context",
                        "price row"), table,
                       [False, False, False] + [True] * 7 + [False, False]))
    return 0


def _long_context(book: PriceBook, model: str, tier: str | None, batch: bool, on: dt.date,
                  base: PriceRow | None) -> str:
    """"above 272,000: input 5, cached 0.5, output 22.5" for each threshold where the
    rates differ from ``base``; "" for none."""
    from models.pricing import format_price
    from models.schema import PRICE_COLUMNS

    if base is None:
        return ""
    parts = []
    for threshold in book.context_thresholds:
        row = book.list_price(model, tier, batch, on, threshold)
        changed = [(label, getattr(row, name)) for label, name in zip(
            _PRICE_HEADERS, PRICE_COLUMNS, strict=True) if row is not None
            and getattr(row, name) != getattr(base, name)]
        if changed:
            parts.append(f"above {threshold:,}: " + ", ".join(
                f"{label} {format_price(value)}" for label, value in changed))
    return "; ".join(parts)


def cmd_prices_show(args: argparse.Namespace, settings: Settings) -> int:
    from models.pricing import PriceBook

    on: dt.date = args.at or _today()
    engine = _engine(settings)
    try:
        book = PriceBook.load(engine)
    finally:
        engine.dispose()
    from models.long_context import band

    long_context = band(args.input_tokens, book.context_thresholds)
    listed = book.list_price(args.model, args.tier, args.batch, on, long_context)
    contract = book.contract_price(args.model, args.tier, args.batch, on, long_context)
    tier = "batch" if args.batch else (args.tier or "default")
    length = f", a request of {args.input_tokens:,} input tokens" if args.input_tokens else ""
    print(f"{args.model}, tier {tier}, on {on.isoformat()} (UTC){length}; prices in USD per "
          f"million tokens")
    print("\nlist price:")
    if listed is not None:
        _print_row(listed)
    else:
        why = book.why_unpriced(args.model, args.tier, args.batch, on)
        print(f"  none: {args.model} is unpriced on {on.isoformat()}: {why}. Its tokens are "
              f"counted but not costed. Add a [[price]] entry with kind = \"list\" to a price "
              f"file and run `spendwatch prices apply FILE`")
    print("\ncontract price:")
    if contract is not None:
        _print_row(contract)
    else:
        print("  none: no contract row applies; contracted cost uses the list price")
    return 0 if listed is not None else 1


def cmd_prices_check(args: argparse.Namespace, settings: Settings) -> int:
    from models.pricing import PriceBook
    from spendwatch.tables import format_table

    engine = _engine(settings)
    try:
        book, seen, history = PriceBook.load(engine), _seen(engine), _unpriced_history(engine)
    finally:
        engine.dispose()
    today = _today()
    if not seen:
        print("no usage events yet: nothing to check")
        return 0
    missing = set(book.models_without_price([(s.model, s.tier, s.batch) for s in seen], today))
    unpriced = [s for s in seen if (s.model, s.tier, s.batch) in missing]
    total = sum(s.events for s in seen)
    if not unpriced:
        print(f"every model seen in {total} usage events has a list price on "
              f"{today.isoformat()} (UTC)")
    else:
        print(f"{len(unpriced)} model/tier combination(s) seen in usage events have no list "
              f"price on {today.isoformat()} (UTC); their tokens are counted but not costed:")
        print(format_table(("model", "tier", "batch", "events", "with usage", "why"),
                           [[s.model, s.tier or "", "yes" if s.batch else "", s.events,
                             s.with_usage, book.why_unpriced(s.model, s.tier, s.batch, today)]
                            for s in unpriced],
                           [False, False, False, True, True, False]))
    if history:
        print("\nunpriced usage in the rollups (a price that starts later, a tier with no "
              "rate on those days):")
        print(format_table(
            ("model", "tier", "batch", "first day", "last day", "requests", "unpriced tokens",
             "why (on the last day)"),
            [[h.model, h.tier, "yes" if h.batch else "", h.first.isoformat(),
              h.last.isoformat(), h.requests, h.tokens,
              book.why_unpriced(h.model, h.tier or None, h.batch, h.last)] for h in history],
            [False, False, False, False, False, True, True, False]))
    if not unpriced and not history:
        return 0
    print("fix: add a [[price]] entry with kind = \"list\" for each (with the tier and the "
          "first day it must cover) to a price file, run `spendwatch prices apply FILE`, then "
          "`spendwatch reprice --since DAY`; or correct the model name in the application")
    return 1


# -- helpers ----------------------------------------------------------------------------
@dataclass(frozen=True)
class _Seen:
    model: str
    tier: str | None
    batch: bool
    events: int
    with_usage: int


@dataclass(frozen=True)
class _Unpriced:
    model: str
    tier: str
    batch: bool
    first: dt.date
    last: dt.date
    requests: int
    tokens: int


_engine = open_engine


def _unpriced_history(engine: Engine) -> list[_Unpriced]:
    """(model, tier, batch) of the daily rollups that have usage without a list price,
    with the days and totals; the rollups' prices, so as of the last rollup or reprice."""
    from sqlalchemy import func, select

    from models.schema import rollup_daily as r
    from models.types import as_date

    query = (select(r.c.model, r.c.service_tier, r.c.is_batch, func.min(r.c.price_date),
                    func.max(r.c.price_date), func.sum(r.c.requests),
                    func.sum(r.c.unpriced_tokens))
             .where(r.c.cost_list.is_(None), r.c.unpriced_tokens > 0)
             .group_by(r.c.model, r.c.service_tier, r.c.is_batch)
             .order_by(r.c.model, r.c.service_tier, r.c.is_batch))
    with engine.connect() as conn:
        return [_Unpriced(str(m), str(t), bool(b), as_date(lo), as_date(hi), int(n),
                          int(u)) for m, t, b, lo, hi, n, u in conn.execute(query)]


def _book_and_seen(settings: Settings) -> tuple[PriceBook, list[_Seen]]:
    """The price book and the (model, tier, batch) combinations seen in events."""
    from models.pricing import PriceBook

    engine = _engine(settings)
    try:
        return PriceBook.load(engine), _seen(engine)
    finally:
        engine.dispose()


def _seen(engine: Engine) -> list[_Seen]:
    """Distinct (model, service_tier, is_batch) of usage_events, with event counts; the
    model is the one the response named, else the one requested."""
    from sqlalchemy import case, func, select

    from models.schema import usage_events as e

    model = func.coalesce(e.c.model, e.c.model_requested)
    query = (select(model, e.c.service_tier, e.c.is_batch, func.count(),
                    func.sum(case((e.c.usage_reported, 1), else_=0)))
             .where(model.is_not(None))
             .group_by(model, e.c.service_tier, e.c.is_batch)
             .order_by(model, e.c.service_tier, e.c.is_batch))
    with engine.connect() as conn:
        return [_Seen(str(m), t, bool(b), int(n), int(u or 0))
                for m, t, b, n, u in conn.execute(query)]


def _utc_day(value: str) -> dt.date:
    try:
        if len(value) == 10:
            return dt.date.fromisoformat(value)
    except ValueError:
        pass
    raise argparse.ArgumentTypeError(
        f"{value!r} is not a date; expected YYYY-MM-DD (a UTC day), e.g. 2026-11-01")


def _count(value: str) -> int:
    try:
        n = int(value.replace(",", "").replace("_", ""))
    except ValueError:
        n = -1
    if n < 0:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a token count; expected a whole number such as 300000")
    return n


def _today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


def _fmt(value: Decimal | str | None) -> str:
    from models.pricing import format_price

    if value is None:
        return "none"
    return format_price(value) if isinstance(value, Decimal) else repr(value)


def _prices(row: OrgPrice | PriceRow) -> list[str]:
    from models.pricing import format_price
    from models.schema import PRICE_COLUMNS

    return [format_price(getattr(row, name)) for name in PRICE_COLUMNS]


def _print_row(row: PriceRow) -> None:
    from models.pricing import format_price
    from models.schema import PRICE_COLUMNS

    fallback = {"cached_input_per_mtok": "none listed: cached tokens bill at the input price",
                "cache_write_per_mtok": "none listed: cache writes bill at the input price",
                "audio_input_per_mtok": "none listed: audio input bills as text input",
                "audio_output_per_mtok": "none listed: audio output bills as text output"}
    lines: list[tuple[str, str]] = [("ref", row.ref), ("source", f"{row.source} ({row.kind})")]
    if row.effective_from is not None:
        lines.append(("effective from", row.effective_from.isoformat()))
    for label, name in zip(("input", "cached input", "cache write", "output", "audio input",
                            "audio output"), PRICE_COLUMNS, strict=True):
        value = getattr(row, name)
        lines.append((label, format_price(value) if value is not None else fallback[name]))
    lines.append(("why", row.why))
    for label, text in lines:
        print(f"  {label.ljust(14)}  {text}")
