"""The organisation's price file (TOML) and how it is applied to ``org_prices``.

.. code-block:: toml

    [[price]]
    model = "gpt-4o"              # or a prefix ending in '*': "ft:gpt-4o-mini-2024-07-18:acme:*"
    service_tier = "default"      # default | flex | priority | batch | *  (optional, default "*")
    kind = "contract"             # contract | list
    effective_from = 2026-01-01   # first UTC day (a TOML date or "2026-01-01")
    input_per_mtok = "2.00"       # USD per million tokens; strings or numbers, exact
    output_per_mtok = "8.00"
    # optional: cached_input_per_mtok, cache_write_per_mtok, audio_input_per_mtok,
    #           audio_output_per_mtok, note

A file is refused as a whole: every problem is collected and reported together,
each as ``FILE:LINE: problem; fix``, and nothing is applied.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path

from sqlalchemy import Connection, Engine, insert, update
from sqlalchemy.exc import IntegrityError

from models.database import begin_write
from models.org_prices import KINDS, ORG_TIERS, OrgPrice, read_org_prices
from models.schema import PRICE_COLUMNS, org_prices
from models.toml_files import FileProblem, key_line, refused
from spendwatch.errors import PriceFileError, SpendwatchError

__all__ = ["KEYS", "ApplyResult", "PriceChange", "apply_prices",
           "load_price_file", "parse_price_file"]

#: Every key a ``[[price]]`` entry may have.
KEYS = ("model", "service_tier", "kind", "effective_from", *PRICE_COLUMNS, "note")
_REQUIRED = {
    "model": 'add model = "gpt-4o" (an exact model name, or a prefix ending in "*")',
    "kind": 'add kind = "contract" (a negotiated price) or kind = "list" (a price for a '
            'model genai-prices does not know, or a better one)',
    "effective_from": "add effective_from = 2026-01-01 (the first UTC day the price applies)",
    "input_per_mtok": 'add input_per_mtok = "2.50" (USD per million input tokens)',
    "output_per_mtok": 'add output_per_mtok = "10.00" (USD per million output tokens)',
}
_HEADER = re.compile(r"^\s*\[\[\s*price\s*\]\]")
_TABLE = re.compile(r"^\s*\[")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_MAX_PLACES = 18  # org_prices money columns are NUMERIC(38, 18) on PostgreSQL
_LOCK_KEY = 0x5350_5052  # "SPPR": one `prices apply` at a time on PostgreSQL


@dataclass(frozen=True)
class PriceChange:
    """A stored row corrected by a price file: ``old`` as it was, ``new`` as it is."""

    old: OrgPrice
    new: OrgPrice

    @property
    def fields(self) -> tuple[str, ...]:
        """The columns whose value changed (prices, or only the note)."""
        return tuple(name for name in (*PRICE_COLUMNS, "note")
                     if getattr(self.old, name) != getattr(self.new, name))


@dataclass
class ApplyResult:
    """What ``apply_prices`` did (or, on a dry run, would do)."""

    added: list[OrgPrice] = field(default_factory=list)
    changed: list[PriceChange] = field(default_factory=list)
    unchanged: list[OrgPrice] = field(default_factory=list)
    dry_run: bool = False


def load_price_file(path: str | Path) -> list[OrgPrice]:
    """Read and validate a price file; raise :class:`PriceFileError` listing every
    problem (``FILE:LINE: problem; fix``) when anything is wrong."""
    name = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PriceFileError(f"{name}: no such file; check the path given to "
                             f"`spendwatch prices apply`") from None
    except UnicodeDecodeError as exc:
        raise PriceFileError(f"{name}: not UTF-8 text ({exc.reason} at byte {exc.start}); "
                             f"save the file as UTF-8") from None
    except OSError as exc:
        raise PriceFileError(f"{name}: cannot be read ({exc.strerror}); check the path and "
                             f"its permissions") from None
    return parse_price_file(text, name)


def parse_price_file(text: str, file: str = "prices.toml") -> list[OrgPrice]:
    """Validate the text of a price file named ``file`` (see :func:`load_price_file`)."""
    try:
        data = tomllib.loads(text, parse_float=Decimal)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        found = re.search(r"at line (\d+)", message)
        line = int(found.group(1)) if found else max(len(text.splitlines()), 1)
        problem = re.sub(r"\s*\((at line \d+, column \d+|at end of document)\)", "", message)
        raise refused(PriceFileError, file, [FileProblem(
            file, line, f"not valid TOML: {problem}",
            'fix the syntax on that line (text needs quotes: model = "gpt-4o"; dates are '
            "written 2026-01-01)")]) from None
    lines = text.splitlines()
    problems: list[FileProblem] = []

    def add(line: int, problem: str, fix: str) -> None:
        problems.append(FileProblem(file, line, problem, fix))

    for key in data:
        if key != "price":
            add(key_line(lines, key, 0, len(lines)), f"unknown top-level key {key!r}",
                "put every price in its own [[price]] table")
    entries = data.get("price", [])
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        add(key_line(lines, "price", 0, len(lines)), "'price' is not a list of tables",
            "start every price with a [[price]] line (double brackets)")
        entries = []
    if not entries and not problems:
        add(1, "the file has no [[price]] entries",
            "add one [[price]] table per price (see `spendwatch prices apply --help`)")
    headers = [i + 1 for i, text_line in enumerate(lines) if _HEADER.match(text_line)]
    rows: list[OrgPrice] = []
    first_seen: dict[tuple[str, str, str, dt.date], int] = {}
    for index, entry in enumerate(entries):
        start = headers[index] if index < len(headers) else 1
        end = next((i for i in range(start, len(lines)) if _TABLE.match(lines[i])), len(lines))

        def at(key: str | None, start: int = start, end: int = end) -> int:
            return start if key is None else key_line(lines, key, start - 1, end, start)

        row = _entry(entry, at, add)
        key = _key(entry)
        if key is not None and key in first_seen:
            model, tier, kind, day = key
            add(start, f"the entry for {model!r} (service_tier {tier}, kind {kind}, "
                f"effective_from {day.isoformat()}) repeats the one at line {first_seen[key]}: "
                f"overlapping effective dates",
                "keep one of them, or give one another effective_from")
        elif key is not None:
            first_seen[key] = start
        if row is not None:
            rows.append(dataclasses.replace(row, line=start, source=f"{file}:{start}"))
    if problems:
        raise refused(PriceFileError, file, problems)
    return rows


def apply_prices(engine: Engine, rows: Sequence[OrgPrice], *, source: str,
                 dry_run: bool = False) -> ApplyResult:
    """Write ``rows`` to ``org_prices`` in one transaction: a new key is added; a key
    stored with other prices (or another note) is corrected in place (same id); a key
    stored identically is unchanged. Rows not in ``rows`` are left alone. ``source``
    (the file) is stored with each row's line. Nothing is written when ``dry_run``."""
    _check(rows, source)
    result = ApplyResult(dry_run=dry_run)
    now = dt.datetime.now(dt.UTC)
    try:
        if dry_run:
            with engine.connect() as conn:
                _apply(conn, rows, source, now, result, write=False)
                conn.rollback()
        else:
            with begin_write(engine) as conn:
                if engine.dialect.name == "postgresql":
                    conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_LOCK_KEY})")
                _apply(conn, rows, source, now, result, write=True)
    except IntegrityError:
        raise SpendwatchError(
            "another `spendwatch prices apply` stored the same prices at the same time and "
            "nothing was applied; run the command again") from None
    return result


