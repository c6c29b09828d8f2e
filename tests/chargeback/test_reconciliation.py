"""Reconciliation against FakeOpenAI's Costs API through the real openai SDK: paged
answers, project mapping, day x project differences and the month's drift; errors
and empty answers store nothing."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal as D

import pytest
from sqlalchemy import select

from alerts.chargeback_jobs import daily_reconciliation
from models.reconciliation import fetch_billed_costs, month_drift, reconciliation
from models.schema import billed_costs, reconcile_runs
from spendwatch.cli import main
from spendwatch.errors import ReconciliationError
from spendwatch.settings import load_settings

from .conftest import MARCH

PROJECTS = {"proj_rank": "ranker", "proj_ads": "bidder"}


def bucket(day: int, *results: tuple[str, str, str]) -> dict[str, object]:
    start = int(dt.datetime(2026, 3, day, tzinfo=dt.UTC).timestamp())
    return {"object": "bucket", "start_time": start, "end_time": start + 86_400,
            "results": [{"object": "organization.costs.result", "project_id": pid,
                         "line_item": item, "amount": {"value": float(v), "currency": "usd"}}
                        for pid, item, v in results]}


BUCKETS = [
    bucket(2, ("proj_rank", "acme-1, input", "2.00"), ("proj_rank", "acme-1, output", "4.10")),
    bucket(3, ("proj_rank", "acme-1, input", "2.00"), ("proj_rank", "acme-1, output", "4.00")),
    bucket(6, ("proj_ads", "acme-1, input", "1.50"), ("proj_ads", "acme-1, output", "2.00"),
           ("proj_zzz", "gpt-4o, input", "0.25")),
]


@pytest.fixture
def costs_api(fake_openai):  # type: ignore[no-untyped-def]
    fake_openai.costs_buckets = list(BUCKETS)
    fake_openai.costs_page_size = 2
    fake_openai.costs_status = None
    fake_openai.costs_queries.clear()
    fake_openai.costs_auth.clear()
    yield fake_openai
    fake_openai.costs_buckets = []
    fake_openai.costs_status = None


def fetch(engine, server):  # type: ignore[no-untyped-def]
    return fetch_billed_costs(engine, admin_key="sk-admin-test", base_url=server.base_url,
                              since=MARCH, until=dt.date(2026, 3, 31))


def test_estimated_against_billed(golden, costs_api):  # type: ignore[no-untyped-def]
    result = fetch(golden, costs_api)
    assert result.pages == 2  # three buckets, two per page: the cursor was followed
    assert result.rows == 7 and result.total == D("15.85")
    assert len(costs_api.costs_queries) == 2
    first, second = costs_api.costs_queries
    assert first["group_by[]"] == ["project_id", "line_item"] and "page" not in first
    assert second["page"] == ["2"]
    assert costs_api.costs_auth[0] == "Bearer sk-admin-test"

    rec = reconciliation(golden, MARCH, PROJECTS)
    got = {(r.day.day, r.project): (r.estimated, r.billed, r.difference, r.difference_pct)
           for r in rec.rows if r.billed is not None}
    # rollups (contracted cost by UTC day and project) against the bill:
    assert got == {
        (2, "ranker"): (D("6.00"), D("6.10"), D("0.10"), D("1.67")),  # 0.10 / 6.00
        (3, "ranker"): (D("6.00"), D("6.00"), D("0.00"), D("0.00")),
        (6, "bidder"): (D("3.60"), D("3.50"), D("-0.10"), D("-2.78")),  # -0.10 / 3.60
        (6, "openai:proj_zzz"): (D("0"), D("0.25"), D("0.25"), None),  # unmapped project
    }
    # days OpenAI did not bill are listed without a billed amount
    assert any(r.billed is None and r.day.day == 4 for r in rec.rows)
    # month: billed 15.85 - estimated 15.60 (6 + 6 + 3.60) = 0.25 = 1.60 %
    assert (rec.estimated, rec.billed, rec.drift) == (D("15.60"), D("15.85"), D("0.25"))
    assert month_drift(golden, MARCH, PROJECTS) == D("1.60")

    fetch(golden, costs_api)  # a second run replaces, never adds
    with golden.connect() as conn:
        assert len(list(conn.execute(select(billed_costs)))) == 7


def test_errors_and_empty_answers_store_nothing(golden, costs_api):  # type: ignore[no-untyped-def]
    fetch(golden, costs_api)
    costs_api.costs_status = 401
    with pytest.raises(ReconciliationError, match=r"HTTP 401.*nothing was stored"):
        fetch(golden, costs_api)
    costs_api.costs_status = None
    costs_api.costs_buckets = []
    assert fetch(golden, costs_api).rows == 0
    with golden.connect() as conn:
        assert len(list(conn.execute(select(billed_costs)))) == 7  # kept
        runs = [r.status for r in conn.execute(select(reconcile_runs)
                                               .order_by(reconcile_runs.c.id))]
    assert runs == ["ok", "failed", "empty"]
    with pytest.raises(ReconciliationError, match="no OpenAI admin key"):
        fetch_billed_costs(golden, admin_key="", since=MARCH, until=MARCH)


def test_cli_and_daily_job(golden, database, costs_api, monkeypatch, capsys):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("SPENDWATCH_OPENAI_ADMIN_KEY", "sk-admin-test")
    monkeypatch.setenv("SPENDWATCH_OPENAI_ADMIN_BASE_URL", costs_api.base_url)
    monkeypatch.setenv("SPENDWATCH_OPENAI_PROJECTS", "proj_rank=ranker, proj_ads=bidder")
    monkeypatch.setenv("SPENDWATCH_RECONCILE_DRIFT_THRESHOLD", "1")
    assert main(["--database-url", database.url, "reconcile", "--since", "2026-03-01",
                 "--until", "2026-03-31"]) == 0
    out = capsys.readouterr().out
    assert "2026-03: estimated $15.60, billed $15.85, drift $+0.25 (+1.60%)" in out
    assert "drift above the 1% threshold" in out
    assert "2026-03-02  ranker" in out

    settings = load_settings({"database_url": database.url})
    now = dt.datetime(2026, 3, 31, 6, tzinfo=dt.UTC)
    assert daily_reconciliation(golden, settings, now=now) is True
    assert daily_reconciliation(golden, settings, now=now) is False  # once a day
    monkeypatch.setenv("SPENDWATCH_OPENAI_PROJECTS", "proj_rank")
    assert main(["--database-url", database.url, "reconcile", "--no-fetch"]) == 2
    assert "is not OPENAI_ID=PROJECT" in capsys.readouterr().err


def test_billing_adjustment_line(golden, costs_api):  # type: ignore[no-untyped-def]
    from models.chargeback import ADJUSTMENT_LABEL, chargeback_report

    fetch(golden, costs_api)
    drift = reconciliation(golden, MARCH, PROJECTS).drift
    assert drift == D("0.25")
    report = chargeback_report(golden, MARCH, by="team", adjustment=drift)
    # 30.833336 estimated + 0.25 billed on top = 31.083336 -> 31.08
    assert report.total == D("31.08")
    teams = {r.team: r for r in report.rows}
    adjustment = teams[ADJUSTMENT_LABEL]
    assert (adjustment.direct, adjustment.shared_out, adjustment.allocated) == (
        D("0.25"), D("0.25"), D("0.00"))
    shares = {s.team: s.cents for s in report.splits if s.pool == ADJUSTMENT_LABEL}
    # in proportion to the estimates (x 0.25 / 30.833336): search 19.30 -> 0.156484,
    # ads 7.20 -> 0.058378, platform 2.00 -> 0.016216, unallocated 2.333336 -> 0.018919;
    # floors 0.15 + 0.05 + 0.01 + 0.01 = 0.22, the 3 cents left go to the largest
    # remainders: unallocated (.008919), ads (.008378), search (.006484)
    assert shares == {"search": D("0.16"), "ads": D("0.06"), "platform": D("0.01"),
                      "": D("0.02")}
    assert sum(r.allocated for r in report.rows) == D("31.08")
