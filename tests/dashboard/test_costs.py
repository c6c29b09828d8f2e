"""The Costs page's numbers with known values on SQLite and PostgreSQL (events
through the event store and the real rollups), its callbacks called directly, and
bad URL input turned into messages."""

from __future__ import annotations

import csv
import datetime as dt
import io
from decimal import Decimal

import pytest
from sqlalchemy import text

from dashboard.breakdown import spend_breakdown
from dashboard.filters import parse_view
from dashboard.pages import costs
from tests.dashboard.conftest import make_context
from tests.dashboard.sample import Book, event, record

UTC = dt.UTC
TODAY = dt.date(2026, 3, 10)


def day(d: int, hour: int = 12) -> dt.datetime:
    return dt.datetime(2026, 3, d, hour, tzinfo=UTC)


def known_events():
    return [
        # Mon 2 March, gpt-4o, 400 of 1000 input tokens cached:
        #   600 x 2.50/M + 400 x 1.25/M + 100 x 10/M = 0.0015 + 0.0005 + 0.001 = 0.003
        #   caching saved 400 x (2.50 - 1.25)/M = 0.0005
        event(day(2), user="u1", cached_input_tokens=400),
        # Tue 3 March, gpt-4o-mini: 1000 x 0.15/M + 100 x 0.60/M = 0.00021
        event(day(3), model="gpt-4o-mini", team="support", project="helpdesk-bot",
              user="u2"),
        # Mon 9 March, gpt-4o on the responses endpoint: 0.0025 + 0.001 = 0.0035
        event(day(9), user="u2", endpoint="responses", reasoning_tokens=40),
        # Mon 9 March, an unpriced fine-tune: 1000 + 100 tokens, no cost
        event(day(9), model="mystery-ft", user="u1"),
    ]


def view(**query):
    return parse_view({"start": "2026-03-01", "end": "2026-03-10", **query}, today=TODAY)


def test_weekly_spend_by_model(engine):
    record(engine, known_events())
    result = spend_breakdown(engine, view(granularity="week"), Book())
    got = {(r["period"], r["key"]): r["cost"] for r in result.series.to_dict("records")}
    assert got == {
        (dt.date(2026, 3, 2), "gpt-4o"): Decimal("0.003"),
        (dt.date(2026, 3, 2), "gpt-4o-mini"): Decimal("0.00021"),
        (dt.date(2026, 3, 9), "gpt-4o"): Decimal("0.0035"),
        (dt.date(2026, 3, 9), "mystery-ft"): None,  # unpriced: unknown, not $0
    }
    totals = {r["key"]: r for r in result.totals.to_dict("records")}
    assert list(result.totals["key"]) == ["gpt-4o", "gpt-4o-mini", "mystery-ft"]
    assert totals["gpt-4o"]["cost"] == Decimal("0.0065")
    assert totals["gpt-4o"]["cost_per_1k_requests"] == Decimal("3.25")  # 0.0065 / 2 x 1000
    assert totals["mystery-ft"]["cost"] is None
    assert totals["mystery-ft"]["unpriced_tokens"] == 1100
    assert result.savings == Decimal("0.0005")
    first_week = result.tokens[result.tokens["period"] == dt.date(2026, 3, 2)]
    kinds = dict(zip(first_week["kind"], first_week["tokens"], strict=True))
    # input 1000 + 1000 of which 400 cached; output 100 + 100, no reasoning
    assert kinds == {"uncached input": 1600, "cached input": 400, "cache writes": 0,
                     "output": 200, "reasoning": 0}
    second_week = result.tokens[result.tokens["period"] == dt.date(2026, 3, 9)]
    kinds = dict(zip(second_week["kind"], second_week["tokens"], strict=True))
    assert kinds["output"] == 160 and kinds["reasoning"] == 40


def test_group_by_team_endpoint_and_tier_with_filters(engine):
    record(engine, known_events())
    by_team = spend_breakdown(engine, view(by="team", granularity="month"), Book())
    assert {r["key"]: r["cost"] for r in by_team.totals.to_dict("records")} == {
        "search": Decimal("0.0065"), "support": Decimal("0.00021")}
    by_endpoint = spend_breakdown(engine, view(by="endpoint", model=["gpt-4o"]), Book())
    assert {r["key"]: r["cost"] for r in by_endpoint.totals.to_dict("records")} == {
        "chat.completions": Decimal("0.003"), "responses": Decimal("0.0035")}
    by_tier = spend_breakdown(engine, view(by="tier", team=["support"]), Book())
    assert list(by_tier.totals["key"]) == ["default"]
    assert by_tier.totals["cost"][0] == Decimal("0.00021")


