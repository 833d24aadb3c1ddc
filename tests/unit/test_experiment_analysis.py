"""Experiment logs and analysis: rotation, feedback format, the statistics' error rates, SRM,
guardrails and decisions recorded in the registry."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import numpy as np
import pytest

from skewless.experiments.analysis import (
    Criteria,
    ExperimentError,
    experiment_report,
    format_experiment_report,
)
from skewless.experiments.decision import record_decision
from skewless.experiments.logs import (
    AppendLog,
    FeedbackError,
    LogError,
    parse_feedback,
    read_records,
    segments,
)


def _writer(path: str, worker: int, lines: int) -> None:
    log = AppendLog(path, max_bytes=4096)
    for n in range(lines):
        log.write({"worker": worker, "n": n, "pad": "x" * 50})
    log.close()


def test_logs_rotate_by_size_across_processes_and_lose_nothing(tmp_path: Path):
    path = tmp_path / "requests.jsonl"
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_writer, args=(str(path), w, 400)) for w in range(3)]
    for process in workers:
        process.start()
    for process in workers:
        process.join(60)
        assert process.exitcode == 0
    records = list(read_records(path))
    assert len(segments(path)) > 5  # 1,200 lines of ~80 bytes past 4 KiB each: many segments
    assert sorted((r["worker"], r["n"]) for r in records) == [
        (w, n) for w in range(3) for n in range(400)
    ]
    # A restarted writer appends; nothing is truncated.
    _writer(str(path), 9, 1)
    assert len(list(read_records(path))) == 1201


def test_a_bad_log_line_is_named(tmp_path: Path):
    path = tmp_path / "requests.jsonl"
    path.write_text('{"a": 1}\n[1, 2]\n')
    with pytest.raises(
        LogError, match=r"requests\.jsonl:2: not a log record \(not a JSON object\)"
    ):
        list(read_records(path))
    with pytest.raises(LogError, match="no log at"):
        list(read_records(tmp_path / "none.jsonl"))


def test_feedback_takes_a_list_an_object_or_json_lines():
    one = parse_feedback(b'{"request_id": "r1", "outcome": "click"}', model="m", received=5.0)
    assert one == [{"received": 5.0, "model": "m", "request_id": "r1", "outcome": "click",
                    "value": 1.0, "time": 5.0}]  # fmt: skip
    lines = b'{"unit": "u1", "item": 7, "outcome": "buy", "value": 12.5, "time": 3}\n\n' + (
        b'{"request_id": "r2", "outcome": "click"}\n'
    )
    parsed = parse_feedback(lines, model="m", received=5.0)
    assert [(r.get("unit"), r.get("item"), r["value"], r["time"]) for r in parsed] == [
        ("u1", "7", 12.5, 3.0), (None, None, 1.0, 5.0),
    ]  # fmt: skip
    assert (
        len(parse_feedback(b'[{"request_id": "a", "outcome": "c"}] ', model="m", received=0)) == 1
    )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "feedback body is empty"),
        (b"[]", "feedback body has no records"),
        (b"{oops", "feedback body is not JSON"),
        (b'{"request_id": "a", "outcome": "c"}\n{oops', "feedback line 2 is not JSON"),
        (b"[1]", r"feedback\[0\]: expected an object, got int"),
        (b'[{"outcome": "click"}]', r"feedback\[0\]: name a request_id, or a unit and an item"),
        (b'[{"unit": "u"}]', r"feedback\[0\]: name a request_id, or a unit and an item"),
        (b'[{"request_id": "r"}]', r"feedback\[0\]: outcome is missing"),
        (b'[{"request_id": "r", "outcome": "a b"}]', r"feedback\[0\]\.outcome: use letters"),
        (b'[{"request_id": "r", "outcome": "c", "value": "1"}]', r"\.value: expected a number"),
        (b'[{"request_id": "r", "outcome": "c", "value": true}]', r"\.value: expected a number"),
        (b'[{"request_id": "r", "outcome": "c", "colour": 1}]', "unknown field 'colour'"),
        (
            b'[{"request_id": "' + b"r" * 129 + b'", "outcome": "c"}]',
            "expected 1 to 128 characters",
        ),
        (b'[{"request_id": "\\u0000", "outcome": "c"}]', "must be printable text"),
        (b'[{"request_id": "r", "outcome": "c", "time": 1e999}]', "feedback body is not JSON"),
        (b'[{"request_id": "r", "outcome": "c", "time": "now"}]', r"\.time: expected a number"),
    ],
)
def test_bad_feedback_is_refused_whole_naming_the_record(body: bytes, message: str):
    with pytest.raises(FeedbackError, match=message):
        parse_feedback(body, model="m", received=0.0)


def _world(
    path: Path,
    *,
    seed: int,
    units: int = 400,
    rate: tuple[float, float] = (0.2, 0.2),
    split: int = 50,
    assign: float | None = None,
    candidate_errors: int = 0,
) -> None:
    """Writes an exposure and a feedback log: each unit has its own click propensity (so a
    unit's exposures are correlated) and several exposures; clicks are sent by request id."""
    rng = np.random.default_rng(seed)
    exposures, feedback = AppendLog(path), AppendLog(path.with_name("feedback.jsonl"))
    share = (split if assign is None else assign) / 100
    for unit in range(units):
        role = "candidate" if rng.random() < share else "production"
        base = rate[1] if role == "candidate" else rate[0]
        propensity = rng.beta(2 * base / (1 - base), 2)  # mean = base, spread across units
        for n in range(int(rng.integers(1, 12))):
            request_id = f"{seed}-{unit}-{n}"
            exposures.write({"time": 10.0 + n, "request_id": request_id, "model": "m",
                             "experiment": "m:1:2", "split": split, "role": role,
                             "version": "2" if role == "candidate" else "1", "unit": f"u{unit}",
                             "status": 200, "latency_ms": 3.0, "items": [f"i{n}"]})  # fmt: skip
            if rng.random() < propensity:
                feedback.write({"model": "m", "request_id": request_id, "outcome": "click",
                                "value": 1.0, "time": 11.0 + n})  # fmt: skip
    for _ in range(candidate_errors):
        exposures.write({"time": 10.0, "model": "m", "experiment": "m:1:2", "split": split,
                         "role": "candidate", "version": "2", "unit": None, "status": 500,
                         "latency_ms": 1.0})  # fmt: skip
    exposures.close()
    feedback.close()


def test_a_a_experiments_are_significant_at_about_the_nominal_rate(tmp_path: Path):
    """200 A/A experiments (correlated exposures within units): the unit-level test declares
    about 5% significant; an exposure-level test that ignores the correlation declares more."""
    unit_level, naive = [], []
    for seed in range(200):
        log = tmp_path / str(seed) / "requests.jsonl"
        _world(log, seed=seed)
        report = experiment_report(log, model="m")
        unit_level.append(report["lift"]["p_value"] < 0.05)
        a, b = report["variants"]["production"], report["variants"]["candidate"]
        pooled = (a["outcomes"] + b["outcomes"]) / (a["exposures"] + b["exposures"])
        se = np.sqrt(pooled * (1 - pooled) * (1 / a["exposures"] + 1 / b["exposures"]))
        naive.append(abs(b["rate"] - a["rate"]) / se > 1.96)
    assert 0.02 <= np.mean(unit_level) <= 0.09, np.mean(unit_level)
    assert np.mean(naive) > np.mean(unit_level) + 0.03


def test_sequential_p_values_survive_repeated_looks(tmp_path: Path):
    """Looking 10 times at a growing A/A experiment and stopping at the first p < 0.05: the
    fixed-horizon p-value stops far more often than 5%; the mSPRT one does not."""
    fixed_stops, sequential_stops = 0, 0
    runs = 60
    for seed in range(runs):
        log = tmp_path / str(seed) / "requests.jsonl"
        _world(log, seed=1000 + seed, units=600)
        looks = [
            experiment_report(log, model="m", until=10.0 + cut) for cut in np.linspace(1, 11, 10)
        ]
        fixed_stops += any(r["lift"]["p_value"] < 0.05 for r in looks)
        sequential_stops += any(r["lift"]["sequential_p_value"] < 0.05 for r in looks)
    assert sequential_stops / runs <= 0.07
    assert fixed_stops > sequential_stops


def test_a_real_lift_is_found_and_promoted(tmp_path: Path):
    log = tmp_path / "requests.jsonl"
    _world(log, seed=3, units=2000, rate=(0.20, 0.26))
    report = experiment_report(log, model="m")
    production, candidate = report["variants"]["production"], report["variants"]["candidate"]
    assert candidate["ci"][0] < 0.26 < candidate["ci"][1]
    assert production["ci"][0] < 0.20 < production["ci"][1]
    assert report["lift"]["p_value"] < 0.001 and report["lift"]["relative"] > 0.15
    assert report["decision"]["action"] == "promote"
    assert not report["srm"]["mismatch"] and report["guardrails"]["hold"]
    text = format_experiment_report(report)
    assert "decision: PROMOTE: significant gain" in text and "MISMATCH" not in text
    # Power: the sample size for a 5% MDE exceeds what a 30% effect needed.
    assert report["sample_size"]["units_needed"] > 2000


def test_a_sample_ratio_mismatch_blocks_the_decision(tmp_path: Path):
    log = tmp_path / "requests.jsonl"
    _world(log, seed=4, units=2000, rate=(0.20, 0.30), split=50, assign=42)
    report = experiment_report(log, model="m")
    assert report["srm"]["mismatch"] and report["srm"]["p_value"] < 0.001
    assert report["decision"]["action"] == "blocked"
    assert "sample ratio mismatch" in report["decision"]["reason"]


def test_a_broken_guardrail_rolls_back_even_a_winner(tmp_path: Path):
    log = tmp_path / "requests.jsonl"
    _world(log, seed=5, units=1000, rate=(0.2, 0.3), candidate_errors=200)
    report = experiment_report(log, model="m")
    assert report["variants"]["candidate"]["server_errors"] == 200
    assert report["decision"]["action"] == "rollback"
    assert "server error rate" in report["decision"]["reason"]


def test_unmatched_and_foreign_feedback_is_counted_not_dropped(tmp_path: Path):
    log = tmp_path / "requests.jsonl"
    _world(log, seed=6, units=50)
    with AppendLog(tmp_path / "feedback.jsonl") as feedback:
        feedback.write({"model": "m", "request_id": "nobody", "outcome": "click", "value": 1})
        feedback.write({"model": "m", "unit": "u1", "item": "i0", "outcome": "click", "value": 1})
        feedback.write({"model": "m", "unit": "u1", "item": "zz", "outcome": "click", "value": 1})
        feedback.write({"model": "m", "request_id": "6-1-0", "outcome": "buy", "value": 1})
    counts = experiment_report(log, model="m")["feedback"]
    assert (counts["unmatched"], counts["other_outcomes"]) == (2, 1)
    assert counts["matched"] > 0


def test_no_experiment_is_a_clear_error(tmp_path: Path):
    log = tmp_path / "requests.jsonl"
    log.write_text(json.dumps({"time": 1, "model": "m", "experiment": None, "role": "production",
                               "status": 200, "latency_ms": 1}) + "\n")  # fmt: skip
    with pytest.raises(ExperimentError, match="no experiment for model 'm': start a canary"):
        experiment_report(log, model="m")
    with pytest.raises(ExperimentError, match="no exposure log at"):
        experiment_report(tmp_path / "none.jsonl", model="m")


def test_decisions_are_carried_out_and_recorded_with_their_numbers(tmp_path: Path):
    from skewless.registry.sqlite import SQLiteRegistry

    registry = SQLiteRegistry(tmp_path / "registry.db")
    artifact = tmp_path / "artifact"
    artifact.mkdir()
    (artifact / "saved_model.pb").write_bytes(b"model")
    for run in ("a", "b", "c"):
        registry.register("m", artifact, metrics={}, gate={"promote": True}, spec_sha256="",
                          stats_sha256="", code_version="t", run_id=run)  # fmt: skip
    registry.set_alias("m", "production", 1, actor="t", reason="")
    registry.start_canary("m", 2, 50, actor="t")

    log = tmp_path / "requests.jsonl"
    _world(log, seed=7, units=300)
    report = experiment_report(log, model="m", criteria=Criteria(min_units=100))
    assert report["decision"]["action"] == "continue"
    assert "keeps 50%" in record_decision(registry, report, actor="t")
    last = registry.alias_history("m", "candidate")[-1]
    assert last["reason"].startswith("experiment decide: continue: not significant yet")
    assert "lift" in last["reason"] and last["traffic_percent"] == 50

    report["decision"] = {"action": "rollback", "reason": "significant loss: numbers"}
    assert "canary of version 2 stopped" in record_decision(registry, report, actor="t")
    assert registry.traffic("m").candidate is None and registry.traffic("m").production == 1
    with pytest.raises(ExperimentError, match="experiment m:1:2 is not running"):
        record_decision(registry, report, actor="t")

    registry.start_canary("m", 2, 50, actor="t")
    report["decision"] = {"action": "promote", "reason": "significant gain: numbers"}
    record_decision(registry, report, actor="t")
    assert registry.traffic("m").production == 2
    assert "significant gain: numbers" in registry.alias_history("m", "production")[-1]["reason"]


def test_report_options_reach_the_analysis_from_the_command_line(tmp_path: Path, capsys):
    from skewless.cli import main

    log = tmp_path / "requests.jsonl"
    _world(log, seed=8, units=2000, rate=(0.20, 0.26))
    common = ["experiment", "report", "--log", str(log), "--model", "m", "--json"]
    assert main(common) == 0
    plain = json.loads(capsys.readouterr().out)
    flags = ["--sequential", "--power", "0.9", "--mde", "0.1", "--min-units", "5000"]
    assert main([*common, *flags]) == 0
    tuned = json.loads(capsys.readouterr().out)
    assert tuned["criteria"] == {**plain["criteria"], "sequential": True, "power": 0.9,
                                 "mde": 0.1, "min_units": 5000}  # fmt: skip
    # More power needs more units; a larger effect fewer: here the larger MDE wins.
    assert tuned["sample_size"]["units_needed"] < plain["sample_size"]["units_needed"]
    assert plain["decision"]["action"] == "promote" and "p=" in plain["decision"]["reason"]
    assert tuned["decision"]["action"] == "continue"  # 2,000 units < --min-units 5000
    assert main([*common, "--sequential"]) == 0
    sequential = json.loads(capsys.readouterr().out)["decision"]["reason"]
    assert "sequential p=" in sequential
