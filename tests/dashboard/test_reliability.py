"""Reliability numbers with known values on SQLite and PostgreSQL: error rates by
class, retries, latency and TTFT percentiles from the merged histograms, the latest
failed requests; the page's callback called directly."""

from __future__ import annotations

import datetime as dt

import pytest

from dashboard.filters import parse_view
from dashboard.pages import reliability as page
from dashboard.queries import percentile
from dashboard.reliability import by_key, over_time, recent_failures
from tests.dashboard.conftest import make_context
from tests.dashboard.sample import event, record

UTC = dt.UTC
TODAY = dt.date(2026, 3, 5)


def known_events():
    t = dt.datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    ok = [event(t + dt.timedelta(minutes=i), latency_ms=120.0) for i in range(6)]
    for e in ok[:4]:  # four streams, first token after 30 ms
        e.streamed, e.ttft_ms = True, 30.0
    ok[0].attempts = 3  # two retries by the SDK
    failed = [
        event(t + dt.timedelta(minutes=10), latency_ms=120.0, status_code=429,
              error_kind="rate_limit", error_class="RateLimitError", request_id="req_429"),
        event(t + dt.timedelta(minutes=11), latency_ms=120.0, status_code=400,
              error_kind="client", error_class="BadRequestError"),
        event(t + dt.timedelta(minutes=12), latency_ms=120.0, status_code=500,
              error_kind="server", error_class="InternalServerError", team=None),
        event(t + dt.timedelta(minutes=13), latency_ms=120.0, status_code=None,
              error_kind="network", error_class="APIConnectionError"),
    ]
    slow = [event(dt.datetime(2026, 3, 3, 9, i, tzinfo=UTC), model="gpt-4o-mini",
                  endpoint="responses", latency_ms=5000.0) for i in range(2)]
    return ok + failed + slow


def view(**query):
    return parse_view({"start": "2026-03-01", "end": "2026-03-05", **query}, today=TODAY,
                      by_choices=("model", "endpoint"))


def test_percentile_interpolates_inside_the_bucket():
    counts = [0] * 20
    counts[4] = 10  # ten samples in [100, 150) ms (edges 10, 25, 50, 100, 150, ...)
    assert percentile(counts, 0.5) == 125.0
    assert percentile(counts, 0.95) == 147.5
    last = [0] * 19 + [5]  # the open bucket: its lower edge
    assert percentile(last, 0.99) == 60000.0
    assert percentile([0] * 20, 0.5) is None


def test_rates_retries_and_percentiles(engine):
    record(engine, known_events())
    keyed, overall = over_time(engine, view(), "model")
    row = keyed[(keyed["key"] == "gpt-4o")].iloc[0]
    assert row["period"] == dt.date(2026, 3, 2)
    assert row["requests"] == 10
    for column in ("rate_errors_rate_limit", "rate_errors_client", "rate_errors_server",
                   "rate_errors_network"):
        assert row[column] == pytest.approx(0.1)
    assert row["error_rate"] == pytest.approx(0.4)
    assert row["retries"] == 2
    assert row["latency_p50"] == pytest.approx(125.0)  # 10 in [100, 150): 100 + 50 x 5/10
    assert row["latency_p95"] == pytest.approx(147.5)  # 100 + 50 x 9.5/10
    assert row["latency_p99"] == pytest.approx(149.5)
    assert row["ttft_p50"] == pytest.approx(37.5)  # 4 in [25, 50): 25 + 25 x 2/4
    mini = keyed[keyed["key"] == "gpt-4o-mini"].iloc[0]
    assert mini["latency_p50"] == pytest.approx(6500.0)  # 2 in [5000, 8000)
    assert mini["error_rate"] == 0
    assert list(overall["requests"]) == [10, 2]
    endpoints = by_key(engine, view(by="endpoint"), "endpoint")
    assert list(endpoints["key"]) == ["chat.completions", "responses"]
    assert list(endpoints["requests"]) == [10, 2]
    weekly, _ = over_time(engine, view(granularity="week"), "model")
    assert set(weekly["period"]) == {dt.date(2026, 3, 2)}


