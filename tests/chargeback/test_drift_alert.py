"""The ``reconciliation_drift`` alert rule on the golden March: OpenAI's bill read
from FakeOpenAI's Costs API through the real SDK (the daily job's fetch), then
``evaluate_alerts`` (no network) and a real SMTP server.

Month (days OpenAI billed: 2, 3, 6): estimated 6 + 6 + 3.60 = 15.60, billed 15.85,
drift +0.25 = +1.60 %. Per project: ranker 12.00 -> 12.10 (+0.10, +0.83 %), bidder
3.60 -> 3.50 (-0.10, -2.78 %), openai:proj_zzz 0 -> 0.25 (no estimate: no %)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from sqlalchemy import select

from alerts import alert_history, apply_budget_file, evaluate_alerts
from models.database import open_database
from models.reconciliation import fetch_billed_costs
from models.schema import alert_rules, alert_states
from spendwatch.cli import main
from tests.alerts.conftest import CollectingHandler, free_port, make_settings

from .conftest import MARCH
from .test_reconciliation import BUCKETS

NOW = dt.datetime(2026, 3, 31, 6, tzinfo=dt.UTC)
PROJECTS = "proj_rank=ranker, proj_ads=bidder"


@pytest.fixture
def smtp():  # type: ignore[no-untyped-def]
    """A real SMTP server (aiosmtpd) keeping what it receives (as in tests/alerts)."""
    from aiosmtpd.controller import Controller

    handler = CollectingHandler()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port(),
                            server_hostname="localhost")
    controller.start()
    try:
        yield controller, handler
    finally:
        controller.stop()


@pytest.fixture
def billed(golden, fake_openai):  # type: ignore[no-untyped-def]
    """The golden month with OpenAI's bill stored, as the daily job stores it."""
    fake_openai.costs_buckets = list(BUCKETS)
    fake_openai.costs_page_size = 2
    fake_openai.costs_status = None
    fake_openai.costs_queries.clear()
    fetch_billed_costs(golden, admin_key="sk-admin-test", base_url=fake_openai.base_url,
                       since=MARCH, until=dt.date(2026, 3, 31))
    yield golden
    fake_openai.costs_buckets = []


def rules(engine, tmp_path: Path, text: str) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "budgets.toml"
    path.write_text('[defaults]\nrecipients = ["finance@example.com"]\n\n' + text)
    apply_budget_file(engine, path, actor="test")


def settings_for(database, tmp_path, smtp, **kw):  # type: ignore[no-untyped-def]
    controller, _ = smtp
    return make_settings(database, tmp_path, smtp_host="127.0.0.1", smtp_port=controller.port,
                         openai_projects=PROJECTS, **kw)


def test_drift_above_threshold_sends_one_email_once(billed, database, tmp_path, smtp,
                                                    fake_openai):  # type: ignore[no-untyped-def]
    rules(billed, tmp_path, '[[rule]]\nname = "bill drift"\nkind = "reconciliation_drift"\n'
                            'threshold = 1.5\n')
    settings = settings_for(database, tmp_path, smtp)
    queries = len(fake_openai.costs_queries)
    result = evaluate_alerts(billed, settings, now=NOW)
    assert result.failed == [] and len(result.triggered) == 1
    assert len(fake_openai.costs_queries) == queries  # evaluation reads the stored bill only
    [(_, rcpt, msg)] = smtp[1].messages
    assert rcpt == ["finance@example.com"]
    assert msg["Subject"] == ("[spendwatch] Reconciliation drift 2026-03 for the organisation: "
                              "billed $15.85 vs estimated $15.60 (+$0.25, +1.60%)")
    body = msg.get_body(("plain",)).get_content()
    assert ("OpenAI billed $15.85 for the organisation in 2026-03, our estimate is $15.60: "
            "a difference of +$0.25 (+1.60%), past the 1.5% threshold") in body
    assert "UTC days OpenAI has billed: 3, 2026-03-02 .. 2026-03-06" in body

    # the next runs (and the next daily fetch) send nothing more this month
    fetch_billed_costs(billed, admin_key="sk-admin-test", base_url=fake_openai.base_url,
                       since=MARCH, until=dt.date(2026, 3, 31))
    for hours in (0, 1, 24):
        again = evaluate_alerts(billed, settings, now=NOW + dt.timedelta(hours=hours))
        assert again.triggered == [] and again.sent == []
    assert len(smtp[1].messages) == 1
    [alert] = alert_history(billed)
    assert (alert.rule, alert.scope, alert.period) == ("rule:bill drift", "*", "2026-03")
    assert alert.details["difference"] == "0.25" and alert.details["difference_pct"] == "1.60"


