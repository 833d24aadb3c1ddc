"""Every benchmark's results say what they measured: the commit, its changes, the machine's load."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))
import provenance  # noqa: E402  (bench/ is a folder of scripts, not a package)


def test_results_name_the_commit_and_the_load_around_the_run(tmp_path, monkeypatch):
    monkeypatch.setattr(provenance, "RESULTS", tmp_path)
    head = subprocess.run(
        ["git", "rev-parse", "--short=7", "HEAD"], cwd=REPO, capture_output=True, text=True
    ).stdout.strip()
    measured = provenance.begin()
    assert measured["commit"] == head and measured["cpus"] >= 1

    page = provenance.write("demo", {"ratio": 0.5}, "# Demo\n\n| a |\n", measured)

    data = json.loads((tmp_path / "demo.json").read_text())
    assert data["ratio"] == 0.5 and data["measured"]["commit"] == head
    assert isinstance(data["measured"]["load_after"], float)
    assert (tmp_path / "demo.md").read_text() == page
    assert page.startswith("# Demo\n\n| a |\n\n") and f"Measured at commit {head}" in page
    assert data["measured"]["changed_during_run"] is False


@pytest.mark.parametrize(
    ("diff", "said"),
    [("", ""), ("0123456789ab", " with uncommitted changes (diff 0123456789ab)"),
     (None, " (uncommitted changes unknown)")],
)  # fmt: skip
def test_uncommitted_changes_are_said(diff, said):
    measured = {"commit": "abc1234", "uncommitted_changes": diff, "started_utc": "now",
                "cpus": 2, "load_before": 0.5, "load_after": 1.5}  # fmt: skip
    line = provenance.describe(measured)
    assert line.startswith(f"Measured at commit abc1234{said}, now UTC")
    assert "0.5 before the run, 1.5 after." in line


def test_a_checkout_that_changed_during_the_run_is_said(tmp_path, monkeypatch):
    monkeypatch.setattr(provenance, "RESULTS", tmp_path)
    measured = {**provenance.begin(), "commit": "0000000"}  # as if HEAD moved since
    page = provenance.write("demo", {}, "# Demo\n", measured)
    assert page.rstrip().endswith("The checkout changed during the run.")
    assert json.loads((tmp_path / "demo.json").read_text())["measured"]["changed_during_run"]
