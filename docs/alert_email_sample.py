"""Make the README's sample alert email: a budget crossing 80 % in a throwaway SQLite
database, evaluated with no SMTP host (so the email lands in the outbox), then the
text part printed and the HTML part screenshotted with Playwright + Debian's Chromium.

    .venv/bin/python docs/alert_email_sample.py   # writes docs/alert-email.{txt,html,png}
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

from alerts import apply_budget_file, evaluate_alerts
from models.database import open_database
from models.event_store import EventStore
from models.events import UsageEvent
from models.ids import uuid7
from models.rollups import RollupEngine
from spendwatch.settings import load_settings

HERE = Path(__file__).resolve().parent
BUDGETS = """
[[budget]]
name = "search-monthly"
scope = { team = "search" }
period = "monthly"
amount = "500"
thresholds = [50, 80, 90, 100]
recipients = ["search-lead@example.com", "finance@example.com"]
"""
UTC = dt.UTC


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/sample.db"
        engine = open_database(url)
        settings = replace(load_settings({"database_url": url, "data_dir": tmp,
                                          "timezone": "Europe/Paris"}, env={}),
                           dashboard_url="https://spend.example.com")
        (Path(tmp) / "b.toml").write_text(BUDGETS)
        apply_budget_file(engine, Path(tmp) / "b.toml", actor="sample")
        events = []
        # 1-18 November: ranker on gpt-4o ($2.50 + $10/M), summaries on gpt-4o-mini
        for day in range(1, 19):
            ts = dt.datetime(2026, 11, day, 9, tzinfo=UTC)
            for i, (model, project, tin, tout) in enumerate([
                    ("gpt-4o", "ranker", 4_000_000, 400_000),
                    ("gpt-4o", "query-rewrite", 2_000_000, 150_000),
                    ("gpt-4o-mini", "summaries", 20_000_000, 2_000_000),
                    ("ft:gpt-4o-mini:acme:v2", "ranker", 400_000, 40_000)]):
                events.append(UsageEvent(
                    id=uuid7(), ts=ts + dt.timedelta(minutes=i), provider="openai",
                    endpoint="chat.completions", model=model, model_requested=model,
                    usage_reported=True, input_tokens=tin, cached_input_tokens=0,
                    cache_write_tokens=0, output_tokens=tout, reasoning_tokens=0,
                    audio_input_tokens=0, audio_output_tokens=0, latency_ms=800.0,
                    status_code=200, team="search", project=project))
        EventStore(engine).insert(events)
        RollupEngine(engine, timezone=settings.timezone).run()
        result = evaluate_alerts(engine, settings,
                                 now=dt.datetime(2026, 11, 18, 17, tzinfo=UTC))
        print("\n".join(result.lines()), file=sys.stderr)
        [eml] = sorted((Path(tmp) / "outbox").glob("*.eml"))[-1:]
        msg = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
        headers = "".join(f"{k}: {msg[k]}\n" for k in ("From", "To", "Subject"))
        text = headers + "\n" + msg.get_body(("plain",)).get_content()
        (HERE / "alert-email.txt").write_text(text)
        html = msg.get_body(("html",)).get_content()
        (HERE / "alert-email.html").write_text(html)
        print(text)
        engine.dispose()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium",
                                    args=["--no-sandbox", "--disable-dev-shm-usage"])
        page = browser.new_page(viewport={"width": 700, "height": 400})
        page.set_content(html)
        page.screenshot(path=str(HERE / "alert-email.png"), full_page=True)
        browser.close()


if __name__ == "__main__":
    main()
