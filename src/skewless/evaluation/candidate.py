"""The evaluate step: a trained candidate against whatever serves in production when it runs."""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from pathlib import Path

from skewless.artifacts import EVALUATION, EVALUATION_REPORT
from skewless.contract.spec import FeatureSpec
from skewless.data.folder import IngestedFolder
from skewless.evaluation.evaluate import Evaluation, GateConfig, evaluate
from skewless.evaluation.scores import read_scores


@dataclasses.dataclass(frozen=True)
class Outcome:
    """The candidate's evaluation and the production version it was compared with (0: none)."""

    evaluation: Evaluation
    compared_with_version: int


def evaluate_candidate(
    model_dir: str | Path,
    ingested: str | Path,
    spec: FeatureSpec,
    *,
    model_name: str,
    repository: str | Path,
    registry: str,
    report_path: str | Path,
    evaluation_path: str | Path,
    gate_config: GateConfig | None = None,
    baseline_auc: float | None = None,
    scores_path: str | Path | None = None,
) -> Outcome:
    """Looks up production in the registry now, fetches and verifies its artifact into a scratch
    folder (removed after), and evaluates the candidate against it on the ingested eval split.

    Args:
        model_dir: The candidate's exported SavedModel.
        ingested: The ingestion output folder (its eval split is scored; with a retrieval
            stage its train split counts popularity for recall@K).
        spec: The feature spec.
        model_name: The registered model's name.
        repository: The model repository (folder or object-store URI).
        registry: A Kubeflow Model Registry URL, or "" for the repository's own registry file.
        report_path: Receives the HTML report.
        evaluation_path: Receives the evaluation JSON (the register step records it).
        gate_config: Gate thresholds (defaults when None).
        baseline_auc: The linear baseline's eval AUC, reported beside the model's.
        scores_path: The train step's scores of the eval split, used only if that model scored
            them on these rows (None scores the split here).

    Raises:
        ValueError: The scores were written for another model or other rows.
    """
    from skewless.rollout.deploy import production_to_beat

    folder = IngestedFolder(ingested)
    candidate_scores = None
    if scores_path is not None:
        candidate_scores = read_scores(scores_path, model_dir=model_dir, data=folder.eval)
    with tempfile.TemporaryDirectory(prefix="evaluate-") as work:
        production = production_to_beat(repository, model_name, registry=registry, workdir=work)
        result = evaluate(
            model_dir,
            folder.eval,
            spec,
            work,
            production_model_dir=production.path if production else None,
            gate_config=gate_config,
            baseline_auc=baseline_auc,
            train_data=folder.train,
            candidate_scores=candidate_scores,
        )
        shutil.copy(Path(work) / EVALUATION_REPORT, report_path)
        shutil.copy(Path(work) / EVALUATION, evaluation_path)
    return Outcome(result, production.version if production else 0)
