"""genai-prices data fetched by ``spendwatch prices update`` and stored in the database
(table ``price_library``), so that the scheduler, the dashboard and the command line
all price with the same list prices.

* :func:`fetch_library` downloads a provider JSON array and validates it the way
  genai-prices does (plus: it must list OpenAI models); nothing is stored.
* :func:`store_library` makes fetched data the data in use: a new row, or the stored
  row with the same sha256 (no duplicate), and every other row is no longer in use.
* :func:`use_bundled` stops using stored data: list prices come from the data bundled
  with the installed genai-prices again. Rows are kept (a price ref names its row).
* :func:`library_in_use` is what :meth:`models.pricing.PriceBook.load` reads: the row
  in use, parsed once per process (cached by sha256).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import threading
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from genai_prices import types as gp
from sqlalchemy import Connection, Engine, func, select, update
from sqlalchemy.exc import IntegrityError

from models._library_prices import openai_provider
from models.schema import price_library
from spendwatch.errors import SpendwatchError

__all__ = [
    "FetchedLibrary",
    "LibrarySnapshot",
    "PriceDataError",
    "StoreResult",
    "fetch_library",
    "library_in_use",
    "openai_models",
    "parse_library",
    "store_library",
    "use_bundled",
]

#: How long a fetch may take, in seconds (genai-prices uses 10).
FETCH_TIMEOUT = 10.0
_MAX_BYTES = 64 * 1024 * 1024  # the real file is under 2 MB

_KEEP_PARSED = 2
_parsed: dict[str, list[gp.Provider]] = {}  # by sha256, oldest first
_parsed_lock = threading.Lock()


class PriceDataError(SpendwatchError, ValueError):
    """Price data could not be fetched or is not data genai-prices can use."""


@dataclass(frozen=True)
class FetchedLibrary:
    """Provider data as fetched, validated but not stored."""

    url: str
    content: str
    sha256: str
    providers: list[gp.Provider]

    @property
    def openai_models(self) -> int:
        return len(openai_models(self.providers))


@dataclass(frozen=True)
class LibrarySnapshot:
    """A ``price_library`` row (without its content)."""

    id: int
    fetched_at: dt.datetime
    source_url: str
    sha256: str
    openai_models: int
    in_use: bool

    @property
    def label(self) -> str:
        """How price refs name it, e.g. "genai-prices data #3 fetched 2026-11-22 from URL"."""
        return (f"genai-prices data #{self.id} fetched "
                f"{self.fetched_at.astimezone(dt.UTC).date().isoformat()} from {self.source_url}")


@dataclass(frozen=True)
class StoreResult:
    """What :func:`store_library` did: ``status`` is "added" (a new row), "reused" (the
    same data was stored before and is in use again) or "current" (already in use)."""

    status: str
    snapshot: LibrarySnapshot
    #: the stored data in use before, None when that was the bundled data
    previous: LibrarySnapshot | None


def openai_models(providers: Sequence[gp.Provider]) -> list[gp.ModelInfo]:
    """The OpenAI models of ``providers`` (empty when there is no OpenAI provider)."""
    found = openai_provider(providers)
    return list(found.models) if found is not None else []


def parse_library(content: str | bytes, source: str) -> list[gp.Provider]:
    """The providers in ``content`` (a genai-prices JSON provider array); raises
    :class:`PriceDataError` naming ``source`` and the problem."""
    try:
        raw = json.loads(content, parse_float=Decimal)  # exact prices, never floats
    except (ValueError, UnicodeDecodeError) as exc:
        raise PriceDataError(f"{source} is not JSON ({_first_line(exc)}); expected "
                             f"genai-prices' provider array") from exc
    if not isinstance(raw, list):
        raise PriceDataError(f"{source} holds a JSON {type(raw).__name__}, not genai-prices' "
                             f"provider array")
    try:
        providers = gp._providers_from_raw(raw)  # what genai_prices.UpdatePrices.fetch uses
    except Exception as exc:  # pydantic.ValidationError and the library's own checks
        raise PriceDataError(f"genai-prices cannot read the data from {source}: "
                             f"{_first_lines(exc)}") from exc
    if not openai_models(providers):
        raise PriceDataError(f"the data from {source} lists no OpenAI models; every OpenAI "
                             f"call would be unpriced, so it is not used")
    return providers


def fetch_library(url: str, timeout: float = FETCH_TIMEOUT) -> FetchedLibrary:
    """GET ``url`` and validate it; raises :class:`PriceDataError` when the URL cannot
    be read or the data is unusable. Stores nothing."""
    try:
        request = urllib.request.Request(url, headers={"Accept": "application/json",
                                                       "User-Agent": "spendwatch"})
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read(_MAX_BYTES + 1)
    except urllib.error.HTTPError as exc:
        raise PriceDataError(f"cannot fetch current prices from {url} (HTTP {exc.code} "
                             f"{exc.reason})") from exc
    except urllib.error.URLError as exc:
        raise PriceDataError(f"cannot fetch current prices from {url} ({exc.reason})") from exc
    except (OSError, ValueError) as exc:  # timeouts, resets, a URL urllib cannot use
        raise PriceDataError(f"cannot fetch current prices from {url} "
                             f"({type(exc).__name__}: {_first_line(exc)})") from exc
    if len(body) > _MAX_BYTES:
        raise PriceDataError(f"{url} returned more than {_MAX_BYTES // 2**20} MB; that is not "
                             f"genai-prices' price data")
    try:
        content = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PriceDataError(f"{url} did not return UTF-8 JSON ({exc})") from exc
    providers = parse_library(content, url)
    return FetchedLibrary(url=url, content=content, sha256=_sha256(content),
                          providers=providers)


def library_in_use(conn: Connection) -> tuple[LibrarySnapshot, list[gp.Provider]] | None:
    """The stored data in use and its providers, or None (use the bundled data).
    The content is read and parsed only the first time this process meets its sha256."""
    snapshot = _in_use(conn)
    if snapshot is None:
        return None
    with _parsed_lock:
        providers = _parsed.get(snapshot.sha256)
    if providers is None:
        content = conn.execute(select(price_library.c.content)
                               .where(price_library.c.id == snapshot.id)).scalar_one()
        providers = parse_library(content, f"price_library #{snapshot.id}")
        _remember(snapshot.sha256, providers)
    return snapshot, providers


def store_library(engine: Engine, fetched: FetchedLibrary,
                  now: dt.datetime | None = None) -> StoreResult:
    """Make ``fetched`` the data in use (see the module docstring)."""
    now = now or dt.datetime.now(dt.UTC)
    t = price_library
    for attempt in range(2):
        try:
            with engine.begin() as conn:
                previous = _in_use(conn)
                if previous is not None and previous.sha256 == fetched.sha256:
                    return StoreResult("current", previous, previous)
                conn.execute(update(t).where(t.c.in_use).values(in_use=False))
                same = conn.execute(select(t.c.id).where(t.c.sha256 == fetched.sha256)
                                    ).scalar_one_or_none()
                values = {"fetched_at": now, "source_url": fetched.url, "in_use": True}
                if same is not None:  # fetched before, then replaced or set aside
                    conn.execute(update(t).where(t.c.id == same).values(**values))
                    status, row_id = "reused", int(same)
                else:
                    row_id = int(conn.execute(t.insert().values(
                        **values, content=fetched.content, sha256=fetched.sha256,
                        openai_models=fetched.openai_models)).inserted_primary_key[0])
                    status = "added"
                snapshot = LibrarySnapshot(row_id, now, fetched.url, fetched.sha256,
                                           fetched.openai_models, True)
        except IntegrityError:
            if attempt:  # pragma: no cover - a second concurrent insert of the same data
                raise
            continue  # another process stored the same data at the same moment
        _remember(fetched.sha256, fetched.providers)
        return StoreResult(status, snapshot, previous)
    raise AssertionError("unreachable")  # pragma: no cover


def use_bundled(engine: Engine) -> LibrarySnapshot | None:
    """Stop using stored data; returns the row that was in use (None: already bundled)."""
    with engine.begin() as conn:
        previous = _in_use(conn)
        conn.execute(update(price_library).where(price_library.c.in_use)
                     .values(in_use=False))
    return previous


def stored_count(conn: Connection) -> int:
    """How many ``price_library`` rows are stored (in use or not)."""
    return int(conn.execute(select(func.count()).select_from(price_library)).scalar_one())


# -- internals ------------------------------------------------------------------------
def _in_use(conn: Connection) -> LibrarySnapshot | None:
    t = price_library
    row = conn.execute(
        select(t.c.id, t.c.fetched_at, t.c.source_url, t.c.sha256, t.c.openai_models)
        .where(t.c.in_use).order_by(t.c.fetched_at.desc(), t.c.id.desc()).limit(1)).first()
    if row is None:
        return None
    return LibrarySnapshot(int(row.id), row.fetched_at, str(row.source_url), str(row.sha256),
                           int(row.openai_models), True)


def _remember(sha256: str, providers: list[gp.Provider]) -> None:
    """Cache parsed data by sha256; only the last few (a long-running process that sees
    several updates keeps the data in use and the one before it)."""
    with _parsed_lock:
        _parsed.pop(sha256, None)
        _parsed[sha256] = providers
        while len(_parsed) > _KEEP_PARSED:
            del _parsed[next(iter(_parsed))]


def _sha256(content: str) -> str:
    return hashlib.sha256(content.encode("utf-8")).hexdigest()


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _first_lines(exc: BaseException, limit: int = 4) -> str:
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    text = "; ".join(lines[:limit]) or type(exc).__name__
    return text + ("; ..." if len(lines) > limit else "")