def test_recent_failures_newest_first_with_a_limit(engine):
    record(engine, known_events())
    failures = recent_failures(engine, view(), "UTC", 3)
    assert list(failures["error"]) == ["network", "server", "client"]
    assert list(failures["status"])[1:] == [500, 400]
    everything = recent_failures(engine, view(), "Europe/Paris", 50)
    assert len(everything) == 4
    assert everything["time"].iloc[-1].isoformat() == "2026-03-02T10:10:00+01:00"
    assert everything["request_id"].iloc[-1] == "req_429"
    no_team = recent_failures(engine, view(team=["(none)"]), "UTC", 50)
    assert list(no_team["error"]) == ["server"]  # "(none)" means recorded without a team
    assert len(recent_failures(engine, view(model=["gpt-4o-mini"]), "UTC", 50)) == 0


def controls(**query):
    base = {"start": "2026-03-01", "end": "2026-03-05", "granularity": "day", "by": "model",
            "limit": "50"}
    base.update(query)
    return [base.get(name) for name, _, _ in page.CONTROLS]


def test_callback(engine):
    record(engine, known_events())
    ctx = make_context(engine, today=TODAY)
    notes, summary, volume, errors, latency, table, failures = page.update(ctx, *controls())
    assert notes == []
    assert "33.33 %" in str(summary)  # 4 failed of 12
    assert {t["name"] for t in volume["data"]} == {"gpt-4o", "gpt-4o-mini"}
    rate_429 = next(t for t in errors["data"] if t["name"] == "429 rate limit")
    assert list(rate_429["y"]) == [pytest.approx(0.1), 0.0]
    assert "req_429" in str(failures) and "no response" in str(failures)
    p95 = next(t for t in latency["data"] if t["name"] == "latency p95")
    assert list(p95["y"]) == [pytest.approx(147.5), pytest.approx(7850.0)]  # 5000 + 3000 x 1.9/2
    assert "10.00 %" in str(table) and "6.50 s" in str(table)
    per_model = page.update(ctx, *controls(errors="rate_limit"))[3]
    lines = {t["name"]: t["y"] for t in per_model["data"]}
    assert lines["gpt-4o"] == [pytest.approx(0.1)]  # 1 of 10 on 2 March
    assert lines["gpt-4o-mini"] == [0.0]
    everything = page.update(ctx, *controls(errors="all", by="endpoint"))[3]
    assert {t["name"]: t["y"] for t in everything["data"]}["chat.completions"] == [
        pytest.approx(0.4)]
    by_endpoint = page.update(ctx, *controls(by="endpoint"))[2]
    assert {t["name"] for t in by_endpoint["data"]} == {"chat.completions", "responses"}


@pytest.mark.parametrize(("query", "message"), [
    ({"limit": "1e9"}, "limit"),
    ({"errors": "teapot"}, "error view"),
    ({"by": "team"}, "cannot group by"),
    ({"end": "2026-02-30"}, "is not a date"),
    ({"endpoint": ["x\"; DELETE FROM usage_events; --"]}, "no usage is recorded for endpoint"),
])
def test_bad_input_is_a_message(engine, query, message):
    record(engine, known_events())
    ctx = make_context(engine, today=TODAY)
    notes = page.update(ctx, *controls(**query))[0]
    assert message in str(notes)
    assert len(recent_failures(engine, view(), "UTC", 50)) == 4


def test_recent_failures_span_days_newest_first(engine):
    later = event(dt.datetime(2026, 3, 4, 8, 0, tzinfo=UTC), status_code=503,
                  error_kind="server", error_class="InternalServerError", request_id="req_4th")
    record(engine, [*known_events(), later])
    failures = recent_failures(engine, view(), "UTC", 2)
    assert failures["request_id"].iloc[0] == "req_4th"
    assert list(failures["error"]) == ["server", "network"]  # then 2 March's newest
    assert len(recent_failures(engine, view(), "UTC", 50)) == 5
    assert len(recent_failures(engine, view(start="2026-03-03"), "UTC", 50)) == 1
