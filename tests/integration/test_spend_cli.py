"""`spendwatch rollup`, `report spend` and `reprice` end to end, with the real price
catalogue (genai-prices) and a contracted price applied from a TOML file."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import pytest

from models.database import open_database
from models.event_store import EventStore
from spendwatch.cli import main
from tests.integration.test_rollups import ev

UTC = dt.UTC
DAY = dt.date(2026, 9, 10)  # before any tier variant dates of the bundled data


def cli(capsys, url: str, *args: str) -> tuple[int, str, str]:
    code = main(["--database-url", url, *args])
    out, err = capsys.readouterr()
    return code, out, err


def contract(tmp_path, inp: str, out: str):
    path = tmp_path / f"prices-{inp}.toml"
    path.write_text(f'''[[price]]
model = "gpt-4o"
kind = "contract"
effective_from = 2026-09-01
input_per_mtok = "{inp}"
output_per_mtok = "{out}"
''')
    return str(path)


def test_rollup_report_and_reprice(database, tmp_path, capsys):
    engine = open_database(database.url)
    t = dt.datetime.combine(DAY, dt.time(12), UTC)
    EventStore(engine).insert([
        ev(t, model="gpt-4o-2024-08-06", input_tokens=10_000, cached_input_tokens=4_000,
           output_tokens=1_000),
        ev(t, model="my-llama", input_tokens=500, output_tokens=50),
    ])
    assert cli(capsys, database.url, "prices", "apply", contract(tmp_path, "2", "8"))[0] == 0
    code, out, _ = cli(capsys, database.url, "rollup")
    assert code == 0 and "rolled up 1 day(s)" in out
    code, out, _ = cli(capsys, database.url, "report", "spend", "--by", "model", "--period",
                       "day", "--since", DAY.isoformat(), "--until", DAY.isoformat(),
                       "--format", "json")
    assert code == 0
    rows = {r["model"]: r for r in json.loads(out)["rows"]}
    gpt = rows["gpt-4o-2024-08-06"]
    # list (genai-prices gpt-4o: $2.50 in, $1.25 cached, $10 out per M):
    #   6,000 x 2.50 + 4,000 x 1.25 + 1,000 x 10 = 15,000 + 5,000 + 10,000 = $0.03
    assert Decimal(gpt["cost_list_usd"]) == Decimal("0.03")
    # contract ($2 in, no cached price so cached bills at $2, $8 out):
    #   10,000 x 2 + 1,000 x 8 = 20,000 + 8,000 -> $0.028
    assert Decimal(gpt["cost_contract_usd"]) == Decimal("0.028")
    llama = rows["my-llama"]
    assert llama["cost_list_usd"] is None and llama["unpriced_tokens"] == 550
    # a corrected contract, then reprice: 10,000 x 1.5 + 1,000 x 6 = $0.021
    assert cli(capsys, database.url, "prices", "apply", contract(tmp_path, "1.5", "6"))[0] == 0
    code, out, _ = cli(capsys, database.url, "reprice", "--since", DAY.isoformat())
    assert code == 0 and "repriced" in out
    _, out, _ = cli(capsys, database.url, "report", "spend", "--by", "model", "--period",
                    "month", "--since", DAY.isoformat(), "--until", DAY.isoformat(),
                    "--format", "csv")
    line = next(line for line in out.splitlines() if line.startswith("2026-09-01,gpt-4o"))
    assert Decimal(line.split(",")[-1]) == Decimal("0.021")
    assert Decimal(line.split(",")[-2]) == Decimal("0.03")
    _, table, _ = cli(capsys, database.url, "report", "spend", "--by", "model",
                      "--since", DAY.isoformat(), "--until", DAY.isoformat())
    assert "my-llama" in table and "unpriced" in table
    engine.dispose()


@pytest.mark.parametrize(("args", "message"), [
    (["report", "spend", "--since", "2026-13-01"], "YYYY-MM-DD"),
    (["report", "spend", "--since", "2026-03-02", "--until", "2026-03-01"], "swap"),
    (["report", "spend", "--since", "2999-01-01"], "in the future"),
    (["rollup", "--since", "yesterday"], "not a date"),
    (["reprice", "--since", "2999-01-01"], "in the future"),
    (["--timezone", "Mars/Olympus", "rollup"], "IANA"),
])
def test_bad_dates_are_clear_errors(database, capsys, args, message):
    code, _, err = cli(capsys, database.url, *args)
    assert code == 2 and message in err and "Traceback" not in err