# -- internals ------------------------------------------------------------------------
def _apply(conn: Connection, rows: Sequence[OrgPrice], source: str, now: dt.datetime,
           result: ApplyResult, *, write: bool) -> None:
    existing = {row.key: row for row in read_org_prices(conn)}
    for row in rows:
        stored_source = (f"{source}:{row.line}" if row.line is not None else source)[:500]
        values = {"model": row.model, "service_tier": row.service_tier, "kind": row.kind,
                  "effective_from": row.effective_from, "note": row.note,
                  "source": stored_source, "applied_at": now,
                  **{name: getattr(row, name) for name in PRICE_COLUMNS}}
        old = existing.get(row.key)
        new = dataclasses.replace(row, source=stored_source, applied_at=now)
        if old is None:
            if write:
                new_id = conn.execute(insert(org_prices).values(**values)).inserted_primary_key
                new = dataclasses.replace(new, id=int(new_id[0]) if new_id else None)
            result.added.append(new)
        elif old.prices == row.prices and old.note == row.note:
            result.unchanged.append(old)
        else:
            if write:
                conn.execute(update(org_prices).where(org_prices.c.id == old.id).values(**values))
            result.changed.append(PriceChange(old, dataclasses.replace(new, id=old.id)))


def _check(rows: Sequence[OrgPrice], source: str) -> None:
    """The invariants of a row, for rows that did not come from a price file."""
    problems: list[FileProblem] = []
    seen: set[tuple[str, str, str, dt.date]] = set()
    for row in rows:
        line = row.line or 0
        if row.kind not in KINDS:
            problems.append(FileProblem(source, line, f"unknown kind {row.kind!r}",
                                        f"use one of {', '.join(KINDS)}"))
        if row.service_tier not in ORG_TIERS:
            problems.append(FileProblem(source, line, f"unknown tier {row.service_tier!r}",
                                        f"use one of {', '.join(ORG_TIERS)}"))
        if any(p is not None and p < 0 for p in row.prices):
            problems.append(FileProblem(source, line, f"negative price for {row.model}",
                                        "give prices of 0 or more"))
        if row.key in seen:
            problems.append(FileProblem(source, line, f"{row.key} given twice",
                                        "give each key once"))
        seen.add(row.key)
    if problems:
        raise refused(PriceFileError, source, problems)


