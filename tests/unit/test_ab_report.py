"""The A/B report: per-version aggregation of the server's request log."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from skewless.experiments.ab_report import ReportError, format_report, summarize


def _line(version: str, role: str, rows: int, latency: float, mean: float, t: float = 100.0):
    return json.dumps({"time": t, "model": "ranking", "version": version, "role": role,
                       "rows": rows, "latency_ms": latency, "mean_probability": mean})  # fmt: skip


def test_requests_are_grouped_by_version(tmp_path: Path):
    log = tmp_path / "requests.jsonl"
    log.write_text("\n".join([
        _line("1", "production", 1, 1.0, 0.2), _line("1", "production", 3, 3.0, 0.6),
        _line("1", "production", 1, 2.0, 0.4), _line("2", "candidate", 2, 5.0, 0.5),
        _line("2", "candidate", 2, 9.0, 0.5, t=50.0),
    ]) + "\n")  # fmt: skip
    report = summarize(log)
    assert report["requests"] == 5
    first, second = report["versions"]
    assert (first["version"], first["roles"], first["requests"], first["rows"]) == (
        "1", ["production"], 3, 5
    )  # fmt: skip
    assert first["share"] == pytest.approx(0.6)
    assert first["latency_ms"]["p50"] == 2.0 and first["latency_ms"]["mean"] == 2.0
    # Row-weighted mean score: (0.2*1 + 0.6*3 + 0.4*1) / 5.
    assert first["mean_probability"] == pytest.approx(0.48)
    assert (second["version"], second["requests"]) == ("2", 2)
    assert summarize(log, since=60.0)["versions"][1]["requests"] == 1
    assert summarize(log, model="other")["requests"] == 0
    table = format_report(report)
    assert "ranking" in table and "60.0%" in table and "40.0%" in table


def test_a_bad_line_is_named(tmp_path: Path):
    log = tmp_path / "requests.jsonl"
    log.write_text(_line("1", "production", 1, 1.0, 0.2) + "\n{not json\n")
    with pytest.raises(ReportError, match=r"requests\.jsonl:2: not a request record"):
        summarize(log)
    with pytest.raises(ReportError, match="no request log at"):
        summarize(tmp_path / "missing.jsonl")