def test_below_threshold_sends_nothing(billed, database, tmp_path, smtp):  # type: ignore[no-untyped-def]
    # no threshold in the rule: the reconcile_drift_threshold setting (5 %) applies
    rules(billed, tmp_path, '[[rule]]\nname = "bill drift"\nkind = "reconciliation_drift"\n')
    settings = settings_for(database, tmp_path, smtp)
    assert settings.reconcile_drift_threshold == 5.0
    assert evaluate_alerts(billed, settings, now=NOW).triggered == []
    # the drift must *pass* the threshold: 1.60 % against 1.6 % does not
    settings = settings_for(database, tmp_path, smtp, reconcile_drift_threshold=1.6)
    assert evaluate_alerts(billed, settings, now=NOW).triggered == []
    # both thresholds must be passed: 1.60 % > 1 % but $0.25 is not above $0.50
    rules(billed, tmp_path, '[[rule]]\nname = "bill drift"\nkind = "reconciliation_drift"\n'
                            'threshold = 1\nthreshold_usd = "0.50"\n')
    assert evaluate_alerts(billed, settings, now=NOW).triggered == []
    assert smtp[1].messages == []
    # the setting, lowered, makes the same rule fire
    rules(billed, tmp_path, '[[rule]]\nname = "bill drift"\nkind = "reconciliation_drift"\n')
    settings = settings_for(database, tmp_path, smtp, reconcile_drift_threshold=1.59)
    assert len(evaluate_alerts(billed, settings, now=NOW).triggered) == 1
    assert len(smtp[1].messages) == 1


def test_no_bill_no_alert(golden, database, tmp_path, smtp):  # type: ignore[no-untyped-def]
    rules(golden, tmp_path, '[[rule]]\nname = "bill drift"\nkind = "reconciliation_drift"\n'
                            'threshold = 0.01\n')
    settings = settings_for(database, tmp_path, smtp)
    assert evaluate_alerts(golden, settings, now=NOW).triggered == []


def test_per_project(billed, database, tmp_path, smtp):  # type: ignore[no-untyped-def]
    rules(billed, tmp_path,
          '[[rule]]\nname = "project drift"\nkind = "reconciliation_drift"\nby = "project"\n'
          'threshold = 2\n\n'
          '[[rule]]\nname = "unmapped"\nkind = "reconciliation_drift"\nby = "project"\n'
          'threshold_usd = "0.20"\n\n'
          '[[rule]]\nname = "ranker only"\nkind = "reconciliation_drift"\nby = "project"\n'
          'projects = ["ranker"]\nthreshold = 0.5\n')
    settings = settings_for(database, tmp_path, smtp)
    result = evaluate_alerts(billed, settings, now=NOW)
    with billed.connect() as conn:
        got = sorted((r.rule, r.scope, r.period) for r in conn.execute(select(alert_states)))
    assert got == [
        ("rule:project drift", "project=bidder", "2026-03"),  # -2.78 % (ranker +0.83 % not)
        ("rule:ranker only", "project=ranker", "2026-03"),  # +0.83 % > 0.5 %
        ("rule:unmapped", "project=openai:proj_zzz", "2026-03"),  # $0.25 > $0.20, no %
    ]
    assert len(result.sent) == 3 and len(smtp[1].messages) == 3
    subjects = sorted(m["Subject"] for _, _, m in smtp[1].messages)
    assert subjects[0] == ("[spendwatch] Reconciliation drift 2026-03 for project bidder: "
                           "billed $3.50 vs estimated $3.60 (-$0.10, -2.78%)")
    assert subjects[1] == ("[spendwatch] Reconciliation drift 2026-03 for project "
                           "openai:proj_zzz: billed $0.25 vs estimated $0.00 (+$0.25, "
                           "n/a (no estimate))")


BAD = """[[rule]]
name = "bill drift"
kind = "reconciliation_drift"
threshold = -1
threshold_usd = "lots"
by = "team"
projects = "ranker"
window_minutes = 15
"""


def test_bad_rule_is_refused(database, tmp_path, capsys):  # type: ignore[no-untyped-def]
    path = tmp_path / "budgets.toml"
    path.write_text(BAD)
    assert main(["--database-url", database.url, "budgets", "apply", str(path)]) == 2
    err = capsys.readouterr().err
    assert "refused, nothing was applied (6 problems)" in err
    for line, text in ((4, "threshold = -1 of rule 'bill drift' is not a positive number of "
                           "percent"),
                       (5, "threshold_usd = 'lots' of rule 'bill drift' is not a positive "
                           "number of dollars"),
                       (6, "by 'team' of rule 'bill drift' is unknown"),
                       (7, "projects of rule 'bill drift' must be a list of project names"),
                       (7, "rule 'bill drift' lists projects but checks the organisation's total"),
                       (8, "unknown key 'window_minutes' in reconciliation_drift rule")):
        assert f"{path}:{line}: {text}" in err
    engine = open_database(database.url)
    with engine.connect() as conn:
        assert conn.execute(select(alert_rules)).first() is None
    engine.dispose()
