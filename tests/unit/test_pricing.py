"""Which price applies (models.pricing) and the price file's validation
(models.price_file), without a database."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

import pytest

from models.price_file import KEYS, load_price_file, parse_price_file
from models.pricing import LIBRARY_LABEL, OrgPrice, PriceBook
from spendwatch.errors import ConfigurationError, PriceFileError

D = Decimal
NOV1 = dt.date(2026, 11, 1)


def org(model: str, kind: str = "contract", tier: str = "*", since: str = "2026-01-01",
        inp: str = "1", out: str = "2", **extra: object) -> OrgPrice:
    return OrgPrice(model=model, service_tier=tier, kind=kind,
                    effective_from=dt.date.fromisoformat(since), input_per_mtok=D(inp),
                    output_per_mtok=D(out), **extra)  # type: ignore[arg-type]


def prices(row) -> tuple[Decimal | None, Decimal | None, Decimal]:
    return row.input_per_mtok, row.cached_input_per_mtok, row.output_per_mtok


# -- org rows ---------------------------------------------------------------------------------
def test_contract_and_list_rows_are_looked_up_separately():
    book = PriceBook.from_rows([org("gpt-4o", "contract", inp="2", out="8"),
                                org("gpt-4o", "list", inp="3", out="9"),
                                org("my-model", "list", inp="0.5", out="1")])
    contract = book.contract_price("gpt-4o", None, False, NOV1)
    listed = book.list_price("gpt-4o", None, False, NOV1)
    assert (contract.kind, contract.source, contract.input_per_mtok) == ("contract", "org", D(2))
    # an org list row wins over genai-prices (which says 2.5 / 10)
    assert (listed.kind, listed.source, listed.input_per_mtok) == ("list", "org", D(3))
    # a list row is not a contract
    assert book.contract_price("my-model", None, False, NOV1) is None
    assert book.list_price("my-model", None, False, NOV1).output_per_mtok == D(1)


def test_no_contract_means_none_and_list_comes_from_genai_prices():
    book = PriceBook.from_rows([])
    assert book.contract_price("gpt-4o", None, False, NOV1) is None
    assert book.list_price("gpt-4o", None, False, NOV1).source == "genai-prices"


def test_exact_model_beats_prefix():
    book = PriceBook.from_rows([org("ft:gpt-4o-mini*", inp="1"),
                                org("ft:gpt-4o-mini-2024-07-18:acme::x1", inp="2")])
    row = book.contract_price("ft:gpt-4o-mini-2024-07-18:acme::x1", None, False, NOV1)
    assert row.input_per_mtok == D(2) and "exact model" in row.why
    other = book.contract_price("ft:gpt-4o-mini-2024-07-18:acme::x2", None, False, NOV1)
    assert other.input_per_mtok == D(1) and other.model == "ft:gpt-4o-mini*"
    assert "prefix 'ft:gpt-4o-mini*'" in other.why


def test_longest_prefix_wins():
    book = PriceBook.from_rows([org("ft:*", inp="1"), org("ft:gpt-4o-mini*", inp="2"),
                                org("ft:gpt-4o*", inp="3")])
    assert book.contract_price("ft:gpt-4o-mini-2024-07-18:acme::x", None, False,
                               NOV1).input_per_mtok == D(2)
    assert book.contract_price("ft:gpt-4o-2024-08-06:acme::x", None, False,
                               NOV1).input_per_mtok == D(3)
    assert book.contract_price("ft:babbage-002:acme::x", None, False, NOV1).input_per_mtok == D(1)
    assert book.contract_price("gpt-4o", None, False, NOV1) is None  # a prefix, not a substring


def test_exact_tier_beats_star():
    book = PriceBook.from_rows([org("gpt-5", tier="*", inp="1"),
                                org("gpt-5", tier="flex", inp="0.5"),
                                org("gpt-5", tier="batch", inp="0.4")])
    assert book.contract_price("gpt-5", "flex", False, NOV1).input_per_mtok == D("0.5")
    assert book.contract_price("gpt-5", "default", False, NOV1).input_per_mtok == D(1)
    assert book.contract_price("gpt-5", "priority", False, NOV1).input_per_mtok == D(1)
    # a batch call is priced at the batch row, whatever tier it names
    batch = book.contract_price("gpt-5", "flex", True, NOV1)
    assert (batch.input_per_mtok, batch.service_tier) == (D("0.4"), "batch")
    star = book.contract_price("gpt-5", None, False, NOV1)
    assert star.service_tier == "*" and "tier * (no default row in effect)" in star.why


@pytest.mark.parametrize("tier", [None, "", "auto", "default", "DEFAULT"])
def test_default_tier_aliases(tier):
    book = PriceBook.from_rows([org("gpt-5", tier="default", inp="7")])
    assert book.contract_price("gpt-5", tier, False, NOV1).input_per_mtok == D(7)


def test_unknown_tier_is_unpriced_unless_a_row_covers_every_tier():
    # a tier nobody prices is not guessed at the default rate ("never a guessed price")
    book = PriceBook.from_rows([org("gpt-5", tier="default", inp="7")])
    assert book.contract_price("gpt-5", "scale", False, NOV1) is None
    assert book.list_price("gpt-4o", "scale", False, NOV1) is None
    why = book.why_unpriced("gpt-4o", "scale", False, NOV1)
    assert "'scale'" in why and 'service_tier = "*"' in why
    # a row for every tier does price it, and says the tier is unknown
    star = PriceBook.from_rows([org("gpt-5", tier="*", inp="7")])
    row = star.contract_price("gpt-5", "scale", False, NOV1)
    assert row.input_per_mtok == D(7) and "'scale' is not one spendwatch knows" in row.why


def test_effective_date_switches_on_the_15th():
    book = PriceBook.from_rows([org("gpt-4o", since="2026-03-01", inp="2.00"),
                                org("gpt-4o", since="2026-03-15", inp="1.80")])
    assert book.contract_price("gpt-4o", None, False, dt.date(2026, 2, 28)) is None
    assert book.contract_price("gpt-4o", None, False, dt.date(2026, 3, 1)).input_per_mtok == \
        D("2.00")
    assert book.contract_price("gpt-4o", None, False, dt.date(2026, 3, 14)).input_per_mtok == \
        D("2.00")
    on15 = book.contract_price("gpt-4o", None, False, dt.date(2026, 3, 15))
    assert on15.input_per_mtok == D("1.80") and on15.effective_from == dt.date(2026, 3, 15)
    assert "effective from 2026-03-15" in on15.why


def test_aware_datetime_is_read_as_its_utc_day():
    book = PriceBook.from_rows([org("gpt-4o", since="2026-03-01", inp="2"),
                                org("gpt-4o", since="2026-03-15", inp="1")])
    # 2026-03-14 23:30 in New York is 2026-03-15 03:30 UTC
    at = dt.datetime(2026, 3, 14, 23, 30, tzinfo=dt.timezone(dt.timedelta(hours=-4)))
    assert book.contract_price("gpt-4o", None, False, at).input_per_mtok == D(1)


def test_unknown_model_has_no_price():
    book = PriceBook.from_rows([org("gpt-4o")])
    assert book.list_price("my-local-llama", None, False, NOV1) is None
    assert book.contract_price("my-local-llama", None, False, NOV1) is None
    assert book.list_price("", None, False, NOV1) is None


def test_org_ref_names_the_row_and_source():
    row = org("gpt-4o", source="/etc/spendwatch/prices.toml:7", id=12)
    assert row.ref == "org_prices #12 (prices.toml:7)"
    price = PriceBook.from_rows([row]).contract_price("gpt-4o", None, False, NOV1)
    assert price.ref == "org_prices #12 (prices.toml:7)"


def test_results_are_cached():
    book = PriceBook.from_rows([])
    first = book.list_price("gpt-4o", None, False, NOV1)
    assert book.list_price("gpt-4o", None, False, NOV1) is first


def test_models_without_price():
    book = PriceBook.from_rows([org("my-local-llama", "list")])
    seen = [("gpt-4o", None, False), ("mystery", "flex", False), ("my-local-llama", None, True),
            ("mystery", "flex", False), ("other", None, True)]
    assert book.models_without_price(seen, NOV1) == [("mystery", "flex", False),
                                                     ("other", None, True)]


# -- genai-prices -----------------------------------------------------------------------------
def test_gpt_4o_list_price():
    row = PriceBook.from_rows([]).list_price("gpt-4o", None, False, NOV1)
    assert prices(row) == (D("2.5"), D("1.25"), D(10))
    assert row.cache_write_per_mtok is None and row.audio_input_per_mtok is None
    assert row.ref == f"{LIBRARY_LABEL}: openai/gpt-4o default"
    assert (row.source, row.kind, row.model, row.service_tier) == ("genai-prices", "list",
                                                                   "gpt-4o", "default")


def test_dated_snapshot_resolves_to_the_same_row():
    book = PriceBook.from_rows([])
    dated = book.list_price("gpt-4o-2024-08-06", "default", False, NOV1)
    plain = book.list_price("gpt-4o", "default", False, NOV1)
    assert (dated.ref, prices(dated)) == (plain.ref, prices(plain))
    assert "equals 'gpt-4o-2024-08-06'" in dated.why


def test_gpt_5_flex_priority_and_batch_variants():
    book = PriceBook.from_rows([])
    # genai-prices 0.2.3: gpt-5 standard 1.25 / cached 0.125 / output 10
    assert prices(book.list_price("gpt-5", "default", False, NOV1)) == (D("1.25"), D("0.125"),
                                                                         D(10))
    # flex variant from 2026-10-12: input 0.625, cached 0.0625, output 5 (half the standard)
    flex = book.list_price("gpt-5", "flex", False, NOV1)
    assert prices(flex) == (D("0.625"), D("0.0625"), D(5))
    assert flex.ref == f"{LIBRARY_LABEL}: openai/gpt-5 flex from 2026-10-12"
    assert flex.effective_from == dt.date(2026, 10, 12) and "flex rate from 2026-10-12" in flex.why
    # priority variant from 2026-10-12: input 2.5, cached 0.25, output 20 (twice the standard)
    assert prices(book.list_price("gpt-5", "priority", False, NOV1)) == (D("2.5"), D("0.25"),
                                                                          D(20))
    # batch variant ({"processing": "batch"}) from 2026-10-14: 0.625 / 0.0625 / 5
    batch = book.list_price("gpt-5", None, True, NOV1)
    assert prices(batch) == (D("0.625"), D("0.0625"), D(5))
    assert batch.service_tier == "batch"
    assert batch.ref == f"{LIBRARY_LABEL}: openai/gpt-5 batch from 2026-10-14"


def test_variant_missing_fields_fall_back_to_the_base():
    # genai-prices 0.2.3: gpt-4o batch from 2026-10-14 sets input 1.25 and output 5 only;
    # cached input keeps the standard 1.25
    row = PriceBook.from_rows([]).list_price("gpt-4o", None, True, NOV1)
    assert prices(row) == (D("1.25"), D("1.25"), D(5))


def test_tier_without_a_rate_yet_is_unpriced_and_says_why():
    # o3's flex rate starts 2026-10-12 in genai-prices 0.2.3: a flex call on 2025-07-01
    # has no known rate, and the standard 2 / 8 would be a guess (flex costs less)
    book = PriceBook.from_rows([])
    on = dt.date(2025, 7, 1)
    assert book.list_price("o3", "flex", False, on) is None
    why = book.why_unpriced("o3", "flex", False, on)
    assert "no flex rate for o3 on 2025-07-01" in why and "starts 2026-10-12" in why
    assert "org row for tier 'flex'" in why
    # a model without any flex rate: the same
    assert book.list_price("gpt-4o", "flex", False, NOV1) is None
    # an org list row for the tier prices it
    org_flex = PriceBook.from_rows([org("o3", "list", tier="flex", since="2025-04-01",
                                        inp="1", out="4")])
    assert prices(org_flex.list_price("o3", "flex", False, on))[::2] == (D(1), D(4))


def test_o3_price_cut_on_2025_06_10():
    book = PriceBook.from_rows([])
    before = book.list_price("o3", None, False, dt.date(2025, 6, 9))
    after = book.list_price("o3", None, False, dt.date(2025, 6, 10))
    assert (before.input_per_mtok, before.output_per_mtok) == (D(10), D(40))
    assert (after.input_per_mtok, after.output_per_mtok) == (D(2), D(8))
    assert after.ref == f"{LIBRARY_LABEL}: openai/o3 default from 2025-06-10"
    assert before.ref != after.ref


def test_long_context_thresholds_of_the_library():
    # genai-prices 0.2.3: every tiered OpenAI price starts its tier above 272,000
    assert PriceBook.from_rows([]).context_thresholds == (272_000,)


def test_long_context_rates_of_gpt_5_4():
    # genai-prices 0.2.3, gpt-5.4: input 2.5 / cached 0.25 / output 15, and above 272,000
    # input tokens 5 / 0.5 / 22.5 (every token of such a request)
    book = PriceBook.from_rows([])
    base = book.list_price("gpt-5.4", None, False, NOV1)
    assert prices(base) == (D("2.5"), D("0.25"), D(15))
    assert "long context: the base rate" in base.why and "272,000" in base.why
    long = book.list_price("gpt-5.4", None, False, NOV1, 272_000)
    assert prices(long) == (D(5), D("0.5"), D("22.5"))
    assert long.ref.endswith(", input over 272,000 tokens") and long.ref != base.ref
    assert "exceeded 272,000 tokens" in long.why
    # flex has its own long-context rates: 1.25 / 0.13 / 7.5, above 272,000 2.5 / 0.25 / 11.25
    flex = book.list_price("gpt-5.4", "flex", False, NOV1, 272_000)
    assert prices(flex) == (D("2.5"), D("0.25"), D("11.25"))
    # a model without long-context rates: the same row whatever the band
    assert prices(book.list_price("gpt-4o", None, False, NOV1, 272_000)) == \
        prices(book.list_price("gpt-4o", None, False, NOV1))


def test_long_context_cost_of_one_request():
    from models.costs import Tokens, cost_of

    # 300,000 input tokens (100,000 cached) and 10,000 output on gpt-5.4, over 272,000:
    #   200,000 x $5 / M = $1.00, 100,000 x $0.50 / M = $0.05, 10,000 x $22.50 / M = $0.225
    #   total $1.275 (the base rate would say 0.50 + 0.025 + 0.15 = $0.675)
    book = PriceBook.from_rows([])
    tokens = Tokens(input_tokens=300_000, cached_input_tokens=100_000, output_tokens=10_000)
    assert cost_of(tokens, book.list_price("gpt-5.4", None, False, NOV1, 272_000)).total == \
        D("1.275")
    assert cost_of(tokens, book.list_price("gpt-5.4", None, False, NOV1)).total == D("0.675")


def test_an_org_row_has_one_rate_whatever_the_length():
    book = PriceBook.from_rows([org("gpt-5.4", "contract", inp="2", out="12")])
    row = book.contract_price("gpt-5.4", None, False, NOV1, 272_000)
    assert (row.input_per_mtok, row.output_per_mtok) == (D(2), D(12))
    assert "one rate whatever the length" in row.why


def test_models_the_library_does_not_know_or_price_by_token():
    book = PriceBook.from_rows([])
    assert book.list_price("my-local-llama", None, False, NOV1) is None
    assert book.list_price("whisper-1", None, False, NOV1) is None  # priced per minute


# -- price file -------------------------------------------------------------------------------
GOOD = """\
# prices.toml
[[price]]
model = "gpt-4o"
service_tier = "default"
kind = "contract"
effective_from = 2026-01-01
input_per_mtok = "2.00"
cached_input_per_mtok = 1.00
output_per_mtok = 8
note = "MSA 2026, schedule B"

