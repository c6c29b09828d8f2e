"""Under gevent's monkey-patching, concurrent greenlets share one OS thread: each
sync call must still count its own HTTP attempts (the collector finds the call
an attempt belongs to by ``_thread.get_ident()``, which gevent makes the
greenlet's id). Run in a child process: monkey-patching the test process would
change every other test."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("gevent", reason="gevent is in the test extra: pip install -e '.[test]'")

_SCRIPT = textwrap.dedent('''
    from gevent import monkey
    monkey.patch_all()

    import json, sqlite3, sys
    import gevent
    from openai import OpenAI
    import collector

    base_url, folder = sys.argv[1], sys.argv[2]
    collector.configure(database_url=f"sqlite:///{folder}/g.db", spool_dir=f"{folder}/spool")
    client = collector.instrument(OpenAI(base_url=base_url, api_key="x", max_retries=2))

    def call(i):
        retried = i % 2 == 0
        with collector.tags(feature="retried" if retried else "plain"):
            client.chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": "hi"}],
                extra_headers={"x-fake-fail": "429",
                               "x-fake-fail-times": "2" if retried else "0"})

    gevent.joinall([gevent.spawn(call, i) for i in range(8)], raise_error=True)
    assert collector.flush(10)
    rows = sqlite3.connect(f"{folder}/g.db").execute(
        "SELECT feature, attempts, status_code FROM usage_events").fetchall()
    print(json.dumps(sorted(rows)))
''')


def test_concurrent_greenlets_count_their_own_attempts(fake_openai, tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-c", _SCRIPT, fake_openai.base_url,
                           str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout.strip().splitlines()[-1])
    assert rows == [["plain", 1, 200]] * 4 + [["retried", 3, 200]] * 4
