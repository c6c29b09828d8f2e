"""The organisation's price table on SQLite and PostgreSQL, and `spendwatch prices`."""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import text

from models.database import open_database
from models.event_store import EventStore
from models.events import UsageEvent
from models.ids import uuid7
from models.price_file import apply_prices, load_price_file
from models.pricing import LIBRARY_LABEL, PriceBook, read_org_prices
from spendwatch import cli_prices
from spendwatch.errors import PriceFileError
from spendwatch.settings import load_settings

D = Decimal
UTC = dt.UTC

PRICES = """\
[[price]]
model = "gpt-4o"
kind = "contract"
effective_from = 2026-01-01
input_per_mtok = "2.00"
cached_input_per_mtok = "1.00"
output_per_mtok = "8.00"
note = "MSA 2026, schedule B"

[[price]]
model = "my-local-llama"
kind = "list"
effective_from = 2026-01-01
input_per_mtok = "0.005"
output_per_mtok = "0.01"
"""


@pytest.fixture
def engine(database):
    eng = open_database(database.url)
    yield eng
    eng.dispose()


def write(tmp_path: Path, body: str, name: str = "prices.toml") -> Path:
    path = tmp_path / name
    path.write_text(body, encoding="utf-8")
    return path


def apply_file(engine, path: Path, dry_run: bool = False):
    return apply_prices(engine, load_price_file(path), source=str(path), dry_run=dry_run)


def count(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(text("SELECT count(*) FROM org_prices")).scalar_one()


# -- apply ------------------------------------------------------------------------------------
def test_apply_reapply_and_correct(engine, tmp_path):
    path = write(tmp_path, PRICES)
    first = apply_file(engine, path)
    assert [r.model for r in first.added] == ["gpt-4o", "my-local-llama"]
    assert first.changed == [] and first.unchanged == []
    assert all(r.id is not None for r in first.added)
    assert first.added[0].source == f"{path}:1"

    again = apply_file(engine, path)
    assert again.added == [] and again.changed == [] and len(again.unchanged) == 2
    assert count(engine) == 2

    write(tmp_path, PRICES.replace('output_per_mtok = "8.00"', 'output_per_mtok = "7.50"'))
    fix = apply_file(engine, path)
    assert fix.added == [] and len(fix.unchanged) == 1
    (change,) = fix.changed
    assert change.fields == ("output_per_mtok",)
    assert (change.old.output_per_mtok, change.new.output_per_mtok) == (D(8), D("7.50"))
    assert change.new.id == change.old.id == first.added[0].id  # corrected in place
    assert count(engine) == 2
    with engine.connect() as conn:
        stored = {r.model: r for r in read_org_prices(conn)}
    assert stored["gpt-4o"].output_per_mtok == D("7.5")


def test_new_effective_date_adds_a_row(engine, tmp_path):
    apply_file(engine, write(tmp_path, PRICES))
    later = PRICES.replace("2026-01-01", "2026-03-15", 1).replace('"2.00"', '"1.80"')
    result = apply_file(engine, write(tmp_path, later, "later.toml"))
    assert [r.effective_from for r in result.added] == [dt.date(2026, 3, 15)]
    book = PriceBook.load(engine)
    assert book.contract_price("gpt-4o", None, False, dt.date(2026, 3, 14)).input_per_mtok == D(2)
    assert book.contract_price("gpt-4o", None, False, dt.date(2026, 3, 15)).input_per_mtok == \
        D("1.8")


def test_dry_run_writes_nothing(engine, tmp_path):
    path = write(tmp_path, PRICES)
    result = apply_file(engine, path, dry_run=True)
    assert result.dry_run and len(result.added) == 2
    assert count(engine) == 0
    apply_file(engine, path)
    write(tmp_path, PRICES.replace('"0.01"', '"0.02"'))
    preview = apply_file(engine, path, dry_run=True)
    assert len(preview.changed) == 1
    assert PriceBook.load(engine).list_price("my-local-llama", None, False,
                                             dt.date(2026, 6, 1)).output_per_mtok == D("0.01")


def test_refused_file_writes_nothing(engine, tmp_path):
    bad = PRICES + '\n[[price]]\nmodel = "o3"\nkind = "contract"\neffective_from = 2026-01-01\n' \
                   'input_per_mtok = "-1"\noutput_per_mtok = "8"\n'
    with pytest.raises(PriceFileError, match=r"prices.toml:21: input_per_mtok = \"-1\""):
        apply_file(engine, write(tmp_path, bad))
    assert count(engine) == 0
    rows = load_price_file(write(tmp_path, PRICES))
    broken = [rows[0], dataclasses.replace(rows[1], kind="rebate")]
    with pytest.raises(PriceFileError, match="unknown kind 'rebate'"):
        apply_prices(engine, broken, source="code")
    assert count(engine) == 0


def test_decimals_round_trip_exactly(engine, database, tmp_path):
    body = PRICES.replace('"0.01"', '"0.000000000000000001"')
    apply_file(engine, write(tmp_path, body))
    (row,) = [r for r in PriceBook.load(engine).org_rows if r.model == "my-local-llama"]
    assert row.input_per_mtok == D("0.005") and str(row.input_per_mtok) == "0.005"
    assert row.output_per_mtok == D("1E-18")
    stored = database.scalar("SELECT input_per_mtok FROM org_prices WHERE model = :m",
                             m="my-local-llama")
    # SQLite keeps the decimal text, PostgreSQL a NUMERIC: never a float
    assert not isinstance(stored, float)
    assert D(str(stored)) == D("0.005")
    # the cost of a billion tokens at $0.005 per million: 1e9 / 1e6 x 0.005 = $5 exactly
    assert 1_000_000_000 * row.input_per_mtok / 1_000_000 == D("5.000")


def test_price_book_load_sees_applied_rows(engine, tmp_path):
    apply_file(engine, write(tmp_path, PRICES))
    book = PriceBook.load(engine)
    # responses name the snapshot: the contract for gpt-4o covers gpt-4o-2024-08-06
    contract = book.contract_price("gpt-4o-2024-08-06", None, False, dt.date(2026, 6, 1))
    assert contract is not None and contract.model == "gpt-4o"
    assert book.contract_price("gpt-4.1", None, False, dt.date(2026, 6, 1)) is None
    contract = book.contract_price("gpt-4o", "default", False, dt.date(2026, 6, 1))
    assert (contract.input_per_mtok, contract.cached_input_per_mtok, contract.output_per_mtok) \
        == (D(2), D(1), D(8))
    assert contract.ref.startswith("org_prices #") and contract.ref.endswith("(prices.toml:1)")
    assert "note: MSA 2026, schedule B" in contract.why
    llama = book.list_price("my-local-llama", None, False, dt.date(2026, 6, 1))
    assert llama.source == "org" and llama.input_per_mtok == D("0.005")
    assert book.list_price("my-local-llama", None, False, dt.date(2025, 12, 31)) is None


# -- the command line -------------------------------------------------------------------------
def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="spendwatch")
    cli_prices.register(parser.add_subparsers(dest="command"))
    return parser.parse_args(["prices", *argv])


