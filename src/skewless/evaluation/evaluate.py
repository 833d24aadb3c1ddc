"""Evaluation of an exported model on the eval split, sliced metrics, and the promotion gate.

The eval split is scored through the exported SavedModel's ``serving_default`` signature with raw
feature values, so what is measured is exactly what will be served (the train step scores it so,
right after the export: :mod:`skewless.evaluation.scores`). When the data carries the true
click probability (a ``true_*`` passthrough column) the Bayes-optimal AUC of the same rows is
reported beside the model's.

The gate promotes a candidate only if it clears every absolute floor and, when a production model
exists, beats it on the same rows by the configured margin. Every check is recorded with its value
and threshold, so a refusal always says why.
"""

from __future__ import annotations

import base64
import dataclasses
import html
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from skewless.artifacts import EVALUATION, EVALUATION_REPORT
from skewless.contract.spec import FeatureSpec
from skewless.evaluation import metrics
from skewless.evaluation.scores import score
from skewless.retrieval.artifact import has_retrieval
from skewless.retrieval.evaluate import recall_metrics

SLICE_VALUES_KEPT = 20
ROC_POINTS = 50


@dataclasses.dataclass(frozen=True)
class GateConfig:
    """Thresholds a candidate must clear to be promoted.

    Attributes:
        min_auc: Absolute AUC floor.
        max_log_loss: Absolute log-loss ceiling.
        max_calibration_error: Expected calibration error ceiling.
        min_auc_gain: Required AUC gain over the production model (may be negative to tolerate a
            small loss, e.g. when retraining on fresh data).
        min_recall_lift: Retrieval (when the model has it): recall@100 must be at least this
            multiple of the popularity baseline's (1.0: better than showing everyone the
            bestsellers).
        min_recall_gain: Retrieval: required recall@100 gain over production's retrieval.
    """

    min_auc: float = 0.6
    max_log_loss: float = 0.69
    max_calibration_error: float = 0.05
    min_auc_gain: float = 0.0
    min_recall_lift: float = 1.0
    min_recall_gain: float = 0.0


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """What :func:`evaluate` measured and decided; ``evaluation.json`` holds the same as JSON.

    ``metrics`` and ``production_metrics`` (None without production) are the overall metrics,
    ``slices`` the metrics per value of each slice feature, ``retrieval`` and
    ``production_retrieval`` recall@K (None without a retrieval stage), ``gate`` the decision
    (``promote``, ``reasons``, ``checks``), ``roc`` and ``confusion_matrix`` the plots' data.
    """

    metrics: dict[str, Any]
    slices: dict[str, list[dict[str, Any]]]
    production_metrics: dict[str, Any] | None
    retrieval: dict[str, Any] | None
    production_retrieval: dict[str, Any] | None
    gate: dict[str, Any]
    roc: dict[str, list[float]]
    confusion_matrix: list[list[int]]

    def to_json(self) -> str:
        """The evaluation file's text."""
        return json.dumps(dataclasses.asdict(self), indent=1)


def summarize(labels: np.ndarray, probabilities: np.ndarray) -> dict[str, float]:
    """The headline metrics of one set of predictions."""
    return {
        "rows": int(labels.size),
        "positive_rate": float(labels.mean()) if labels.size else float("nan"),
        "mean_prediction": float(probabilities.mean()) if labels.size else float("nan"),
        "auc": metrics.roc_auc(labels, probabilities),
        "pr_auc": metrics.average_precision(labels, probabilities),
        "log_loss": metrics.log_loss(labels, probabilities),
        "calibration_error": metrics.expected_calibration_error(labels, probabilities),
        "accuracy": metrics.accuracy(labels, probabilities),
    }


