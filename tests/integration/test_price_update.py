"""`spendwatch prices update` against a local HTTP server, on SQLite and PostgreSQL:
fetched genai-prices data is validated, stored in ``price_library`` and used by
``PriceBook.load``; ``--bundled`` goes back to the bundled data."""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import hashlib
import http.server
import json
import threading
from collections.abc import Iterator
from decimal import Decimal

import pytest
from genai_prices import types as gp
from sqlalchemy import select

from models.costs import Tokens, cost_of
from models.database import open_database
from models.event_store import EventStore
from models.events import UsageEvent
from models.ids import uuid7
from models.pricing import LIBRARY_LABEL, PriceBook
from models.schema import price_library
from tests.integration.test_prices import run

D = Decimal
UTC = dt.UTC
TODAY = dt.datetime.now(UTC).date()
CHANGE_DAY = TODAY - dt.timedelta(days=10)  # gpt-4o's new price starts here


# -- a provider JSON built from the bundled data ------------------------------------------
def _plain(value: object) -> object:
    """genai-prices data as the JSON its update URL serves."""
    if isinstance(value, gp.ModelPrice):
        return {k: _plain(v) for k, v in vars(value).items()
                if not k.startswith("_") and v is not None}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name.rstrip("_"): _plain(getattr(value, f.name))
                for f in dataclasses.fields(value)
                if not f.name.startswith("_") and getattr(value, f.name) is not None}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    return value


def _json(raw: object) -> bytes:
    return json.dumps(raw, default=lambda d: float(d) if isinstance(d, Decimal) else str(d)
                      ).encode()


@pytest.fixture(scope="module")
def bundled_raw() -> list[dict]:
    from genai_prices.data import providers

    return _plain(providers)  # type: ignore[return-value]


@pytest.fixture(scope="module")
def changed_payload(bundled_raw) -> bytes:
    """The bundled data, except that gpt-4o costs $2 / $1 cached / $8 output per million
    tokens from CHANGE_DAY (bundled: $2.50 / $1.25 / $10)."""
    raw = copy.deepcopy(bundled_raw)
    openai = next(p for p in raw if p["id"] == "openai")
    gpt4o = next(m for m in openai["models"] if m["id"] == "gpt-4o")
    assert isinstance(gpt4o["prices"], dict)  # one standard price in the bundled data
    gpt4o["prices"] = [
        {"prices": gpt4o["prices"]},
        {"constraint": {"start_date": CHANGE_DAY.isoformat()},
         "prices": {"input_mtok": 2, "cache_read_mtok": 1, "output_mtok": 8}},
    ]
    return _json(raw)


class _Server:
    def __init__(self) -> None:
        self.routes: dict[str, tuple[int, bytes]] = {}
        routes = self.routes

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                status, body = routes.get(self.path, (404, b"not found"))
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def serve(self, path: str, body: bytes, status: int = 200) -> str:
        self.routes[path] = (status, body)
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"


@pytest.fixture
def server() -> Iterator[_Server]:
    s = _Server()
    yield s
    s.httpd.shutdown()
    s.httpd.server_close()


@pytest.fixture
def engine(database):
    eng = open_database(database.url)
    yield eng
    eng.dispose()


def stored(engine) -> list:
    with engine.connect() as conn:
        return list(conn.execute(select(price_library).order_by(price_library.c.id)))


def add_gpt4o_events(engine) -> None:
    """gpt-4o usage 20 and 5 days ago: only the second is priced differently."""
    EventStore(engine).insert([
        UsageEvent(id=uuid7(), ts=dt.datetime.combine(TODAY - dt.timedelta(days=days),
                                                      dt.time(12), UTC),
                   provider="openai", endpoint="chat.completions", model_requested="gpt-4o",
                   model="gpt-4o-2024-08-06", service_tier="default", is_batch=False,
                   usage_reported=True, input_tokens=1000, output_tokens=100)
        for days in (20, 5)])


TOKENS = Tokens(input_tokens=1_000_000, cached_input_tokens=200_000, output_tokens=100_000)


# -- tests ----------------------------------------------------------------------------------
def test_update_stores_and_prices_with_the_fetched_data(database, engine, server,
                                                         changed_payload, capsys):
    add_gpt4o_events(engine)
    url = server.serve("/v2/data.json", changed_payload)
    assert run(database, "update", "--url", url) == 0
    out = capsys.readouterr().out
    assert "stored as price_library #1; list prices now come from genai-prices data #1 " \
           f"fetched {TODAY.isoformat()} from {url} (before: {LIBRARY_LABEL})" in out
    assert "  gpt-4o default: input 2.5 -> 2, cached input 1.25 -> 1, output 10 -> 8\n" in out
    # usage 20 days ago keeps its price; the change starts CHANGE_DAY (UTC = reporting day)
    assert f"`spendwatch reprice --since {CHANGE_DAY.isoformat()}`" in out

    (row,) = stored(engine)
    assert row.source_url == url and row.in_use is True
    assert row.sha256 == hashlib.sha256(changed_payload).hexdigest()
    assert row.content.encode() == changed_payload
    from genai_prices.data import providers
    bundled_openai = next(p for p in providers if p.id == "openai")
    assert row.openai_models == len(bundled_openai.models)
    assert row.fetched_at.tzinfo is not None and row.fetched_at.utcoffset() == dt.timedelta(0)
    assert row.fetched_at.date() == TODAY

    book = PriceBook.load(engine)
    label = f"genai-prices data #1 fetched {TODAY.isoformat()} from {url}"
    assert book.library_label == label
    now = book.list_price("gpt-4o-2024-08-06", "default", False, TODAY)
    assert now.ref == f"{label}: openai/gpt-4o default from {CHANGE_DAY.isoformat()}"
    assert (now.input_per_mtok, now.cached_input_per_mtok, now.output_per_mtok) == \
        (D(2), D(1), D(8))
    # 800,000 uncached x $2 + 200,000 cached x $1 + 100,000 output x $8, per million:
    # 1.6 + 0.2 + 0.8 = $2.60
    assert cost_of(TOKENS, now).total == D("2.6")
    before = book.list_price("gpt-4o", "default", False, CHANGE_DAY - dt.timedelta(days=1))
    # the same tokens the day before, at $2.50 / $1.25 / $10: 2.0 + 0.25 + 1.0 = $3.25
    assert cost_of(TOKENS, before).total == D("3.25")
    assert PriceBook.load(engine)._openai is book._openai  # parsed once (cached by sha256)

    assert run(database, "show", "gpt-4o") == 0
    assert f"  ref             {label}: openai/gpt-4o default" in capsys.readouterr().out

    # the same data again: no new row
    assert run(database, "update", "--url", url) == 0
    out = capsys.readouterr().out
    assert f"already current: the data at {url} is the data in use ({label})" in out
    assert len(stored(engine)) == 1


