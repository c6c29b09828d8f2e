"""Budget alerts end to end on SQLite and PostgreSQL: usage events -> rollups ->
evaluation -> a real SMTP server and a local webhook. Exactly one message per
crossing, across restarts, two evaluators, SMTP outages and a new month."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import threading
from decimal import Decimal

from sqlalchemy import func, select

from alerts import alert_history, apply_budget_file, budget_status, evaluate_alerts
from models.database import open_database
from models.schema import alert_notifications, alert_states
from tests.alerts.conftest import make_settings, record_and_roll_up, spend_event

UTC = dt.UTC

BUDGET = """
[[budget]]
name = "search-monthly"
scope = { team = "search" }
period = "monthly"
amount = "100"
thresholds = [50, 80, 100]
recipients = ["lead@example.com"]
"""


def _day(d: int, month: int = 11) -> dt.datetime:
    return dt.datetime(2026, month, d, 12, 0, tzinfo=UTC)


def _spend_day(engine, when: dt.datetime, dollars: int) -> None:
    """``dollars`` of gpt-4o for team search (each event $2.50 = 1M input tokens at
    $2.50/M), plus $2.50 for another team, which must not count."""
    events = [spend_event(when + dt.timedelta(minutes=i)) for i in range(dollars * 2 // 5)]
    events.append(spend_event(when, team="other"))
    record_and_roll_up(engine, events)


def test_a_month_crossing_50_80_100_sends_exactly_three_emails(engine, database, tmp_path,
                                                             smtp_server):
    controller, smtp = smtp_server
    settings = make_settings(database, tmp_path, smtp_host="127.0.0.1",
                             smtp_port=controller.port)
    path = tmp_path / "budgets.toml"
    path.write_text(BUDGET)
    apply_budget_file(engine, path, actor="test")
    db_url = database.url
    # $5 a day: 50 % on the 10th ($50), 80 % on the 16th ($80), 100 % on the 20th.
    for d in range(1, 26):
        _spend_day(engine, _day(d), 5)
        # the scheduler restarts between runs: a new engine (and nothing in memory)
        engine.dispose()
        engine = open_database(db_url)
        evaluate_alerts(engine, settings, now=_day(d) + dt.timedelta(hours=11))
        evaluate_alerts(engine, settings, now=_day(d) + dt.timedelta(hours=11, minutes=5))
    subjects = [m["Subject"] for _, _, m in smtp.messages]
    assert subjects == [
        "[spendwatch] Budget search-monthly (team=search) crossed 50%: $50.00 of $100.00 "
        "for 2026-11",
        "[spendwatch] Budget search-monthly (team=search) crossed 80%: $80.00 of $100.00 "
        "for 2026-11",
        "[spendwatch] Budget search-monthly (team=search) crossed 100%: $100.00 of $100.00 "
        "for 2026-11",
    ]
    assert all(rcpt == ["lead@example.com"] for _, rcpt, _ in smtp.messages)
    first = smtp.messages[0][2]
    text = first.get_body(("plain",)).get_content()
    html = first.get_body(("html",)).get_content()
    assert "Used:" in text and "50.0%" in text
    assert "$50.00 (contract cost)" in text
    assert "2026-11-01 to 2026-11-30 (UTC)" in text
    # forecast at 23:00 on the 10th: $50 over 9.958 of 30 days -> $150.63
    assert "Forecast:" in text and "$150.63 by the end of the period" in text
    assert "gpt-4o" in text and "http://127.0.0.1:8050/budgets?budget=search-monthly" in text
    assert "<table" in html and "$50.00 (contract cost)" in html

    # next month starts fresh: $60 on 1 December crosses 50 % again, once
    _spend_day(engine, _day(1, 12), 60)
    evaluate_alerts(engine, settings, now=_day(1, 12) + dt.timedelta(hours=1))
    evaluate_alerts(engine, settings, now=_day(1, 12) + dt.timedelta(hours=2))
    assert len(smtp.messages) == 4
    assert smtp.messages[3][2]["Subject"].endswith("crossed 50%: $60.00 of $100.00 for 2026-12")
    engine.dispose()


def test_a_jump_over_several_thresholds_sends_one_message(engine, database, tmp_path,
                                                         smtp_server):
    controller, smtp = smtp_server
    settings = make_settings(database, tmp_path, smtp_host="127.0.0.1",
                             smtp_port=controller.port)
    path = tmp_path / "budgets.toml"
    path.write_text(BUDGET.replace("[50, 80, 100]", "[50, 80, 90, 100]"))
    apply_budget_file(engine, path)
    _spend_day(engine, _day(3), 95)
    result = evaluate_alerts(engine, settings, now=_day(3) + dt.timedelta(hours=1))
    assert len(result.triggered) == 3  # 50, 80 and 90 are recorded ...
    assert [m["Subject"].split(" crossed ")[1][:3] for _, _, m in smtp.messages] == ["90%"]
    history = alert_history(engine)
    assert {a.threshold for a in history} == {"50", "80", "90"}


def test_two_evaluators_at_once_send_one_email(engine, database, tmp_path, smtp_server,
                                              webhook):
    controller, smtp = smtp_server
    settings = make_settings(database, tmp_path, smtp_host="127.0.0.1",
                             smtp_port=controller.port, alert_webhook_url=webhook.url)
    path = tmp_path / "budgets.toml"
    path.write_text(BUDGET)
    apply_budget_file(engine, path)
    _spend_day(engine, _day(5), 55)
    now = _day(5) + dt.timedelta(hours=2)
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def evaluator() -> None:
        own = open_database(database.url)
        try:
            barrier.wait()
            evaluate_alerts(own, settings, now=now)
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            own.dispose()

    threads = [threading.Thread(target=evaluator) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert len(smtp.messages) == 1
    assert len(webhook.posts) == 1
    assert "crossed 50%" in webhook.posts[0]["text"]
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(alert_states)).scalar() == 1
        sent = conn.execute(select(alert_notifications.c.channel, alert_notifications.c.status,
                                   alert_notifications.c.attempts)).all()
    assert sorted(sent) == [("email", "sent", 1), ("webhook", "sent", 1)]


def test_smtp_down_for_a_run_is_sent_on_the_next_run_once(engine, database, tmp_path,
                                                         smtp_server, webhook):
    controller, smtp = smtp_server
    good = make_settings(database, tmp_path, smtp_host="127.0.0.1", smtp_port=controller.port,
                         alert_webhook_url=webhook.url)
    path = tmp_path / "budgets.toml"
    path.write_text(BUDGET)
    apply_budget_file(engine, path)
    _spend_day(engine, _day(5), 55)
    from tests.alerts.conftest import free_port

    down = make_settings(database, tmp_path, smtp_host="127.0.0.1", smtp_port=free_port(),
                         alert_webhook_url=webhook.url)
    first = evaluate_alerts(engine, down, now=_day(5) + dt.timedelta(hours=1))
    assert len(first.triggered) == 1 and len(first.failed) == 1
    assert "ConnectionRefusedError" in first.failed[0]
    assert len(webhook.posts) == 1  # the webhook is not held up by the email
    [alert] = alert_history(engine)
    email = next(n for n in alert.notifications if n.channel == "email")
    assert email.status == "failed" and "SMTP 127.0.0.1" in (email.last_error or "")

    second = evaluate_alerts(engine, good, now=_day(5) + dt.timedelta(hours=2))
    assert second.triggered == [] and len(second.sent) == 1 and second.failed == []
    third = evaluate_alerts(engine, good, now=_day(5) + dt.timedelta(hours=3))
    assert third.sent == []
    assert len(smtp.messages) == 1 and len(webhook.posts) == 1
    [alert] = alert_history(engine)
    email = next(n for n in alert.notifications if n.channel == "email")
    assert (email.status, email.attempts) == ("sent", 2)


def test_unpriced_spend_is_shown_not_counted_as_zero(engine, database, tmp_path):
    settings = make_settings(database, tmp_path)
    path = tmp_path / "budgets.toml"
    path.write_text(BUDGET)
    apply_budget_file(engine, path)
    record_and_roll_up(engine, [spend_event(_day(2)), spend_event(_day(2), model="mystery",
                                                                   input_tokens=777)])
    [status] = budget_status(engine, settings, _day(2))
    assert status.spend.cost == Decimal("2.50")  # the priced event only
    assert status.spend.unpriced_tokens == 777
    assert status.spend.unpriced_models == ["mystery"]
    assert status.percent == Decimal("2.5")


def test_without_smtp_host_emails_go_to_the_outbox(engine, database, tmp_path):
    settings = make_settings(database, tmp_path)
    path = tmp_path / "budgets.toml"
    path.write_text(BUDGET)
    apply_budget_file(engine, path)
    _spend_day(engine, _day(5), 55)
    result = evaluate_alerts(engine, settings, now=_day(5) + dt.timedelta(hours=1))
    assert len(result.sent) == 1 and "outbox" in result.sent[0]
    files = list((tmp_path / "data" / "outbox").glob("*.eml"))
    assert len(files) == 1
    msg = email.message_from_bytes(files[0].read_bytes(), policy=email.policy.default)
    assert msg["Subject"].endswith("crossed 50%: $55.00 of $100.00 for 2026-11")
    assert msg["To"] == "lead@example.com"
    assert "$55.00 (contract cost)" in msg.get_body(("plain",)).get_content()
    evaluate_alerts(engine, settings, now=_day(5) + dt.timedelta(hours=2))
    assert len(list((tmp_path / "data" / "outbox").glob("*.eml"))) == 1


def test_a_failing_webhook_is_retried_without_repeating_the_email(engine, database, tmp_path,
                                                                 smtp_server, webhook):
    controller, smtp = smtp_server
    settings = make_settings(database, tmp_path, smtp_host="127.0.0.1",
                             smtp_port=controller.port, alert_webhook_url=webhook.url)
    path = tmp_path / "budgets.toml"
    path.write_text(BUDGET)
    apply_budget_file(engine, path)
    _spend_day(engine, _day(5), 55)
    webhook.status = 500
    first = evaluate_alerts(engine, settings, now=_day(5) + dt.timedelta(hours=1))
    assert len(first.sent) == 1 and len(first.failed) == 1
    assert "answered HTTP 500" in first.failed[0]
    webhook.status = 200
    second = evaluate_alerts(engine, settings, now=_day(5) + dt.timedelta(hours=2))
    assert [s.split(": ", 1)[1] for s in second.sent] == ["webhook " + webhook.url]
    assert len(smtp.messages) == 1 and len(webhook.posts) == 1


def test_a_user_budget_reads_the_per_user_rollup(engine, database, tmp_path):
    settings = make_settings(database, tmp_path)
    path = tmp_path / "budgets.toml"
    path.write_text('[[budget]]\nname = "u42"\nscope = { user = "u-42", team = "search" }\n'
                    'period = "weekly"\namount = 10\n')
    apply_budget_file(engine, path)
    # Thursday 12 November 2026; the week started on Monday the 9th
    record_and_roll_up(engine, [spend_event(_day(9), user="u-42"),
                                spend_event(_day(12), user="u-42"),
                                spend_event(_day(12), user="u-7"),
                                spend_event(_day(8), user="u-42")])  # last week
    [status] = budget_status(engine, settings, _day(12))
    assert status.period.label == "week-2026-11-09"
    assert status.spend.cost == Decimal("5.00")  # 2 x $2.50
    assert status.percent == Decimal("50.0")