[[price]]
model = "ft:gpt-4o-mini-2024-07-18:acme:*"
kind = "list"
effective_from = "2026-02-01"
input_per_mtok = "0.005"
output_per_mtok = "0.3"
audio_input_per_mtok = "40"
audio_output_per_mtok = "80"
cache_write_per_mtok = "2.50"
"""

ENTRY = """\
[[price]]
model = "gpt-4o"
kind = "contract"
effective_from = 2026-01-01
input_per_mtok = "2.00"
output_per_mtok = "8.00"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "prices.toml"
    path.write_text(text, encoding="utf-8")
    return path


def refused(tmp_path: Path, text: str) -> str:
    path = write(tmp_path, text)
    with pytest.raises(PriceFileError) as info:
        load_price_file(path)
    return str(info.value)


def test_good_file_parses_exactly(tmp_path):
    path = write(tmp_path, GOOD)
    first, second = load_price_file(path)
    assert first.key == ("gpt-4o", "default", "contract", dt.date(2026, 1, 1))
    assert (first.input_per_mtok, first.cached_input_per_mtok, first.output_per_mtok) == \
        (D("2.00"), D("1.00"), D(8))
    assert first.note == "MSA 2026, schedule B" and first.line == 2
    assert first.source == f"{path}:2"
    assert second.service_tier == "*" and second.input_per_mtok == D("0.005")
    assert str(second.input_per_mtok) == "0.005"  # exact, never a float
    assert (second.audio_input_per_mtok, second.cache_write_per_mtok) == (D(40), D("2.50"))
    assert second.line == 12


