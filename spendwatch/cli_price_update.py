"""``spendwatch prices update``: fetch genai-prices' current data, store it in the
database (``price_library``) so that every spendwatch process prices with it, say
which list prices changed and from which day costs must be repriced.
``--bundled`` goes back to the data bundled with the installed genai-prices."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from spendwatch.cli_common import open_engine
from spendwatch.settings import Settings

if TYPE_CHECKING:
    from genai_prices.types import Provider
    from sqlalchemy import Engine

    from models.pricing import PriceBook

__all__ = ["add_arguments", "cmd_prices_update"]

_engine = open_engine


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``spendwatch prices update``."""
    parser.add_argument("--dry-run", action="store_true",
                        help="fetch and show what would change; store nothing")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--url", help="where to fetch genai-prices' provider JSON (http, https "
                                      "or file; default: the URL genai-prices updates from)")
    source.add_argument("--bundled", action="store_true",
                        help="stop using fetched data: price with the data bundled with the "
                             "installed genai-prices again (fetched rows are kept, unused)")


def cmd_prices_update(args: argparse.Namespace, settings: Settings) -> int:
    from models.price_library import PriceDataError, fetch_library, store_library, use_bundled
    from models.pricing import LIBRARY_LABEL, PriceBook

    fetched = None
    if not args.bundled:
        from genai_prices.update_prices import DEFAULT_UPDATE_URL

        try:  # before the database is opened: a failed fetch changes nothing
            fetched = fetch_library(args.url or DEFAULT_UPDATE_URL)
        except PriceDataError as exc:
            print(f"spendwatch: {exc}; nothing was stored, list prices are unchanged",
                  file=sys.stderr)
            return 1
        print(f"fetched {fetched.url}: {fetched.openai_models} OpenAI models, "
              f"sha256 {fetched.sha256[:12]}")
    engine = _engine(settings)
    try:
        before = PriceBook.load(engine)
        old_library = _library_in_use(engine)
        if args.dry_run:
            new_library = fetched.providers if fetched else _bundled()
            new_label = "the fetched data" if fetched else f"the bundled {LIBRARY_LABEL} data"
            print(f"list prices come from {before.library_label}; compared with {new_label}:")
            _report(engine, settings, before, old_library, new_library)
            print("dry run: nothing was stored")
            return 0
        if fetched is None:
            previous = use_bundled(engine)
            if previous is None:
                print(f"already current: list prices come from the bundled {LIBRARY_LABEL} "
                      f"data; nothing changed")
                return 0
            print(f"list prices now come from the bundled {LIBRARY_LABEL} data (before: "
                  f"{previous.label}, which stays stored as price_library #{previous.id}, "
                  f"unused)")
            _report(engine, settings, before, old_library, _bundled())
            return 0
        result = store_library(engine, fetched)
        snap = result.snapshot
        if result.status == "current":
            print(f"already current: the data at {fetched.url} is the data in use "
                  f"({snap.label}); nothing changed")
            return 0
        how = ("stored as" if result.status == "added"
               else "the same data as stored before, in use again:")
        print(f"{how} price_library #{snap.id}; list prices now come from {snap.label} "
              f"(before: {before.library_label})")
        _report(engine, settings, before, old_library, fetched.providers)
        return 0
    finally:
        engine.dispose()


# -- helpers ----------------------------------------------------------------------------
def _bundled() -> list[Provider]:
    from genai_prices.data import providers

    return providers


def _library_in_use(engine: Engine) -> list[Provider]:
    from models.price_library import library_in_use

    with engine.connect() as conn:
        stored = library_in_use(conn)  # parsed once per process: PriceBook.load did it
    return stored[1] if stored is not None else _bundled()


def _report(engine: Engine, settings: Settings, before: PriceBook,
            old: Sequence[Provider], new: Sequence[Provider]) -> None:
    """Today's OpenAI list prices that change, and the reprice needed."""
    from models._library_diff import first_affected_day, library_changes, start_dates
    from models.pricing import PriceBook

    today = dt.datetime.now(dt.UTC).date()
    changes = library_changes(old, new, today)
    if changes.changed:
        print(f"OpenAI list prices on {today.isoformat()} (UTC) that change, USD per million "
              f"tokens:")
        for change in changes.changed:
            if change.old is None or change.new is None:
                text = "unpriced -> priced" if change.old is None else "priced -> unpriced"
            else:
                text = ", ".join(f"{_label(name)} {_fmt(a)} -> {_fmt(b)}"
                                 for name, a, b in change.fields)
            print(f"  {change.model} {change.tier}: {text}")
    if changes.added:
        print(f"new OpenAI models ({len(changes.added)}): {', '.join(changes.added)}")
    if changes.removed:
        print(f"OpenAI models no longer listed ({len(changes.removed)}; unpriced unless another "
              f"model matches their name or an org row prices them): "
              f"{', '.join(changes.removed)}")
    if not changes.any:
        print(f"no OpenAI list price changed on {today.isoformat()} (UTC)")
    after = PriceBook(before.org_rows, library=new)
    day = first_affected_day(before, after, _seen_since(engine), start_dates(old, new), today)
    if day is None:
        print("no usage event is priced differently: nothing to reprice")
        return
    local = dt.datetime.combine(day, dt.time(0), dt.UTC).astimezone(
        ZoneInfo(settings.timezone)).date()
    print(f"usage from {day.isoformat()} (UTC) is priced differently: costs already rolled "
          f"up keep the old prices until you run `spendwatch reprice --since "
          f"{local.isoformat()}`")


def _seen_since(engine: Engine) -> list[tuple[str, str | None, bool, dt.date]]:
    """(model, service_tier, is_batch, first UTC day) of the usage events."""
    from sqlalchemy import func, select

    from models.schema import usage_events as e

    model = func.coalesce(e.c.model, e.c.model_requested)
    query = (select(model, e.c.service_tier, e.c.is_batch, func.min(e.c.ts))
             .where(model.is_not(None)).group_by(model, e.c.service_tier, e.c.is_batch))
    with engine.connect() as conn:
        return [(str(m), t, bool(b), first.astimezone(dt.UTC).date())
                for m, t, b, first in conn.execute(query)]


def _label(column: str) -> str:
    return column.removesuffix("_per_mtok").replace("_", " ")


def _fmt(value: object) -> str:
    from decimal import Decimal

    from models.pricing import format_price

    return format_price(value) if isinstance(value, Decimal) else "none"
