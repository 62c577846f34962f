"""Which code a run measured, and whether the published figures still describe HEAD.

``python -m benchmarks`` records the commit it measured (and whether the tree
had uncommitted changes) in its JSON; the report prints it on the page. The
check here compares that commit's ``aioqlog/`` with HEAD's: figures measured on
other code are stale, and ``make bench-report`` renews them.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

#: The code whose speed the figures describe.
MEASURED = "aioqlog"

FIX = "run `make bench-report` on the current code to measure it and regenerate them"


def git(*args: str, root: Path = ROOT) -> subprocess.CompletedProcess[str] | None:
    """Run ``git *args`` in *root*; return the finished process, or None without git."""
    try:
        return subprocess.run(
            ["git", *args], cwd=root, capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None


def _stdout(*args: str, root: Path = ROOT) -> str | None:
    proc = git(*args, root=root)
    if proc is None or proc.returncode != 0:
        return None
    return proc.stdout.rstrip()


def describe_code(root: Path = ROOT) -> dict[str, Any]:
    """Return the commit measured and whether the tree (and aioqlog/) had uncommitted changes.

    Each value is None where git or the repository is unavailable (a tarball).
    """
    tree = _stdout("status", "--porcelain", root=root)
    package = _stdout("status", "--porcelain", "--", MEASURED, root=root)
    return {
        "commit": _stdout("rev-parse", "HEAD", root=root),
        "dirty": None if tree is None else bool(tree),
        "aioqlog_dirty": None if package is None else bool(package),
    }


@dataclass(frozen=True)
class Freshness:
    """Whether saved figures describe HEAD's code: ``fresh``, ``stale`` or ``unknown``."""

    state: str
    reason: str


def freshness(results: dict[str, Any], root: Path = ROOT) -> Freshness:
    """Return whether *results* (what ``python -m benchmarks --json`` saved) describe HEAD."""
    code = results.get("code") or {}
    commit = code.get("commit")
    if not commit:
        return Freshness(
            "unknown", "the figures record no commit (saved before runs recorded one); " + FIX
        )
    head = _stdout("rev-parse", "HEAD", root=root)
    if head is None:
        return Freshness("unknown", "git or the repository is unavailable here")
    resolved = _stdout("rev-parse", "--verify", "--quiet", f"{commit}^{{commit}}", root=root)
    if not resolved:
        return Freshness("unknown", f"the commit the figures record, {commit[:12]}, is not here")
    commit = resolved
    if code.get("aioqlog_dirty"):
        return Freshness(
            "stale",
            f"the figures were measured on {commit[:12]} with uncommitted changes in "
            f"{MEASURED}/, so no commit holds the code they describe; commit, then {FIX}",
        )
    diff = git("diff", "--quiet", commit, "HEAD", "--", f"{MEASURED}/", root=root)
    if diff is None or diff.returncode not in {0, 1}:
        return Freshness("unknown", f"git diff {commit[:12]} HEAD failed")
    if diff.returncode == 1:
        changed = _stdout("diff", "--stat", commit, "HEAD", "--", f"{MEASURED}/", root=root)
        return Freshness(
            "stale",
            f"the published figures were measured on {commit[:12]}, and {MEASURED}/ has "
            f"changed since (HEAD is {head[:12]}):\n{changed}\n{FIX}",
        )
    return Freshness("fresh", f"measured on {commit[:12]}; {MEASURED}/ is unchanged since")
