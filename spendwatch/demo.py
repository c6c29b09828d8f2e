"""``spendwatch demo``: realistic traffic through the real pipeline.

A local OpenAI-compatible server stands in for the API; a real ``openai`` client,
instrumented by the collector, calls it for an organisation of six teams, fifteen
projects and eight models (streams, cached-token heavy workloads, 429s and retries),
the sink writes the events to a separate demo database, and the latest events are
printed. The dashboard arrives with issue 5 of the tracker; until then the demo
ends with the table.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

from spendwatch.settings import Settings, load_settings

__all__ = ["ORG", "run_demo"]

#: team -> projects
ORG: dict[str, tuple[str, ...]] = {
    "search": ("ranker", "query-rewrite", "snippets"),
    "support": ("helpdesk-bot", "ticket-triage", "macros"),
    "growth": ("email-copy", "ab-writer"),
    "platform": ("evals", "embeddings-index"),
    "finance": ("invoice-parser", "forecasting"),
    "research": ("agents", "long-context", "fine-tune-lab"),
}
_MODELS = ("gpt-4o-mini", "gpt-4o", "gpt-4.1-mini", "gpt-4.1", "o4-mini", "gpt-5-mini",
           "text-embedding-3-small", "ft:gpt-4o-mini-2024-07-18:acme::demo01")


def _progress(done: int, total: int) -> None:
    width = 30
    filled = width * done // total
    sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} calls")
    if done == total:
        sys.stderr.write("\n")
    sys.stderr.flush()


def run_demo(args: argparse.Namespace, settings: Settings) -> int:
    from openai import OpenAI

    import collector
    from spendwatch.fake_openai import FakeOpenAI

    url = args.database_url or f"sqlite:///{Path(settings.data_dir) / 'demo.db'}"
    demo_settings = collector.configure(database_url=url, data_dir=settings.data_dir,
                                        spool_dir=str(Path(settings.data_dir) / "demo-spool"))
    print(f"demo database: {url}", file=sys.stderr)
    rng = random.Random(42)
    with FakeOpenAI() as server:
        client = collector.instrument(OpenAI(base_url=server.base_url, api_key="demo",
                                             max_retries=2), environment="demo")
        for i in range(args.calls):
            team = rng.choice(list(ORG))
            project = rng.choice(ORG[team])
            model = rng.choice(_MODELS)
            headers: dict[str, str] = {}
            prompt = rng.randint(200, 6000)
            cached = prompt * rng.choice((0, 0, 50, 80)) // 100
            out = rng.randint(20, 900)
            with collector.tags(team=team, project=project, user=f"u-{rng.randint(1, 40)}",
                                feature=rng.choice(("chat", "summaries", "search"))):
                try:
                    if model.startswith("text-embedding"):
                        headers["x-fake-usage"] = json.dumps({"prompt_tokens": prompt,
                                                              "total_tokens": prompt})
                        client.embeddings.create(model=model, input="demo",
                                                 extra_headers=headers)
                    else:
                        usage = {"prompt_tokens": prompt, "completion_tokens": out,
                                 "total_tokens": prompt + out,
                                 "prompt_tokens_details": {"cached_tokens": cached},
                                 "completion_tokens_details": {
                                     "reasoning_tokens": out // 2 if model.startswith("o")
                                     else 0}}
                        headers["x-fake-usage"] = json.dumps(usage)
                        if rng.random() < 0.04:
                            headers["x-fake-fail"] = rng.choice(("429", "500"))
                            headers["x-fake-fail-times"] = str(rng.choice((1, 5)))
                        if rng.random() < 0.3:
                            stream = client.chat.completions.create(
                                model=model, messages=[{"role": "user", "content": "hi"}],
                                stream=True, extra_headers=headers)
                            for _ in stream:
                                pass
                        else:
                            client.chat.completions.create(
                                model=model, messages=[{"role": "user", "content": "hi"}],
                                extra_headers=headers)
                except Exception:
                    pass
            if (i + 1) % 25 == 0 or i + 1 == args.calls:
                _progress(i + 1, args.calls)
        collector.flush(timeout=30)
    stats = collector.stats()
    print(f"recorded {stats.written if stats else 0} events", file=sys.stderr)
    from models.database import open_database
    from models.rollups import RollupEngine
    from spendwatch.cli import cmd_events_tail
    from spendwatch.cli_spend import cmd_report_spend
    from spendwatch.progress import ProgressBar

    report_settings = load_settings({"database_url": url, "timezone": settings.timezone})
    RollupEngine(open_database(url), timezone=settings.timezone).run(
        progress=ProgressBar("rollup"))
    cmd_events_tail(argparse.Namespace(n=10, follow=False, interval=1.0), report_settings)
    print()
    cmd_report_spend(argparse.Namespace(by="team,model", period="month", since=None,
                                        until=None, format="table"), report_settings)
    _ = demo_settings
    print(f"\nThe dashboard (spendwatch serve) is not built yet. Explore the data with:\n"
          f"  spendwatch --database-url {url} report spend --by project\n"
          f"  spendwatch --database-url {url} events tail", file=sys.stderr)
    return 0
