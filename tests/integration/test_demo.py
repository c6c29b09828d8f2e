"""The README's main command: `spendwatch demo` records, rolls up and reports."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_demo_records_rolls_up_and_reports(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SPENDWATCH_DATA_DIR": str(tmp_path)}
    env.pop("SPENDWATCH_DATABASE_URL", None)
    result = subprocess.run([sys.executable, "-m", "spendwatch.cli", "demo", "--calls", "60"],
                            env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "60/60 calls" in result.stderr and "recorded 60 events" in result.stderr
    assert (tmp_path / "demo.db").exists()  # a separate demo database
    assert not (tmp_path / "spendwatch.db").exists()
    out = result.stdout
    assert "chat.completions" in out  # the events table
    assert "cost_list_usd" in out and "contracted $" in out  # the spend report
    # the fine-tune in the demo has no price: shown as unpriced, never $0
    assert "unpriced" in out
