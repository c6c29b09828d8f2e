"""Reliability rules on real calls (the openai SDK against FakeOpenAI, recorded by the
collector) and budget enforcement in the collector, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import pytest
from openai import OpenAI, RateLimitError

import collector
from alerts import alert_history, apply_budget_file, evaluate_alerts
from collector import budget_guard
from spendwatch.errors import BudgetExceededError
from tests.alerts.conftest import Book, make_settings, record_and_roll_up, spend_event

UTC = dt.UTC
USAGE_1M = json.dumps({"prompt_tokens": 1_000_000, "completion_tokens": 0,
                       "total_tokens": 1_000_000})  # gpt-4o: $2.50


def _client(fake, **tags: str) -> OpenAI:
    return collector.instrument(OpenAI(base_url=fake.base_url, api_key="test", max_retries=0),
                                **tags)


def _chat(client: OpenAI, model: str = "gpt-4o", **headers: str) -> object:
    return client.chat.completions.create(model=model, messages=[{"role": "user",
                                                                  "content": "hi"}],
                                          extra_headers=headers or None)


RULES = """
[defaults]
recipients = ["oncall@example.com"]

[[rule]]
name = "429 storm"
kind = "error_rate"
classes = ["rate_limit", "server"]
threshold = 50
min_requests = 5
window_minutes = 15
"""


def test_a_429_storm_sends_one_alert_then_one_resolved_notice(recording, engine, tmp_path,
                                                             fake_openai, smtp_server,
                                                             webhook):
    controller, smtp = smtp_server
    settings = make_settings(recording, tmp_path, smtp_host="127.0.0.1",
                             smtp_port=controller.port, alert_webhook_url=webhook.url)
    path = tmp_path / "rules.toml"
    path.write_text(RULES)
    apply_budget_file(engine, path)
    client = _client(fake_openai, team="search")
    for _ in range(10):
        with pytest.raises(RateLimitError):
            _chat(client, **{"x-fake-fail": "429"})
    for _ in range(2):
        _chat(client)
    assert collector.flush(timeout=10)

    storm = evaluate_alerts(engine, settings, now=dt.datetime.now(UTC))
    # 10 of 12 requests failed with 429: 83.3 % >= 50 %
    assert storm.triggered == ["429 (rate limit) errors at 83.3% for model gpt-4o"]
    assert evaluate_alerts(engine, settings, now=dt.datetime.now(UTC)).triggered == []
    for _ in range(12):  # traffic recovers: 10 of 24 = 41.7 % < 50 %
        _chat(client)
    assert collector.flush(timeout=10)
    recovered = evaluate_alerts(engine, settings, now=dt.datetime.now(UTC))
    assert recovered.resolved == ["429 (rate limit) errors at 83.3% for model gpt-4o"]
    again = evaluate_alerts(engine, settings, now=dt.datetime.now(UTC))
    assert again.triggered == [] and again.resolved == [] and again.sent == []

    subjects = [m["Subject"] for _, _, m in smtp.messages]
    assert subjects == ["[spendwatch] 429 (rate limit) errors at 83.3% for model gpt-4o",
                        "[spendwatch] Resolved: 429 (rate limit) errors at 83.3% for model "
                        "gpt-4o"]
    assert [p["text"].split(" <")[0] for p in webhook.posts] == [
        "429 (rate limit) errors at 83.3% of requests for model gpt-4o (threshold 50%)",
        webhook.posts[1]["text"].split(" <")[0]]
    assert webhook.posts[1]["text"].startswith("Resolved: 429 (rate limit) errors")
    [alert] = alert_history(engine)
    assert alert.status == "resolved" and alert.period.endswith("#1")
    text = smtp.messages[0][2].get_body(("plain",)).get_content()
    assert "10 of 12 requests" in text


# -- enforcement -----------------------------------------------------------------------------
BLOCK = """
[[budget]]
name = "search-cap"
scope = { team = "search" }
period = "monthly"
amount = "5"
mode = "block"
recipients = ["lead@example.com"]

[[budget]]
name = "ranker-downgrade"
scope = { project = "ranker" }
period = "daily"
amount = "1"
mode = "downgrade"
downgrade = { "gpt-4o" = "gpt-4o-mini" }
"""


@pytest.fixture
def guard(recording, engine, tmp_path):
    path = tmp_path / "budgets.toml"
    path.write_text(BLOCK)
    apply_budget_file(engine, path)
    settings = make_settings(recording, tmp_path, enforce_budgets=True, enforce_refresh=3600)
    yield budget_guard.enable(settings, engine=engine, prices=Book())
    budget_guard.disable()


def test_enforcement_is_off_by_default(recording, fake_openai):
    assert budget_guard.GUARD is None
    _client(fake_openai, team="search")
    assert budget_guard.GUARD is None


def test_a_block_budget_stops_the_call_before_any_request(guard, engine, fake_openai):
    # $2.50 already in the rollups for this month
    record_and_roll_up(engine, [spend_event(dt.datetime.now(UTC) - dt.timedelta(minutes=10),
                                            project="other")])
    guard.refresh()
    client = _client(fake_openai, team="search", project="web")
    before = fake_openai.requests
    _chat(client, **{"x-fake-usage": USAGE_1M})  # $2.50 + $2.50 of its own = $5.00
    assert fake_openai.requests == before + 1
    with pytest.raises(BudgetExceededError) as caught:
        _chat(client)
    assert fake_openai.requests == before + 1  # nothing reached the server
    err = caught.value
    assert (err.budget, err.scope, err.spend, err.limit) == ("search-cap", "team=search",
                                                            Decimal("5.00"), Decimal("5"))
    assert "search-cap" in str(err) and "spendwatch budgets apply" in str(err)
    # another team is not held back
    other = _client(fake_openai, team="ads", project="web")
    _chat(other)
    assert fake_openai.requests == before + 2


def test_own_calls_count_after_the_client_is_instrumented_again(guard, fake_openai):
    client = _client(fake_openai, team="search", project="web")
    before = fake_openai.requests
    _chat(client, **{"x-fake-usage": USAGE_1M})  # $2.50 of $5
    collector.instrument(client, team="search", project="web")  # replaces the hand-off
    _chat(client, **{"x-fake-usage": USAGE_1M})  # $5.00 of $5
    with pytest.raises(BudgetExceededError):
        _chat(client)
    assert fake_openai.requests == before + 2


def test_a_downgrade_budget_swaps_the_model(guard, engine, fake_openai, recording):
    record_and_roll_up(engine, [spend_event(dt.datetime.now(UTC) - dt.timedelta(minutes=10),
                                            team="ads", project="ranker")])
    guard.refresh()
    client = _client(fake_openai, team="ads", project="ranker")
    response = _chat(client, model="gpt-4o")
    assert response.model == "gpt-4o-mini"
    assert _chat(client, model="o3").model == "o3"  # not in the map: unchanged
    elsewhere = _client(fake_openai, team="ads", project="web")
    assert _chat(elsewhere, model="gpt-4o").model == "gpt-4o"
    assert collector.flush(timeout=10)
    models = [r.model_requested for r in recording.rows(
        "SELECT model_requested FROM usage_events WHERE project = 'ranker' "
        "AND provider <> 'openai' ORDER BY ts")]
    assert models == ["gpt-4o-mini", "o3"]
