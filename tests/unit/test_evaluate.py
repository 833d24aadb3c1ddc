"""Evaluation through the exported model, sliced metrics, and the promotion gate."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from skewless.evaluation.evaluate import GateConfig, confusion_matrix, evaluate, gate, roc_curve

GOOD = {"auc": 0.74, "log_loss": 0.45, "calibration_error": 0.01}


def test_gate_passes_without_production_and_says_so():
    decision = gate(GOOD, None, GateConfig())
    assert decision["promote"] is True
    assert decision["reasons"] == ["all checks passed (no production model yet)"]
    assert [c["check"] for c in decision["checks"]] == [
        "auc >= min_auc",
        "log_loss <= max_log_loss",
        "calibration_error <= max_calibration_error",
    ]


def test_gate_requires_beating_production_by_the_margin():
    config = GateConfig(min_auc_gain=0.005)
    refused = gate(GOOD, {"auc": 0.738}, config)
    assert refused["promote"] is False
    assert refused["reasons"] == ["failed auc - production_auc >= min_auc_gain: 0.0020 vs 0.0050"]
    assert gate(GOOD, {"auc": 0.73}, config)["promote"] is True


def test_gate_floors_each_fail_with_their_numbers():
    bad = {"auc": 0.52, "log_loss": 0.8, "calibration_error": 0.2}
    decision = gate(bad, None, GateConfig())
    assert decision["promote"] is False
    assert decision["reasons"] == [
        "failed auc >= min_auc: 0.5200 vs 0.6000",
        "failed log_loss <= max_log_loss: 0.8000 vs 0.6900",
        "failed calibration_error <= max_calibration_error: 0.2000 vs 0.0500",
    ]


def _retrieval(model: float, popularity: float) -> dict:
    return {"recall": {"model": {"100": model}, "popularity": {"100": popularity}}}


def test_gate_requires_retrieval_to_beat_popularity_and_production():
    config = GateConfig(min_recall_lift=2.0, min_recall_gain=0.0)
    decision = gate(GOOD, None, config, _retrieval(0.09, 0.05))
    assert decision["reasons"] == [
        "failed recall@100 / popularity_recall@100 >= min_recall_lift: 1.8000 vs 2.0000"
    ]
    passed = gate(GOOD, None, config, _retrieval(0.12, 0.05))
    assert passed["promote"] is True and len(passed["checks"]) == 4
    worse = gate(GOOD, None, config, _retrieval(0.12, 0.05), _retrieval(0.13, 0.05))
    assert worse["reasons"] == [
        "failed recall@100 - production_recall@100 >= min_recall_gain: -0.0100 vs 0.0000"
    ]
    # A ranker-only model has no retrieval checks at all.
    assert len(gate(GOOD, None, config)["checks"]) == 3


def test_roc_curve_and_confusion_matrix_by_hand():
    labels = np.array([0, 0, 1, 1])
    probabilities = np.array([0.1, 0.6, 0.4, 0.9])
    assert confusion_matrix(labels, probabilities) == [[1, 1], [1, 1]]
    roc = roc_curve(labels, probabilities, points=3)  # thresholds 1.0, 0.5, 0.0
    assert roc == {"fpr": [0.0, 0.5, 1.0], "tpr": [0.0, 0.5, 1.0], "thresholds": [1.0, 0.5, 0.0]}


def test_evaluate_scores_the_exported_model(tmp_path: Path, trained, ingested, default_spec):
    result = evaluate(
        trained.model_dir,
        ingested / "eval.parquet",
        default_spec,
        tmp_path,
        production_model_dir=trained.model_dir,
        baseline_auc=trained.baseline_eval_auc,
        train_data=ingested / "train.parquet",
    )
    overall = result.metrics
    assert overall["rows"] == trained.rows_eval
    # Scored through the exported signature, the AUC matches what training measured in memory.
    assert overall["auc"] == pytest.approx(trained.eval_auc, abs=1e-4)
    assert 0.6 < overall["bayes_optimal_auc"] < 0.85
    assert overall["baseline_auc"] == trained.baseline_eval_auc
    # The same model as "production" gains exactly nothing.
    gain = next(c for c in result.gate["checks"] if c["check"].startswith("auc - production"))
    assert gain["value"] == pytest.approx(0.0)
    # ...and the same retrieval stage recalls exactly as much.
    assert result.retrieval["recall"] == result.production_retrieval["recall"]
    recall_gain = next(c for c in result.gate["checks"] if "production_recall" in c["check"])
    assert recall_gain["value"] == 0.0
    assert set(result.slices) == {"country", "device"}
    assert sum(s["rows"] for s in result.slices["device"]) == overall["rows"]
    assert sum(map(sum, result.confusion_matrix)) == overall["rows"]
    assert json.loads((tmp_path / "evaluation.json").read_text())["metrics"] == overall
    report = (tmp_path / "report.html").read_text()
    assert "data:image/png;base64," in report and "By country" in report


def test_evaluate_takes_the_scores_training_wrote(tmp_path: Path, trained, ingested, default_spec):
    from skewless.artifacts import EVAL_SCORES
    from skewless.evaluation.scores import read_scores

    eval_data = ingested / "eval.parquet"
    scores = read_scores(Path(trained.model_dir).parent / EVAL_SCORES, model_dir=trained.model_dir,
                         data=eval_data)  # fmt: skip
    given = evaluate(trained.model_dir, eval_data, default_spec, tmp_path / "given",
                     candidate_scores=scores)  # fmt: skip
    scored = evaluate(trained.model_dir, eval_data, default_spec, tmp_path / "scored")
    assert given.to_json() == scored.to_json()
    with pytest.raises(ValueError, match=f"2 candidate scores for the {len(scores)} rows of"):
        evaluate(trained.model_dir, eval_data, default_spec, tmp_path / "bad",
                 candidate_scores=scores[:2])  # fmt: skip


def test_the_evaluate_step_gates_against_production_found_in_the_registry_then(
    tmp_path: Path, trained, ingested, default_spec, monkeypatch
):
    """``evaluate_candidate`` (the step's one call): production as the registry names it when the
    step runs, its download in a scratch folder that does not outlive the step."""
    import tempfile

    from skewless.evaluation.candidate import evaluate_candidate
    from skewless.rollout.deploy import deploy_version, register_version

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    repo = tmp_path / "repo"

    def step(name: str):
        return evaluate_candidate(
            trained.model_dir, ingested, default_spec, model_name="ranking", repository=repo,
            registry="", report_path=tmp_path / f"{name}.html",
            evaluation_path=tmp_path / f"{name}.json",
        )  # fmt: skip

    first = step("first")
    assert first.compared_with_version == 0 and first.evaluation.production_metrics is None
    written = json.loads((tmp_path / "first.json").read_text())
    assert written["gate"]["promote"] is first.evaluation.gate["promote"] is True
    version = register_version(trained.model_dir, trained.model_dir, repo, "ranking", registry="",
                               evaluation=written, stats_path=ingested / "stats.json",
                               run_id="r1")  # fmt: skip
    deploy_version(repo, "ranking", version, "r1")  # production now
    second = step("second")
    assert second.compared_with_version == 1
    production, candidate = second.evaluation.production_metrics, second.evaluation.metrics
    assert production is not None and production["auc"] == candidate["auc"]  # the same model
    assert "data:image/png;base64," in (tmp_path / "second.html").read_text()
    assert list((tmp_path / "tmp").iterdir()) == []


def test_scores_for_another_model_or_other_rows_are_refused(tmp_path: Path, trained, ingested):
    """The gate decides on the train step's scores only if that model scored these rows."""
    import shutil

    import pandas as pd

    from skewless.evaluation.scores import read_scores, write_scores

    eval_data = ingested / "eval.parquet"
    path = tmp_path / "scores.npz"
    write_scores(path, np.zeros(3), model_dir=trained.model_dir, data=eval_data)
    assert read_scores(path, model_dir=trained.model_dir, data=eval_data).tolist() == [0, 0, 0]
    other_model = tmp_path / "other"
    shutil.copytree(trained.model_dir, other_model)
    with open(other_model / "saved_model.pb", "ab") as graph:
        graph.write(b"\0")
    with pytest.raises(ValueError, match="scored by another model than"):
        read_scores(path, model_dir=other_model, data=eval_data)
    other_rows = tmp_path / "eval.parquet"
    pd.read_parquet(eval_data).iloc[::-1].to_parquet(other_rows)  # the same rows, reordered
    with pytest.raises(ValueError, match="scored on other rows than"):
        read_scores(path, model_dir=trained.model_dir, data=other_rows)
    (tmp_path / "junk.npz").write_bytes(b"not scores")
    with pytest.raises(ValueError, match="not eval scores written by the train step"):
        read_scores(tmp_path / "junk.npz", model_dir=trained.model_dir, data=eval_data)