def test_bundled_goes_back_and_same_data_is_reused(database, engine, server, changed_payload,
                                                   capsys):
    url = server.serve("/data.json", changed_payload)
    assert run(database, "update", "--url", url) == 0
    capsys.readouterr()
    assert run(database, "update", "--bundled") == 0
    out = capsys.readouterr().out
    assert f"list prices now come from the bundled {LIBRARY_LABEL} data (before: genai-prices " \
           f"data #1 fetched {TODAY.isoformat()} from {url}, which stays stored as " \
           "price_library #1, unused)" in out
    assert "  gpt-4o default: input 2 -> 2.5, cached input 1 -> 1.25, output 8 -> 10\n" in out
    assert "no usage event is priced differently: nothing to reprice" in out
    (row,) = stored(engine)
    assert row.in_use is False
    book = PriceBook.load(engine)
    assert book.library_label == LIBRARY_LABEL
    price = book.list_price("gpt-4o", None, False, TODAY)
    assert price.ref == f"{LIBRARY_LABEL}: openai/gpt-4o default"
    # 800,000 x $2.50 + 200,000 x $1.25 + 100,000 x $10, per million: 2.0 + 0.25 + 1.0
    assert cost_of(TOKENS, price).total == D("3.25")

    assert run(database, "update", "--bundled") == 0
    assert "already current: list prices come from the bundled" in capsys.readouterr().out

    assert run(database, "update", "--url", url) == 0
    out = capsys.readouterr().out
    assert "the same data as stored before, in use again: price_library #1;" in out
    (row,) = stored(engine)
    assert row.in_use is True
    assert PriceBook.load(engine).list_price("gpt-4o", None, False, TODAY).input_per_mtok == D(2)


def test_newer_data_replaces_the_stored_data(database, engine, server, changed_payload,
                                             bundled_raw, capsys):
    first = server.serve("/a.json", changed_payload)
    second = server.serve("/b.json", _json(bundled_raw))
    assert run(database, "update", "--url", first) == 0
    assert run(database, "update", "--url", second) == 0
    out = capsys.readouterr().out
    assert "stored as price_library #2;" in out
    assert f"(before: genai-prices data #1 fetched {TODAY.isoformat()} from {first})" in out
    assert [r.in_use for r in stored(engine)] == [False, True]
    book = PriceBook.load(engine)
    assert book.library_label.startswith("genai-prices data #2 ")
    assert book.list_price("gpt-4o", None, False, TODAY).input_per_mtok == D("2.5")


@pytest.mark.parametrize(("body", "problem"), [
    (b"<html>rate limited</html>", "is not JSON"),
    (b'{"providers": []}', "holds a JSON dict, not genai-prices' provider array"),
    (b'[{"id": "openai", "name": "OpenAI"}]', "genai-prices cannot read the data from"),
    (b"[]", "lists no OpenAI models"),
])
def test_unusable_data_is_refused(database, engine, server, body, problem, capsys):
    url = server.serve("/data.json", body)
    assert run(database, "update", "--url", url) == 1
    out, err = capsys.readouterr()
    assert out == "" and "Traceback" not in err
    assert problem in err and url in err
    assert "nothing was stored, list prices are unchanged" in err
    assert stored(engine) == []


def test_http_error_and_unreachable_url(database, engine, server, capsys):
    url = server.serve("/gone.json", b"gone", status=404)
    assert run(database, "update", "--url", url) == 1
    err = capsys.readouterr().err
    assert f"spendwatch: cannot fetch current prices from {url} (HTTP 404 Not Found)" in err
    assert run(database, "update", "--url", "http://127.0.0.1:9/data.json") == 1  # discard port
    err = capsys.readouterr().err
    assert "cannot fetch current prices from http://127.0.0.1:9/data.json (" in err
    assert "refused" in err.lower() and "Traceback" not in err
    assert stored(engine) == []


def test_dry_run_stores_nothing(database, engine, server, changed_payload, capsys):
    add_gpt4o_events(engine)
    url = server.serve("/data.json", changed_payload)
    assert run(database, "update", "--url", url, "--dry-run") == 0
    out = capsys.readouterr().out
    assert f"list prices come from {LIBRARY_LABEL}; compared with the fetched data:" in out
    assert "  gpt-4o default: input 2.5 -> 2, cached input 1.25 -> 1, output 10 -> 8\n" in out
    assert f"reprice --since {CHANGE_DAY.isoformat()}" in out
    assert out.rstrip().endswith("dry run: nothing was stored")
    assert stored(engine) == []
    assert PriceBook.load(engine).library_label == LIBRARY_LABEL