def _entry(entry: dict[str, object], at: Callable[[str | None], int],
           add: Callable[[int, str, str], None]) -> OrgPrice | None:
    """One ``[[price]]`` table as an OrgPrice, or None after reporting its problems."""
    count = 0

    def bad(key: str | None, problem: str, fix: str) -> None:
        nonlocal count
        count += 1
        add(at(key), problem, fix)

    for key in entry:
        if key not in KEYS:
            bad(key, f"unknown key {key!r}", f"the known keys are {', '.join(KEYS)}")
    for key, fix in _REQUIRED.items():
        if key not in entry:
            bad(None, f"missing {key}", fix)

    model = entry.get("model")
    if "model" in entry:
        if not isinstance(model, str) or not model.strip():
            bad("model", f"model = {_show(model)} is not a model name",
                'give a name such as "gpt-4o" or a prefix such as "ft:gpt-4o-mini*"')
        elif "*" in model.rstrip("*") or model.strip() in ("*", "") or model.count("*") > 1:
            bad("model", f"model = {_show(model)}: '*' may only end a prefix",
                'write a prefix followed by one "*", e.g. "ft:gpt-4o-mini*"')
        elif len(model) > 200:
            bad("model", f"model is {len(model)} characters long", "use at most 200")
    tier = entry.get("service_tier", "*")
    if tier not in ORG_TIERS:
        bad("service_tier", f"service_tier = {_show(tier)} is not a tier",
            f"use one of {', '.join(ORG_TIERS)} (* means every tier)")
    kind = entry.get("kind")
    if "kind" in entry and kind not in KINDS:
        bad("kind", f"kind = {_show(kind)} is not a kind of price",
            'use "contract" (a negotiated price) or "list" (a list price)')
    effective = _date(entry.get("effective_from")) if "effective_from" in entry else None
    if "effective_from" in entry and effective is None:
        bad("effective_from", f"effective_from = {_show(entry['effective_from'])} is not a date",
            "write a date such as 2026-01-01 (or \"2026-01-01\"), without a time of day: "
            "prices change at 00:00 UTC")
    prices: dict[str, Decimal | None] = {}
    for name in PRICE_COLUMNS:
        if name in entry:
            value, problem = _money(name, entry[name])
            if problem:
                bad(name, *problem)
            prices[name] = value
    note = entry.get("note")
    if note is not None and not isinstance(note, str):
        bad("note", f"note = {_show(note)} is not text", 'put it in quotes: note = "MSA 2026"')
    if count:
        return None
    return OrgPrice(model=str(model).strip(), service_tier=str(tier), kind=str(kind),
                    effective_from=effective,  # type: ignore[arg-type]
                    note=note, **prices)  # type: ignore[arg-type]


def _key(entry: dict[str, object]) -> tuple[str, str, str, dt.date] | None:
    """The unique key of an entry, when its four parts are valid."""
    model, tier, kind = entry.get("model"), entry.get("service_tier", "*"), entry.get("kind")
    day = _date(entry.get("effective_from"))
    if isinstance(model, str) and tier in ORG_TIERS and kind in KINDS and day is not None:
        return model.strip(), str(tier), str(kind), day
    return None


def _date(value: object) -> dt.date | None:
    if isinstance(value, dt.datetime):
        return None
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str) and _DATE.match(value.strip()):
        try:
            return dt.date.fromisoformat(value.strip())
        except ValueError:
            return None
    return None


def _money(name: str, value: object) -> tuple[Decimal | None, tuple[str, str] | None]:
    """(the exact price, None) or (None, (problem, fix))."""
    example = f'{name} = "2.50"'
    if isinstance(value, bool) or not isinstance(value, str | int | Decimal):
        return None, (f"{name} = {_show(value)} is not a number", f"write it like {example}")
    try:
        amount = Decimal(value.strip()) if isinstance(value, str) else Decimal(value)
    except InvalidOperation:
        return None, (f"{name} = {_show(value)} is not a decimal number",
                      f"write it like {example}: digits and one dot, no comma, currency or unit")
    if not amount.is_finite():
        return None, (f"{name} = {_show(value)} is not a finite number", f"write it like {example}")
    if amount < 0:
        return None, (f"{name} = {_show(value)} is negative",
                      "a price is 0 or more (USD per million tokens)")
    exponent = amount.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -_MAX_PLACES:
        return None, (f"{name} = {_show(value)} has more than {_MAX_PLACES} decimal places",
                      f"round it to {_MAX_PLACES} places (the database keeps {_MAX_PLACES})")
    if amount.adjusted() >= 38 - _MAX_PLACES:
        return None, (f"{name} = {_show(value)} is too large",
                      "give the price in USD per million tokens")
    return amount, None


def _show(value: object) -> str:
    """``value`` as it would be written in TOML."""
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, int | Decimal):
        return str(value)
    return f"a {type(value).__name__}"
