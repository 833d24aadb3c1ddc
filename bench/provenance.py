"""What a benchmark's figures were measured on, written beside them: one rule for every bench.

This machine's speed moves from day to day, so a figure is only comparable with figures taken in
the same run. Each results file therefore says which commit it measured (and whether the checkout
had uncommitted changes), when, on how many CPUs, and the load average before and after the run:
a load that rose well above the benchmark's own processes means something else ran beside it.
"""

from __future__ import annotations

import datetime
import json
import os
import subprocess
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"


def _git(*args: str) -> str:
    done = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=False)
    return done.stdout.strip() if done.returncode == 0 else ""


def begin() -> dict[str, Any]:
    """The commit, the start time, the CPUs and the load average (1 minute) as a run starts."""
    return {
        "commit": _git("rev-parse", "--short=7", "HEAD") or "unknown (not a git checkout)",
        "uncommitted_changes": bool(
            _git("status", "--porcelain", "--untracked-files=no", "--", ".", ":!bench/results")
        ),
        "started_utc": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M"),
        "cpus": os.cpu_count(),
        "load_before": round(os.getloadavg()[0], 2),
    }


def describe(measured: dict[str, Any]) -> str:
    """One line for a results page."""
    changes = " with uncommitted changes" if measured["uncommitted_changes"] else ""
    return (
        f"Measured at commit {measured['commit']}{changes}, {measured['started_utc']} UTC, on "
        f"{measured['cpus']} CPUs; load average (1 min) {measured['load_before']} before the run, "
        f"{measured['load_after']} after."
    )


def write(name: str, results: dict[str, Any], markdown: str, measured: dict[str, Any]) -> str:
    """Writes bench/results/``name``.{json,md} with the run's provenance; returns the page."""
    measured = {**measured, "load_after": round(os.getloadavg()[0], 2)}
    page = f"{markdown.rstrip()}\n\n{describe(measured)}\n"
    RESULTS.mkdir(exist_ok=True)
    data = {**results, "measured": measured}
    (RESULTS / f"{name}.json").write_text(json.dumps(data, indent=1, default=str) + "\n")
    (RESULTS / f"{name}.md").write_text(page)
    return page