def run(database, *argv: str) -> int:
    args = parse(*argv)
    return args.handler(args, load_settings({"database_url": database.url}))


def add_events(engine, *specs: tuple[str | None, str | None, str | None, bool, bool]) -> None:
    now = dt.datetime.now(UTC)
    EventStore(engine).insert([
        UsageEvent(id=uuid7(), ts=now, provider="openai", endpoint="chat.completions",
                   model_requested=requested, model=model, service_tier=tier, is_batch=batch,
                   usage_reported=usage, input_tokens=100 if usage else None,
                   output_tokens=10 if usage else None)
        for model, requested, tier, batch, usage in specs])


def test_cli_apply_dry_run_and_apply(database, engine, tmp_path, capsys):
    path = write(tmp_path, PRICES)
    assert run(database, "apply", str(path), "--dry-run") == 0
    out, err = capsys.readouterr()
    assert "2 added, 0 changed, 0 unchanged (dry run: nothing was written)" in out
    assert err.startswith("database: ")
    assert count(engine) == 0
    assert run(database, "apply", str(path)) == 0
    assert "2 added, 0 changed, 0 unchanged" in capsys.readouterr().out
    write(tmp_path, PRICES.replace('"8.00"', '"7.50"'))
    assert run(database, "apply", str(path)) == 0
    out = capsys.readouterr().out
    assert "0 added, 1 changed, 1 unchanged" in out
    assert "(prices.toml:1): output 8 -> 7.5" in out


def test_cli_apply_refused_file(database, engine, tmp_path, capsys):
    path = write(tmp_path, PRICES.replace('"contract"', '"rebate"'))
    with pytest.raises(PriceFileError, match=r"prices.toml:3: kind = \"rebate\""):
        run(database, "apply", str(path))
    assert count(engine) == 0


def test_cli_show(database, engine, tmp_path, capsys):
    apply_file(engine, write(tmp_path, PRICES))
    assert run(database, "show", "gpt-4o", "--at", "2026-06-01") == 0
    out = capsys.readouterr().out
    assert f"  ref             {LIBRARY_LABEL}: openai/gpt-4o default\n" in out
    assert "  input           2.5\n" in out and "  output          10\n" in out
    assert "  cache write     none listed: cache writes bill at the input price\n" in out
    assert "contract price:\n  ref             org_prices #" in out and "(prices.toml:1)" in out
    assert "  input           2\n" in out and "  cached input    1\n" in out
    assert "  why             org contract row: exact model gpt-4o" in out

    assert run(database, "show", "gpt-5", "--at", "2026-11-01", "--tier", "flex") == 0
    out = capsys.readouterr().out
    assert "openai/gpt-5 flex from 2026-10-12" in out and "  input           0.625\n" in out
    assert "contract price:\n  none: no contract row applies" in out

    assert run(database, "show", "gpt-5", "--at", "2026-11-01", "--batch") == 0
    assert "openai/gpt-5 batch from 2026-10-14" in capsys.readouterr().out


def test_cli_show_unknown_model(database, capsys):
    assert run(database, "show", "mystery-model") == 1
    out = capsys.readouterr().out
    assert "none: mystery-model is unpriced" in out
    assert "spendwatch prices apply FILE" in out