def test_group_by_user_reads_the_user_rollup(engine):
    record(engine, known_events())
    result = spend_breakdown(engine, view(by="user"), Book())
    totals = {r["key"]: r for r in result.totals.to_dict("records")}
    assert totals["u1"]["cost"] == Decimal("0.003")
    assert totals["u1"]["unpriced_tokens"] == 1100
    assert totals["u2"]["cost"] == Decimal("0.00371")  # 0.00021 + 0.0035
    assert result.savings == Decimal("0.0005")
    filtered = spend_breakdown(engine, view(by="model", user=["u2"], endpoint=["responses"]),
                               Book())
    assert "no endpoint" in filtered.notes[0]
    assert {r["key"]: r["cost"] for r in filtered.totals.to_dict("records")} == {
        "gpt-4o": Decimal("0.0035"), "gpt-4o-mini": Decimal("0.00021")}


def controls(**query):
    base = {"start": "2026-03-01", "end": "2026-03-10", "granularity": "day", "by": "model"}
    base.update(query)
    return [base.get(name) for name, _, _ in costs.CONTROLS]


def test_callback_and_csv(engine):
    record(engine, known_events())
    ctx = make_context(engine, today=TODAY)
    notes, summary, fig, tokens, table = costs.update(ctx, *controls())
    assert notes == []
    assert "$0.006710" in str(summary)  # 0.0065 + 0.00021, four significant digits
    cached = next(t for t in tokens["data"] if t["name"] == "cached input")
    assert sum(cached["y"]) == 400
    assert "$0.0005" in str(summary)  # cache savings
    assert "unpriced" in str(summary) and "unpriced" in str(table)
    traces = {t["name"]: t for t in fig["data"]}
    assert traces["gpt-4o"]["y"] == [0.003, 0.0035]
    assert "mystery-ft" not in traces  # unpriced: no bar (never $0), said in the summary
    payload = costs.csv_export(ctx, *controls())
    rows = {r["model"]: r for r in csv.DictReader(io.StringIO(payload["content"]))}
    assert rows["gpt-4o"]["cost_usd"] == "0.0065"
    assert rows["gpt-4o"]["cost_per_1k_requests_usd"] == "3.25"
    assert rows["mystery-ft"]["cost_usd"] == "" and rows["mystery-ft"]["unpriced_tokens"] == "1100"
    area = costs.update(ctx, *controls(chart="area"))[2]
    assert {t["type"] for t in area["data"]} == {"scatter"}
    assert all(t["stackgroup"] == "one" for t in area["data"])
    by_team = costs.update(ctx, *controls(by="team"))
    # search: 0.0065 over 3 requests, one of them unpriced: $2.17 per 1k is a floor
    assert "$2.17 + unpriced" in str(by_team[4])
    changed = by_team[2]
    assert {t["name"] for t in changed["data"]} == {"search", "support"}


@pytest.mark.parametrize(("query", "message"), [
    ({"start": "2026-03-10", "end": "2026-03-01"}, "swapped"),
    ({"start": "yesterday"}, "is not a date"),
    ({"by": "colour"}, "cannot group by"),
    ({"granularity": "hourly"}, "granularity"),
    ({"chart": "pie"}, "is not one of bar, area"),
    ({"model": ["gpt-4o' OR '1'='1"]}, "no usage is recorded for model"),
    ({"team": ["<img src=x onerror=alert(1)>"]}, "no usage is recorded for team"),
])
def test_bad_input_is_a_message(engine, query, message):
    record(engine, known_events())
    ctx = make_context(engine, today=TODAY)
    notes, _summary, fig, _tokens, _table = costs.update(ctx, *controls(**query))
    assert message in str(notes)
    assert len(fig["data"]) >= 1  # the page still shows data for the rest of the view
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM rollup_daily")).scalar() > 0


def test_layout_reads_the_url(engine):
    record(engine, known_events())
    ctx = make_context(engine, today=TODAY)
    page = costs.render_layout(ctx, {"start": "2026-03-02", "end": "junk", "by": "team",
                                     "model": ["gpt-4o", "gpt-4o-mini"]})
    text_ = str(page)
    assert "is not a date" in text_
    assert "start_date='2026-03-02'" in text_ and "value='team'" in text_
    assert "value=['gpt-4o', 'gpt-4o-mini']" in text_


def test_tag_values_are_text_in_charts(engine):
    record(engine, [event(day(2), team="<img src=x onerror=alert(1)>")])
    ctx = make_context(engine, today=TODAY)
    fig = costs.update(ctx, *controls(by="team"))[2]
    assert [t["name"] for t in fig["data"]] == ["&lt;img src=x onerror=alert(1)&gt;"]
    assert "$%{y:,.4f}" in fig["data"][0]["hovertemplate"]