def test_price_file_error_is_a_configuration_error(tmp_path):
    message = refused(tmp_path, ENTRY.replace('"2.00"', '"-2"'))
    assert issubclass(PriceFileError, ConfigurationError) and issubclass(PriceFileError,
                                                                          ValueError)
    assert "nothing was applied" in message


def test_negative_price(tmp_path):
    message = refused(tmp_path, ENTRY.replace('input_per_mtok = "2.00"',
                                              'input_per_mtok = "-2.00"'))
    assert f"{tmp_path / 'prices.toml'}:5: input_per_mtok = \"-2.00\" is negative" in message
    assert "a price is 0 or more" in message


def test_unknown_tier(tmp_path):
    message = refused(tmp_path, ENTRY.replace('kind =', 'service_tier = "turbo"\nkind ='))
    assert 'prices.toml:3: service_tier = "turbo" is not a tier' in message
    assert "use one of default, flex, priority, batch, *" in message


def test_unknown_kind(tmp_path):
    message = refused(tmp_path, ENTRY.replace('"contract"', '"discount"'))
    assert 'prices.toml:3: kind = "discount" is not a kind of price' in message
    assert 'use "contract"' in message and '"list"' in message


def test_unknown_key_names_the_known_keys(tmp_path):
    message = refused(tmp_path, ENTRY + 'input_price = "2"\n')
    assert "prices.toml:7: unknown key 'input_price'" in message
    assert "the known keys are " + ", ".join(KEYS) in message


