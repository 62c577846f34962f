"""The examples run, and say what they claim."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_the_demo_delivers_every_record_both_ways() -> None:
    """make demo's script runs (shortened here) and reports every record delivered."""
    result = subprocess.run(
        [
            sys.executable,
            str(EXAMPLES / "slow_handler_demo.py"),
            "--records=5",
            "--delay=0.01",
            "--interval=0.01",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    rows = {line[:22].strip(): line for line in result.stdout.splitlines()}
    assert "5/5" in rows["attached directly"]
    assert "5/5" in rows["behind aioqlog"]