def sliced(
    frame: pd.DataFrame, labels: np.ndarray, probabilities: np.ndarray, spec: FeatureSpec
) -> dict[str, list[dict[str, Any]]]:
    """Metrics per value of every slice feature (its most frequent values)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for feature in spec.slices:
        values = frame[feature.name].astype(str).to_numpy()
        rows = []
        for value in pd.Series(values).value_counts().index[:SLICE_VALUES_KEPT]:
            mask = values == value
            rows.append({"value": value, **summarize(labels[mask], probabilities[mask])})
        out[feature.name] = rows
    return out


def roc_curve(
    labels: np.ndarray, probabilities: np.ndarray, points: int = ROC_POINTS
) -> dict[str, list[float]]:
    """ROC points at evenly spaced thresholds (the form KFP's ClassificationMetrics takes)."""
    thresholds = np.linspace(1.0, 0.0, points)
    positives = max(float(labels.sum()), 1.0)
    negatives = max(float(labels.size - labels.sum()), 1.0)

    # Rows at or above each threshold, counted by binary search: no thresholds-by-rows matrix.
    def above(scores: np.ndarray) -> np.ndarray:
        return len(scores) - np.searchsorted(np.sort(scores), thresholds, side="left")

    tpr = above(probabilities[labels == 1]) / positives
    fpr = above(probabilities[labels == 0]) / negatives
    return {"fpr": fpr.tolist(), "tpr": tpr.tolist(), "thresholds": thresholds.tolist()}


def confusion_matrix(
    labels: np.ndarray, probabilities: np.ndarray, threshold: float = 0.5
) -> list[list[int]]:
    """``[[TN, FP], [FN, TP]]`` at ``threshold`` (rows: actual 0/1; columns: predicted 0/1)."""
    predicted = probabilities >= threshold
    actual = labels == 1
    return [
        [int((~actual & ~predicted).sum()), int((~actual & predicted).sum())],
        [int((actual & ~predicted).sum()), int((actual & predicted).sum())],
    ]


RECALL_AT = "100"  # the retrieval gate's cut-off


def gate(
    candidate: dict[str, float],
    production: dict[str, float] | None,
    config: GateConfig,
    retrieval: dict[str, Any] | None = None,
    production_retrieval: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Decides promotion; every check is listed with its value, threshold and outcome."""
    checks = [
        ("auc >= min_auc", candidate["auc"], config.min_auc, candidate["auc"] >= config.min_auc),
        (
            "log_loss <= max_log_loss",
            candidate["log_loss"],
            config.max_log_loss,
            candidate["log_loss"] <= config.max_log_loss,
        ),
        (
            "calibration_error <= max_calibration_error",
            candidate["calibration_error"],
            config.max_calibration_error,
            candidate["calibration_error"] <= config.max_calibration_error,
        ),
    ]
    if production is not None:
        gain = candidate["auc"] - production["auc"]
        checks.append(
            ("auc - production_auc >= min_auc_gain", gain, config.min_auc_gain,
             gain >= config.min_auc_gain)
        )  # fmt: skip
    if retrieval is not None:
        recall = retrieval["recall"]["model"][RECALL_AT]
        popular = retrieval["recall"]["popularity"][RECALL_AT]
        lift = recall / popular if popular > 0 else float("inf") if recall > 0 else 0.0
        checks.append(
            (f"recall@{RECALL_AT} / popularity_recall@{RECALL_AT} >= min_recall_lift", lift,
             config.min_recall_lift, lift >= config.min_recall_lift)
        )  # fmt: skip
        if production_retrieval is not None:
            gain = recall - production_retrieval["recall"]["model"][RECALL_AT]
            checks.append(
                (f"recall@{RECALL_AT} - production_recall@{RECALL_AT} >= min_recall_gain", gain,
                 config.min_recall_gain, gain >= config.min_recall_gain)
            )  # fmt: skip
    records = [
        {"check": name, "value": float(value), "threshold": float(limit), "passed": bool(ok)}
        for name, value, limit, ok in checks
    ]
    failed = [r for r in records if not r["passed"]]
    reasons = [f"failed {r['check']}: {r['value']:.4f} vs {r['threshold']:.4f}" for r in failed]
    if not failed:
        reasons = ["all checks passed" + ("" if production else " (no production model yet)")]
    return {
        "promote": not failed,
        "reasons": reasons,
        "checks": records,
        "config": dataclasses.asdict(config),
    }


def _plot_png(labels: np.ndarray, probabilities: np.ndarray, roc: dict[str, list[float]]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4.2))
    left.plot(roc["fpr"], roc["tpr"], label="model")
    left.plot([0, 1], [0, 1], linestyle=":", color="grey")
    left.set(title="ROC", xlabel="false positive rate", ylabel="true positive rate")
    bins = np.minimum((probabilities * 10).astype(int), 9)
    filled = [b for b in range(10) if (bins == b).any()]
    predicted = [probabilities[bins == b].mean() for b in filled]
    observed = [labels[bins == b].mean() for b in filled]
    right.plot(predicted, observed, marker="o", label="model")
    right.plot([0, 1], [0, 1], linestyle=":", color="grey")
    right.set(title="Calibration", xlabel="mean predicted", ylabel="observed click rate")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90)
    plt.close(figure)
    return base64.b64encode(buffer.getvalue()).decode()


def _html_report(result: Evaluation, plot_png: str) -> str:
    def fmt(value: Any) -> str:
        return f"{value:.4f}" if isinstance(value, float) else html.escape(str(value))

    overall = result.metrics
    rows = "".join(f"<tr><td>{k}</td><td>{fmt(v)}</td></tr>" for k, v in overall.items())
    decision = result.gate
    checks = "".join(
        f"<tr><td>{html.escape(c['check'])}</td><td>{c['value']:.4f}</td>"
        f"<td>{c['threshold']:.4f}</td><td>{'pass' if c['passed'] else 'FAIL'}</td></tr>"
        for c in decision["checks"]
    )
    slices = ""
    for name, values in result.slices.items():
        body = "".join(
            f"<tr><td>{html.escape(v['value'])}</td><td>{v['rows']}</td><td>{fmt(v['auc'])}</td>"
            f"<td>{fmt(v['log_loss'])}</td><td>{fmt(v['positive_rate'])}</td>"
            f"<td>{fmt(v['mean_prediction'])}</td></tr>"
            for v in values
        )
        slices += (
            f"<h3>By {html.escape(name)}</h3><table><tr><th>value</th><th>rows</th><th>AUC</th>"
            f"<th>log loss</th><th>click rate</th><th>mean prediction</th></tr>{body}</table>"
        )
    verdict = "PROMOTE" if decision["promote"] else "REJECT"
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>Evaluation</title>
<style>body{{font-family:sans-serif;margin:2em}}td,th{{padding:2px 10px;text-align:right}}
table{{border-collapse:collapse}}tr:nth-child(even){{background:#f4f4f4}}</style></head><body>
<h1>Evaluation: {verdict}</h1><p>{html.escape("; ".join(decision["reasons"]))}</p>
<h2>Metrics on the eval split</h2><table>{rows}</table>
<h2>Gate</h2><table><tr><th>check</th><th>value</th><th>threshold</th><th></th></tr>{checks}</table>
<img alt="ROC and calibration" src="data:image/png;base64,{plot_png}">
<h2>Slices</h2>{slices}</body></html>"""


def evaluate(
    model_dir: str | Path,
    eval_data: str | Path,
    spec: FeatureSpec,
    out_dir: str | Path,
    *,
    production_model_dir: str | Path | None = None,
    gate_config: GateConfig | None = None,
    baseline_auc: float | None = None,
    train_data: str | Path | None = None,
    candidate_scores: np.ndarray | None = None,
) -> Evaluation:
    """Scores the eval split, slices the metrics, compares with production and decides.

    Args:
        model_dir: The candidate's exported SavedModel.
        eval_data: Clean eval rows (Parquet).
        spec: The feature spec.
        out_dir: Receives ``evaluation.json`` and ``report.html``.
        production_model_dir: The current production model, scored on the same rows.
        gate_config: Gate thresholds (defaults when None).
        baseline_auc: The linear baseline's eval AUC, reported beside the model's.
        train_data: Clean training rows; with a model that has a retrieval stage, recall@K is
            measured (:func:`skewless.retrieval.evaluate.recall_metrics`, its popularity
            baseline counts these rows) and gated.
        candidate_scores: The candidate's probabilities for ``eval_data``'s rows, in order, as
            :func:`skewless.evaluation.scores.score` gives them (the train step writes them);
            None scores the split here.

    Returns:
        The metrics, the slices, production's, recall@K and the gate's decision.
    """
    gate_config = gate_config or GateConfig()
    columns = list(dict.fromkeys([spec.label.name, *(f.name for f in spec.slices)]))
    oracle = spec.oracle
    if oracle is not None:
        columns.append(oracle.name)
    frame = pd.read_parquet(eval_data, columns=columns)
    if frame.empty:
        raise ValueError(f"{eval_data} has no rows to evaluate")
    labels = frame[spec.label.name].to_numpy(dtype=np.float64)
    if candidate_scores is None:
        candidate_scores = score(model_dir, eval_data, spec)
    elif len(candidate_scores) != len(labels):
        raise ValueError(
            f"{len(candidate_scores)} candidate scores for the {len(labels)} rows of "
            f"{eval_data}: they were written for other data"
        )
    probabilities = np.asarray(candidate_scores, dtype=np.float64)

    overall: dict[str, Any] = summarize(labels, probabilities)
    if oracle is not None:
        overall["bayes_optimal_auc"] = metrics.bayes_optimal_auc(
            labels, frame[oracle.name].to_numpy(dtype=np.float64)
        )
    if baseline_auc is not None:
        overall["baseline_auc"] = float(baseline_auc)
    production = None
    if production_model_dir is not None:
        production = summarize(labels, score(production_model_dir, eval_data, spec))
    retrieval = production_retrieval = None
    if train_data is not None and has_retrieval(model_dir):
        retrieval = recall_metrics(model_dir, train_data, eval_data, spec)
        if production_model_dir is not None and has_retrieval(production_model_dir):
            production_retrieval = recall_metrics(production_model_dir, train_data, eval_data, spec)
    roc = roc_curve(labels, probabilities)
    result = Evaluation(
        metrics=overall,
        slices=sliced(frame, labels, probabilities, spec),
        production_metrics=production,
        retrieval=retrieval,
        production_retrieval=production_retrieval,
        gate=gate(overall, production, gate_config, retrieval, production_retrieval),
        roc=roc,
        confusion_matrix=confusion_matrix(labels, probabilities),
    )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / EVALUATION).write_text(result.to_json())
    (out / EVALUATION_REPORT).write_text(
        _html_report(result, _plot_png(labels, probabilities, roc))
    )
    return result