def test_unknown_top_level_key(tmp_path):
    message = refused(tmp_path, 'currency = "EUR"\n' + ENTRY)
    assert "prices.toml:1: unknown top-level key 'currency'" in message
    assert "[[price]] table" in message


@pytest.mark.parametrize(("key", "fix"), [
    ("model", 'add model = "gpt-4o"'),
    ("effective_from", "add effective_from = 2026-01-01"),
    ("input_per_mtok", 'add input_per_mtok = "2.50"'),
    ("output_per_mtok", 'add output_per_mtok = "10.00"'),
    ("kind", 'add kind = "contract"'),
])
def test_missing_required_key(tmp_path, key, fix):
    text = "\n".join(line for line in ENTRY.splitlines() if not line.startswith(key + " "))
    message = refused(tmp_path, "# header comment\n" + text + "\n")
    assert f"prices.toml:2: missing {key}; {fix}" in message


@pytest.mark.parametrize("value", ['"2026-02-30"', '"01/02/2026"', '"2026-1-5"', "20260101",
                                   "2026-01-01T10:00:00"])
def test_date_that_does_not_parse(tmp_path, value):
    message = refused(tmp_path, ENTRY.replace("2026-01-01", value))
    assert "prices.toml:4: effective_from = " in message and "is not a date" in message
    assert "write a date such as 2026-01-01" in message