def test_cli_show_bad_date(capsys):
    with pytest.raises(SystemExit) as info:
        parse("show", "gpt-4o", "--at", "2026-13-01")
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "'2026-13-01' is not a date; expected YYYY-MM-DD" in err


def test_cli_check_and_list(database, engine, tmp_path, capsys):
    assert run(database, "check") == 0
    assert "no usage events yet" in capsys.readouterr().out
    add_events(engine,
               ("gpt-4o-2024-08-06", "gpt-4o", "default", False, True),
               ("gpt-4o-2024-08-06", "gpt-4o", "default", False, True),
               (None, "my-local-llama", None, False, True),          # falls back to requested
               ("mystery", "mystery", "flex", False, True),
               ("mystery", "mystery", "flex", False, False),
               ("gpt-5", "gpt-5", None, True, True))
    assert run(database, "check") == 1
    out = capsys.readouterr().out
    assert "2 model/tier combination(s)" in out
    table = [line.split() for line in out.splitlines()]
    assert ["my-local-llama", "1", "1", "neither"] in [row[:4] for row in table]
    assert ["mystery", "flex", "2", "1", "neither"] in [row[:5] for row in table]
    assert not any(row and row[0].startswith("gpt-") for row in table)

    apply_file(engine, write(tmp_path, PRICES))
    assert run(database, "check") == 1
    out = capsys.readouterr().out
    assert "1 model/tier combination(s)" in out and "my-local-llama" not in out

    assert run(database, "list") == 0
    out = capsys.readouterr().out
    assert "MSA 2026, schedule B" in out and "org_prices #" in out
    assert f"{LIBRARY_LABEL}: openai/gpt-4o default" in out
    assert f"{LIBRARY_LABEL}: openai/gpt-5 batch from 2026-10-14" in out
    assert "unpriced" in out

    assert run(database, "list", "--model", "LLAMA") == 0
    out = capsys.readouterr().out
    assert "my-local-llama" in out and "gpt-4o" not in out


def test_cli_update_fails_cleanly_offline(capsys):
    # the discard port: connection refused; the database is not even opened
    args = parse("update", "--url", "http://127.0.0.1:9/data.json")
    assert args.handler(args, load_settings({"database_url": "sqlite:////nonexistent/x.db"})) \
        == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert len(err.strip().splitlines()) == 1
    assert err.startswith("spendwatch: cannot fetch current prices from http://127.0.0.1:9/")
    assert "Connection refused" in err and "Traceback" not in err
    assert "nothing was stored, list prices are unchanged" in err


def test_cli_check_names_unpriced_days_of_the_rollups(database, engine, capsys):
    """A price that is missing only on some days (o3's flex rate starts 2026-10-12 in
    genai-prices 0.2.3) is found in the rollups, not just today."""
    import datetime as dt

    from models.event_store import EventStore
    from models.rollups import RollupEngine
    from tests.integration.test_rollups import ev

    EventStore(engine).insert([
        ev(dt.datetime(2026, 7, 1, 12, tzinfo=dt.UTC), model="o3", service_tier="flex"),
        ev(dt.datetime(2026, 7, 3, 12, tzinfo=dt.UTC), model="o3", service_tier="flex"),
        ev(dt.datetime(2026, 11, 3, 12, tzinfo=dt.UTC), model="o3", service_tier="flex")])
    RollupEngine(engine).run()
    assert run(database, "check") == 1
    out = capsys.readouterr().out
    assert "has a list price on" in out  # today o3 flex is priced...
    assert "unpriced usage in the rollups" in out  # ... but not in July
    row = next(line.split() for line in out.splitlines() if line.startswith("o3 "))
    # 2 requests x (1,000 input + 100 output) unpriced tokens
    assert row[:6] == ["o3", "flex", "2026-07-01", "2026-07-03", "2", "2200"]
    assert "no flex rate for o3 on 2026-07-03" in out
    assert "spendwatch reprice --since DAY" in out


def test_cli_list_and_show_long_context_rates(database, engine, capsys):
    add_events(engine, ("gpt-5.4", "gpt-5.4", None, False, True),
               ("gpt-4o", "gpt-4o", None, False, True))
    assert run(database, "list") == 0
    out = capsys.readouterr().out
    # genai-prices 0.2.3: gpt-5.4 above 272,000 input tokens: input 5, cached 0.5, output 22.5
    line = next(x for x in out.splitlines() if x.startswith("gpt-5.4 "))
    assert "above 272,000: input 5, cached 0.5, output 22.5" in line
    line = next(x for x in out.splitlines() if x.startswith("gpt-4o "))
    assert "above" not in line
    assert run(database, "show", "gpt-5.4", "--input-tokens", "272001") == 0
    out = capsys.readouterr().out
    assert "a request of 272,001 input tokens" in out
    assert "input over 272,000 tokens" in out and "22.5" in out
    assert run(database, "show", "gpt-5.4", "--input-tokens", "272000") == 0
    assert "input over" not in capsys.readouterr().out  # not above the threshold
