"""What a benchmark's figures were measured on, written beside them: one rule for every bench.

This machine's speed moves from day to day, so a figure is only comparable with figures taken in
the same run. Each results file therefore says which commit it measured (and whether the checkout
had uncommitted changes, or changed while the run went on: the install is editable, so the
benchmark's subprocesses import the tree as it is when they start), when, on how many CPUs, and
the load average before and after the run. Two samples of the load say little about a run of
hours; they do show a machine that was busy before the run began or still busy after it.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import subprocess
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"


def _git(*args: str) -> str | None:
    """Git's output in this checkout, or None when git cannot answer (no checkout, a lock)."""
    done = subprocess.run(
        ["git", "--no-optional-locks", *args], cwd=REPO, capture_output=True, text=True
    )
    return done.stdout.strip() if done.returncode == 0 else None


def _tree() -> tuple[str | None, str | None]:
    """HEAD's short hash, and a digest of how tracked files outside bench/results differ from it
    ("" when they do not; None for either when git cannot answer)."""
    diff = _git("diff", "HEAD", "--", ".", ":!bench/results")
    digest = None if diff is None else diff and hashlib.sha256(diff.encode()).hexdigest()[:12]
    return _git("rev-parse", "--short=7", "HEAD"), digest


def begin() -> dict[str, Any]:
    """The commit, the start time, the CPUs and the load average (1 minute) as a run starts."""
    commit, changes = _tree()
    return {
        "commit": commit,
        "uncommitted_changes": changes,  # a digest of `git diff HEAD`, "" for none
        "started_utc": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M"),
        "cpus": len(os.sched_getaffinity(0)),
        "load_before": round(os.getloadavg()[0], 2),
    }


def describe(measured: dict[str, Any]) -> str:
    """One line for a results page."""
    diff = measured["uncommitted_changes"]
    changes = f" with uncommitted changes (diff {diff})" if diff else ""
    if diff is None:
        changes = " (uncommitted changes unknown)"
    during = " The checkout changed during the run." if measured.get("changed_during_run") else ""
    return (
        f"Measured at commit {measured['commit'] or 'unknown'}{changes}, "
        f"{measured['started_utc']} UTC, on {measured['cpus']} CPUs; load average (1 min) "
        f"{measured['load_before']} before the run, {measured['load_after']} after.{during}"
    )


def write(name: str, results: dict[str, Any], markdown: str, measured: dict[str, Any]) -> str:
    """Writes bench/results/``name``.{json,md} with the run's provenance; returns the page."""
    now = _tree()
    then = (measured["commit"], measured["uncommitted_changes"])
    measured = {**measured, "load_after": round(os.getloadavg()[0], 2)}
    measured["changed_during_run"] = now != then
    page = f"{markdown.rstrip()}\n\n{describe(measured)}\n"
    RESULTS.mkdir(exist_ok=True)
    data = {**results, "measured": measured}
    (RESULTS / f"{name}.json").write_text(json.dumps(data, indent=1, default=str) + "\n")
    (RESULTS / f"{name}.md").write_text(page)
    return page