@pytest.mark.parametrize("value", ['"2,50"', '"2.5.0"', '"$2"', '"nan"', "nan", "true"])
def test_value_that_is_not_a_decimal(tmp_path, value):
    message = refused(tmp_path, ENTRY.replace('"8.00"', value))
    assert "prices.toml:6: output_per_mtok = " in message
    assert "write it like output_per_mtok = \"2.50\"" in message


def test_too_many_decimal_places(tmp_path):
    message = refused(tmp_path, ENTRY.replace('"8.00"', '"0.0000000000000000001"'))
    assert "prices.toml:6: output_per_mtok" in message and "18 decimal places" in message


def test_overlapping_effective_dates(tmp_path):
    message = refused(tmp_path, ENTRY + "\n" + ENTRY.replace('"2.00"', '"1.50"'))
    assert "prices.toml:8: the entry for 'gpt-4o'" in message
    assert "repeats the one at line 1: overlapping effective dates" in message
    assert "give one another effective_from" in message


def test_same_model_other_tier_or_date_is_not_a_duplicate(tmp_path):
    text = (ENTRY + "\n" + ENTRY.replace("2026-01-01", "2026-03-15") + "\n"
            + ENTRY.replace('kind =', 'service_tier = "flex"\nkind ='))
    assert len(load_price_file(write(tmp_path, text))) == 3


