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


def test_the_asyncio_script_delivers_from_the_loop_and_a_thread() -> None:
    """The plain asyncio example writes every record, in order, with its call-site thread."""
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "asyncio_script.py")],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    lines = result.stdout.splitlines()
    assert lines[:5] == [f"MainThread from the loop {i}" for i in range(5)]
    assert [line.split(" ", 1)[1] for line in lines[5:10]] == [
        f"from the thread {i}" for i in range(5)
    ]
    assert not any(line.startswith("MainThread") for line in lines[5:10])
    assert lines[10] == "handled 10 records, dropped 0"
