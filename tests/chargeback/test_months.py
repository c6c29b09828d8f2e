"""Month close: the closed month stops changing; late events and reprices become
corrections in the next open month; reopening needs a reason, which is recorded."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal as D

import pytest
from sqlalchemy import select

from models.chargeback import chargeback_report
from models.corrections import post_corrections
from models.event_store import EventStore
from models.months import close_month, month_statuses, parse_month, reopen_month
from models.rollups import RollupEngine
from models.schema import rollup_daily
from spendwatch.cli import main
from spendwatch.errors import ConfigurationError, MonthStateError

from .conftest import APRIL, MARCH, PRICES, ev, march, set_prices

TODAY = dt.date(2026, 5, 10)


def daily(engine):  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        return sorted(tuple(r) for r in conn.execute(select(rollup_daily)))


def test_close_then_late_event_and_reprice(golden):  # type: ignore[no-untyped-def]
    close_month(golden, MARCH, by="finance", today=TODAY)
    frozen = daily(golden)
    before = chargeback_report(golden, MARCH, by="project")
    assert before.status == "closed"

    # a late event for March and a price correction from March 1st: input $3.00/M
    EventStore(golden).insert([ev(march(15), "search", "ranker", 1_000_000, 0)])
    set_prices(golden, PRICES.replace('input_per_mtok = "2.00"', 'input_per_mtok = "3.00"'))
    result = RollupEngine(golden).run(since=MARCH, until=dt.date(2026, 3, 31))  # reprice
    assert len(result.skipped_closed) == 31 and result.days == []
    assert daily(golden) == frozen  # the closed month's rollups did not change
    assert post_corrections(golden) > 0

    after = chargeback_report(golden, MARCH, by="project")
    assert after.total == D("30.83")
    assert [(r.team, r.project, r.allocated) for r in after.rows] == [
        (r.team, r.project, r.allocated) for r in before.rows]

    # April: +$1.00/M on every uncached input token of March (3M ranker, 0.25M indexer,
    # 1.2M ads (0.8M cached stay $1.00), 0.5M platform, 1M unallocated) and the late
    # event at the new price (1M x $3.00):
    #   search 3.00 + 0.25 + 3.00 = 6.25, ads 1.20, platform 0.50, unallocated 1.00
    april = chargeback_report(golden, APRIL, by="team")
    assert april.status == "open"
    got = {r.team: r.corrections for r in april.rows}
    assert got == {"search": D("6.25"), "ads": D("1.20"), "platform": D("0.50"),
                   "": D("1.00")}
    assert april.total == D("8.95") and april.corrections == D("8.95")
    detail = chargeback_report(golden, APRIL, by="project")
    assert {r.kind for r in detail.rows} == {"correction"}
    assert {r.note for r in detail.rows} == {"correction of 2026-03"}
    assert post_corrections(golden) == 0  # nothing new: nothing posted twice

    with pytest.raises(MonthStateError, match="already closed"):
        close_month(golden, MARCH, by="finance", today=TODAY)
    statuses = {s.month: s for s in month_statuses(golden)}
    assert statuses[MARCH].closed and statuses[MARCH].total == D("30.833336")
    assert not statuses[APRIL].closed and statuses[APRIL].corrections == D("8.95")


def test_reopen_needs_a_reason_and_is_recorded(golden):  # type: ignore[no-untyped-def]
    close_month(golden, MARCH, by="finance", today=TODAY)
    EventStore(golden).insert([ev(march(15), "search", "ranker", 1_000_000, 0)])
    post_corrections(golden)
    assert chargeback_report(golden, APRIL).total == D("2.00")  # 1M x $2.00
    with pytest.raises(MonthStateError, match="needs a reason"):
        reopen_month(golden, MARCH, reason="  ", by="cfo")
    reopen_month(golden, MARCH, reason="late invoice from the ads team", by="cfo")
    [status] = [s for s in month_statuses(golden) if s.month == MARCH]
    assert not status.closed
    assert [(a, by, why) for a, _, by, why in status.log] == [
        ("close", "finance", None), ("reopen", "cfo", "late invoice from the ads team")]
    # the late event is now in March itself, and no longer a correction in April
    assert chargeback_report(golden, MARCH).total == D("32.83")  # 30.83 + 2.00
    assert chargeback_report(golden, APRIL).total == D("0.00")
    with pytest.raises(MonthStateError, match="not closed"):
        reopen_month(golden, MARCH, reason="again", by="cfo")


def test_only_the_latest_closed_month_reopens(golden):  # type: ignore[no-untyped-def]
    close_month(golden, MARCH, by="f", today=TODAY)
    close_month(golden, APRIL, by="f", today=TODAY)
    with pytest.raises(MonthStateError, match=r"later month is closed \(2026-04\)"):
        reopen_month(golden, MARCH, reason="x", by="f")


def test_bad_months() -> None:
    today = dt.date(2026, 5, 10)
    assert parse_month("2026-03", today) == MARCH
    for text in ("2026-13", "March", "2026-3-1", ""):
        with pytest.raises(ConfigurationError, match="is not a month; write it as YYYY-MM"):
            parse_month(text, today)
    with pytest.raises(ConfigurationError, match="2026-06 is in the future"):
        parse_month("2026-06", today)
    with pytest.raises(MonthStateError, match="2026-05 has not ended yet"):
        parse_month("2026-05", today, allow_current=False)


def test_cli_month_commands(golden, database, capsys):  # type: ignore[no-untyped-def]
    url = ["--database-url", database.url]
    assert main([*url, "month", "close", "2026-03", "--by", "finance"]) == 0
    assert main([*url, "month", "close", "2026-03"]) == 2
    assert "already closed" in capsys.readouterr().err
    assert main([*url, "month", "status"]) == 0
    out = capsys.readouterr().out
    assert "2026-03  closed        30.83" in out and "by finance" in out
    with pytest.raises(SystemExit):  # argparse: --reason is required
        main([*url, "month", "reopen", "2026-03"])
    assert main([*url, "month", "reopen", "2026-03", "--reason", "credit note"]) == 0
    assert main([*url, "month", "status"]) == 0
    assert "reopen" in capsys.readouterr().out
    assert main([*url, "report", "chargeback", "--month", "2999-01"]) == 2
    assert "in the future" in capsys.readouterr().err


def test_allocation_of_a_closed_month_is_frozen(golden, tmp_path):  # type: ignore[no-untyped-def]
    from models.chargeback import apply_allocation
    from spendwatch.errors import AllocationFileError

    from .conftest import ALLOCATION

    close_month(golden, MARCH, by="f", today=TODAY)
    path = tmp_path / "allocation.toml"
    path.write_text(ALLOCATION)  # its rules are effective from 2026-01-01: March changes
    with pytest.raises(AllocationFileError, match=r"closed month\(s\) 2026-03"):
        apply_allocation(golden, path)
    rules = ALLOCATION[ALLOCATION.index("[[rule]]"):]  # no cost centres (always in force)
    path.write_text(rules.replace("2026-01-01", "2026-04-01"))
    apply_allocation(golden, path)  # from April on: allowed
    assert chargeback_report(golden, MARCH).splits == []
    assert chargeback_report(golden, APRIL).config.rules_for(APRIL)


def test_scheduler_hook_posts_corrections(golden, database, monkeypatch):  # type: ignore[no-untyped-def]
    from alerts.chargeback_jobs import chargeback_after_rollup

    monkeypatch.delenv("SPENDWATCH_OPENAI_ADMIN_KEY", raising=False)
    close_month(golden, MARCH, by="f", today=TODAY)
    EventStore(golden).insert([ev(march(15), "ads", "bidder", 1_000_000, 0)])
    result = RollupEngine(golden).run()
    assert dt.date(2026, 3, 15) in result.skipped_closed
    chargeback_after_rollup(golden, result)
    assert chargeback_report(golden, APRIL).total == D("2.00")  # 1M x $2.00


def test_rebuild_keeps_closed_months(golden):  # type: ignore[no-untyped-def]
    close_month(golden, MARCH, by="f", today=TODAY)
    frozen = daily(golden)
    result = RollupEngine(golden).run(rebuild=True)
    assert len(result.skipped_closed) == 31
    assert daily(golden) == frozen


def test_scheduler_closes_last_month_when_configured(golden, database):  # type: ignore[no-untyped-def]
    from dataclasses import replace

    from alerts.chargeback_jobs import auto_close
    from spendwatch.settings import load_settings

    settings = replace(load_settings({"database_url": database.url}, env={}),
                       month_close_after_days=5)
    assert auto_close(golden, replace(settings, month_close_after_days=0),
                      today=dt.date(2026, 4, 20)) is None  # off by default
    assert auto_close(golden, settings, today=dt.date(2026, 4, 5)) is None  # too early
    assert auto_close(golden, settings, today=dt.date(2026, 4, 6)) == MARCH
    assert auto_close(golden, settings, today=dt.date(2026, 4, 7)) is None  # closed already
    reopen_month(golden, MARCH, reason="missing invoice", by="cfo")
    assert auto_close(golden, settings, today=dt.date(2026, 4, 8)) is None  # reopened by hand
    [status] = [s for s in month_statuses(golden) if s.month == MARCH]
    assert not status.closed and status.log[0][2] == "scheduler (month_close_after_days)"


def test_every_scheduler_runs_the_chargeback_jobs():  # type: ignore[no-untyped-def]
    """Registered by importing the scheduler, not by building the command line: a
    SpendScheduler made in code posts corrections and reconciles too."""
    import alerts.scheduler  # noqa: F401
    from alerts.chargeback_jobs import chargeback_after_rollup
    from alerts.evaluate import evaluate_after_rollup
    from alerts.hooks import _hooks

    assert chargeback_after_rollup in _hooks and evaluate_after_rollup in _hooks