def test_invalid_toml_names_its_line(tmp_path):
    message = refused(tmp_path, ENTRY + "[[price]]\nmodel = gpt-4o\n")
    assert "prices.toml:8: not valid TOML" in message
    assert 'text needs quotes: model = "gpt-4o"' in message


def test_bad_prefix_and_empty_file(tmp_path):
    message = refused(tmp_path, ENTRY.replace('"gpt-4o"', '"gpt-*-mini"'))
    assert "prices.toml:2: model = \"gpt-*-mini\": '*' may only end a prefix" in message
    assert "prices.toml:1: the file has no [[price]] entries" in refused(tmp_path, "# empty\n")


def test_every_problem_is_reported_together(tmp_path):
    text = (ENTRY.replace('"2.00"', '"-1"')                        # line 5
            + "\n[[price]]\n"                                      # line 8
            + 'model = "o3"\nkind = "rebate"\neffective_from = 2026-01-01\n'  # kind: line 10
            + 'input_per_mtok = "1"\noutput_per_mtok = "2,0"\n'     # output: line 13
            + "\n" + ENTRY)                                        # duplicate at line 15
    with pytest.raises(PriceFileError) as info:
        load_price_file(write(tmp_path, text))
    lines = str(info.value).splitlines()
    assert lines[0].endswith("refused, nothing was applied (4 problems):")
    assert [line.split(": ")[0].rsplit(":", 1)[1] for line in lines[1:]] == ["5", "10", "13",
                                                                            "15"]
    assert [p.line for p in info.value.problems] == [5, 10, 13, 15]


def test_missing_file_and_parse_without_a_file():
    with pytest.raises(PriceFileError, match="no such file; check the path"):
        load_price_file("/nonexistent/prices.toml")
    assert parse_price_file(ENTRY, "inline.toml")[0].source == "inline.toml:1"


def test_org_row_for_a_model_covers_its_dated_snapshots() -> None:
    # Responses name the snapshot (gpt-4o-2024-08-06); a contract for gpt-4o covers it,
    # but an exact row for the snapshot still wins.
    base = OrgPrice(model="gpt-4o", service_tier="*", kind="contract",
                    effective_from=dt.date(2026, 1, 1), input_per_mtok=Decimal("2"),
                    output_per_mtok=Decimal("8"))
    book = PriceBook.from_rows([base])
    row = book.contract_price("gpt-4o-2024-08-06", "default", False, dt.date(2026, 2, 1))
    assert row is not None and row.input_per_mtok == Decimal("2")
    assert "snapshot of gpt-4o" in row.why
    exact = OrgPrice(model="gpt-4o-2024-08-06", service_tier="*", kind="contract",
                     effective_from=dt.date(2026, 1, 1), input_per_mtok=Decimal("1.9"),
                     output_per_mtok=Decimal("7"))
    book = PriceBook.from_rows([base, exact])
    row = book.contract_price("gpt-4o-2024-08-06", "default", False, dt.date(2026, 2, 1))
    assert row is not None and row.input_per_mtok == Decimal("1.9")
