"""Budget files: refused as a whole with file, line and fix; applied with a dry run
and a change history; the command line; header injection never reaches headers."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from sqlalchemy import func, select

from alerts import apply_budget_file, budget_history, evaluate_alerts, load_budget_file
from models.schema import budget_changes, budgets
from spendwatch.cli import main
from spendwatch.errors import BudgetFileError
from tests.alerts.conftest import PASSWORD, USER, make_settings, record_and_roll_up, spend_event

UTC = dt.UTC
GOOD = """\
[[budget]]
name = "all"
period = "daily"
amount = 10
"""


@pytest.mark.parametrize(("snippet", "expected"), [
    ('scope = { squad = "search" }', "unknown scope key 'squad'"),
    ("amount = -5", "amount -5 of budget 'bad' is not above zero; give a positive amount"),
    ("thresholds = [50, 120]", "are not all within 1..100"),
    ("thresholds = [80, 50]", "not in ascending order without repeats; write thresholds = "
                                 "[50, 80]"),
    ('recipients = ["lead at example.com"]', "'lead at example.com' is not a valid email"),
    ('recipients = ["a@example.com\\r\\nBcc: x@example.com"]', "is not a valid email"),
    ('webhooks = ["ftp://hooks.example.com/x"]', "is not an http(s) URL"),
    ('webhooks = ["javascript:alert(1)"]', "is not an http(s) URL"),
    ('period = "fortnightly"', "period 'fortnightly' of budget 'bad' does not exist; use one "
                                  "of daily, weekly, monthly"),
    ('mode = "panic"', "mode 'panic' of budget 'bad' is unknown"),
    ('mode = "downgrade"', "has mode downgrade but no downgrade map"),
    ('colour = "red"', "unknown key 'colour' in budget 'bad'"),
])
def test_bad_budget_files_are_refused_as_a_whole(engine, tmp_path, snippet, expected):
    lines = ["[[budget]]", 'name = "bad"', 'period = "monthly"', "amount = 100",
             'recipients = ["lead@example.com"]']
    key = snippet.split(" =")[0]
    lines = [x for x in lines if not x.startswith(key + " =")] + [snippet]
    path = tmp_path / "budgets.toml"
    text = GOOD + "\n" + "\n".join(lines) + "\n"
    path.write_text(text)
    line = text.splitlines().index(snippet) + 1
    with pytest.raises(BudgetFileError) as caught:
        apply_budget_file(engine, path)
    message = str(caught.value)
    assert message.startswith(f"{path}: refused, nothing was applied")
    assert f"{path}:{line}: " in message and expected in message
    with engine.connect() as conn:  # the good budget in the same file was not applied
        assert conn.execute(select(func.count()).select_from(budgets)).scalar() == 0


def test_rule_problems_name_the_line(tmp_path):
    path = tmp_path / "rules.toml"
    path.write_text('[[rule]]\nname = "r"\nkind = "error_rate"\nclasses = ["teapot"]\n'
                    'threshold = 150\n\n[[rule]]\nname = "f"\nkind = "forecast"\n'
                    'budgets = ["nope"]\n\n[[rule]]\nname = "x"\nkind = "vibes"\n')
    with pytest.raises(BudgetFileError) as caught:
        load_budget_file(path)
    message = str(caught.value)
    assert f"{path}:4: classes ['teapot'] of rule 'r' are not error classes" in message
    assert f"{path}:5: threshold = 150 of rule 'r' is over 100 %" in message
    assert f"{path}:7: rule 'f' names budget 'nope', which the file does not define" in message
    assert f"{path}:14: rule 'x' has unknown kind 'vibes'" in message


def test_not_toml_and_missing_file(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text('[[budget]]\nname = "x\n')
    with pytest.raises(BudgetFileError, match=r"broken.toml:2: not valid TOML"):
        load_budget_file(path)
    with pytest.raises(BudgetFileError, match="no such file"):
        load_budget_file(tmp_path / "missing.toml")


def test_dry_run_then_apply_then_change_keeps_the_history(engine, tmp_path):
    path = tmp_path / "budgets.toml"
    path.write_text(GOOD)
    dry = apply_budget_file(engine, path, dry_run=True, actor="alice")
    assert [(c.action, c.name) for c in dry.changes] == [("added", "all")]
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(budgets)).scalar() == 0
        assert conn.execute(select(func.count()).select_from(budget_changes)).scalar() == 0
    apply_budget_file(engine, path, actor="alice")
    assert apply_budget_file(engine, path, actor="alice").changes == []  # idempotent
    path.write_text(GOOD.replace("amount = 10", 'amount = "12.50"'))
    changed = apply_budget_file(engine, path, actor="bob")
    assert [c.diff() for c in changed.changes] == [["amount: '10' -> '12.5'"]]
    path.write_text('[[budget]]\nname = "other"\nperiod = "weekly"\namount = 1\n')
    removed = apply_budget_file(engine, path, actor="carol")
    assert sorted((c.action, c.name) for c in removed.changes) == [("added", "other"),
                                                                   ("removed", "all")]
    history = budget_history(engine, name="all")
    assert [(h["action"], h["actor"]) for h in history] == [
        ("removed", "carol"), ("changed", "bob"), ("added", "alice")]
    assert history[1]["before"]["amount"] == "10" and history[1]["after"]["amount"] == "12.5"
    assert history[0]["after"] is None


def test_header_injection_in_a_team_name_never_reaches_the_headers(engine, database, tmp_path,
                                                                  smtp_server):
    controller, smtp = smtp_server
    settings = make_settings(database, tmp_path, smtp_host="127.0.0.1",
                             smtp_port=controller.port)
    team = "evil\r\nBcc: attacker@example.com\r\nX-Injected: yes"
    path = tmp_path / "budgets.toml"
    path.write_text('[[budget]]\nname = "evil"\nscope = { team = "evil\\r\\nBcc: '
                    'attacker@example.com\\r\\nX-Injected: yes" }\nperiod = "monthly"\n'
                    'amount = 1\nrecipients = ["lead@example.com"]\n')
    apply_budget_file(engine, path)
    now = dt.datetime(2026, 11, 10, 12, tzinfo=UTC)
    record_and_roll_up(engine, [spend_event(now, team=team)])
    evaluate_alerts(engine, settings, now=now)
    [(_sender, rcpt, msg)] = smtp.messages
    assert rcpt == ["lead@example.com"]
    assert msg["Bcc"] is None and msg["X-Injected"] is None
    assert "\n" not in msg["Subject"] and "\r" not in msg["Subject"]
    assert "evil Bcc: attacker@example.com X-Injected: yes" in msg["Subject"]
    assert "Bcc: attacker" in msg.get_body(("plain",)).get_content()  # shown, in the body


def test_starttls_and_login(engine, database, tmp_path, smtp_tls_server):
    controller, smtp = smtp_tls_server
    settings = make_settings(database, tmp_path, smtp_host="localhost",
                             smtp_port=controller.port, smtp_starttls=True, smtp_user=USER,
                             smtp_password=PASSWORD, smtp_from="alerts@example.com")
    path = tmp_path / "budgets.toml"
    path.write_text(GOOD + 'recipients = ["lead@example.com"]\n')
    apply_budget_file(engine, path)
    now = dt.datetime(2026, 11, 10, 12, tzinfo=UTC)
    record_and_roll_up(engine, [spend_event(now + dt.timedelta(minutes=i)) for i in range(4)])
    result = evaluate_alerts(engine, settings, now=now + dt.timedelta(hours=1))
    assert result.failed == []
    [(sender, rcpt, msg)] = smtp.messages
    assert sender == "alerts@example.com" and rcpt == ["lead@example.com"]
    assert msg["Subject"].endswith("crossed 100%: $10.00 of $10.00 for 2026-11-10")


def _run(capsys, url: str, *args: str) -> tuple[int, str, str]:
    code = main(["--database-url", url, *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_command_line(database, tmp_path: Path, capsys, monkeypatch, webhook):
    monkeypatch.setenv("SPENDWATCH_DATA_DIR", str(tmp_path / "data"))
    path = tmp_path / "budgets.toml"
    path.write_text(GOOD)
    code, out, _ = _run(capsys, database.url, "budgets", "apply", str(path), "--dry-run")
    assert code == 0 and "added budget all" in out and "dry run: nothing was written" in out
    code, out, _ = _run(capsys, database.url, "budgets", "apply", str(path), "--actor", "dana")
    assert code == 0 and "1 added, 0 changed, 0 removed, 0 unchanged" in out
    code, out, _ = _run(capsys, database.url, "budgets", "list")
    assert code == 0 and "all" in out and "$10.00" in out and "0.0%" in out
    code, out, _ = _run(capsys, database.url, "budgets", "history")
    assert "dana  added budget all" in out
    bad = tmp_path / "bad.toml"
    bad.write_text(GOOD.replace("amount = 10", "amount = -1"))
    code, out, err = _run(capsys, database.url, "budgets", "apply", str(bad))
    assert code == 2 and err.splitlines()[-2:] == [
        f"spendwatch: error: {bad}: refused, nothing was applied (1 problem):",
        f"{bad}:4: amount -1 of budget 'all' is not above zero; give a positive amount in "
        f"USD, e.g. 500"]
    code, out, _ = _run(capsys, database.url, "alerts", "run")
    assert code == 0 and "0 triggered" in out
    code, out, _ = _run(capsys, database.url, "alerts", "list")
    assert "no alerts yet" in out
    code, out, _ = _run(capsys, database.url, "alerts", "test", "--channel", "webhook", "--to",
                        webhook.url)
    assert code == 0 and len(webhook.posts) == 1
    assert webhook.posts[0]["text"].startswith("Test message from spendwatch")
    code, out, _ = _run(capsys, database.url, "alerts", "test", "--channel", "email", "--to",
                        "me@example.com")
    assert code == 0 and "outbox" in out
    assert len(list((tmp_path / "data" / "outbox").glob("test-*.eml"))) == 1


def test_port_465_speaks_implicit_tls(engine, database, tmp_path, tls_files, monkeypatch):
    import socket
    import ssl

    from aiosmtpd.controller import Controller

    from tests.alerts.conftest import CollectingHandler

    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", 465))
        except OSError as exc:
            pytest.skip(f"cannot listen on 127.0.0.1:465 here ({exc}); STARTTLS is tested above")
    cert, key = tls_files
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    handler = CollectingHandler()
    controller = Controller(handler, hostname="127.0.0.1", port=465, ssl_context=server_ctx,
                            server_hostname="localhost")
    controller.start()
    try:
        settings = make_settings(database, tmp_path, smtp_host="localhost", smtp_port=465,
                                 smtp_starttls=True)
        from alerts.notifiers import send_test

        assert "via localhost:465" in send_test(settings, "email", "me@example.com")
    finally:
        controller.stop()
    [(_sender, rcpt, msg)] = handler.messages
    assert rcpt == ["me@example.com"] and msg["Subject"] == "[spendwatch] Test message from " \
                                                           "spendwatch"


def test_alerts_run_and_list_show_a_failed_message(engine, database, tmp_path, capsys,
                                                   monkeypatch):
    from tests.alerts.conftest import free_port

    monkeypatch.setenv("SPENDWATCH_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("SPENDWATCH_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("SPENDWATCH_SMTP_PORT", str(free_port()))  # nobody listens
    monkeypatch.setenv("SPENDWATCH_SMTP_STARTTLS", "false")
    path = tmp_path / "budgets.toml"
    path.write_text(GOOD + 'recipients = ["lead@example.com"]\n')
    apply_budget_file(engine, path)
    now = dt.datetime.now(UTC)
    record_and_roll_up(engine, [spend_event(now - dt.timedelta(seconds=i)) for i in range(2)])
    code, out, _ = _run(capsys, database.url, "alerts", "run")
    assert code == 1
    assert "triggered: Budget all (*) crossed 50%: $5.00 of $10.00" in out
    assert "FAILED (retried next run): alert 1 triggered" in out and "SMTP 127.0.0.1" in out
    code, out, _ = _run(capsys, database.url, "alerts", "list")
    assert code == 0 and "triggered email failed (SMTP 127.0.0.1:" in out
    assert "budget:all" in out
