"""KFP components of the ranking pipeline: thin wrappers around the ``skewless`` step functions.

Each component is a lightweight Python component whose ``base_image`` is our image (which has
``skewless`` and ``kfp`` installed, hence ``install_kfp_package=False``). Its body turns artifact
paths into plain arguments, makes one call into the package, and logs the returned figures. The same
components run under ``kfp.local.SubprocessRunner`` on one machine and on a Kubeflow cluster. Each
runs in a process of its own, so once its imports are done it takes its heap out of the cyclic
garbage collector's way (:func:`skewless.runtime.freeze_heap`).
"""

from kfp import dsl
from kfp.dsl import HTML, Artifact, ClassificationMetrics, Dataset, Input, Metrics, Model, Output

from skewless.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def ingest(
    data_uri: str,
    spec_yaml: str,
    max_quarantine_fraction: float,
    ingested: Output[Dataset],
    ingest_metrics: Output[Metrics],
):
    """Validates raw data into clean train/eval splits, quarantine and statistics."""
    from skewless.contract.spec import load_spec_text
    from skewless.data.ingest import ingest as run_ingest
    from skewless.runtime import freeze_heap

    freeze_heap()

    summary = run_ingest(
        data_uri,
        load_spec_text(spec_yaml),
        ingested.path,
        max_quarantine_fraction=max_quarantine_fraction,
    ).summary
    for key in ("rows_in", "rows_clean", "rows_quarantined", "rows_train", "rows_eval", "seconds"):
        ingest_metrics.log_metric(key, summary[key])


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def materialize(
    ingested: Input[Dataset],
    spec_yaml: str,
    feature_repo: str,
    feature_online_store: str,
    feature_summary: Output[Artifact],
    feature_metrics: Output[Metrics],
) -> str:
    """Writes the feature store (Feast): offline tables, feature views, the online store.

    ``feature_repo`` is a folder or, on a cluster, a ``minio://`` folder in the pipeline's
    object store; ``feature_online_store`` is "" (SQLite in the repository) or
    ``redis://HOST:PORT`` (a cluster's). Skipped (and says so) when ``feature_repo`` is empty or
    the spec has no event time and no side with an id; then requests must carry every raw
    feature.

    Returns the repository written ("" when skipped): what the deploy step serves by id from.
    """
    import json

    from skewless.contract.spec import load_spec_text
    from skewless.features.materialize import materialize as run_materialize
    from skewless.runtime import freeze_heap

    freeze_heap()

    summary = run_materialize(
        ingested.path, load_spec_text(spec_yaml), feature_repo, feature_online_store
    )
    with open(feature_summary.path, "w") as out:
        json.dump(summary, out, indent=1)
    feature_metrics.log_metric("materialized", summary["materialized"])
    for name, rate in summary.get("point_in_time_mismatch", {}).items():
        feature_metrics.log_metric(f"mismatch_{name}", rate)
    return str(summary["repository"]) if summary["materialized"] else ""


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def transform(
    ingested: Input[Dataset],
    spec_yaml: str,
    beam_args: str,
    transform_graph: Output[Artifact],
    transform_metrics: Output[Metrics],
):
    """Runs TFT analysis on Beam over the training split; writes the transform graph."""
    import shlex

    from skewless.runtime import freeze_heap, tft_keras_only

    tft_keras_only()  # before TensorFlow's import: this step builds no Keras 3 model

    from skewless.contract.spec import load_spec_text
    from skewless.data.folder import IngestedFolder
    from skewless.model.transform import analyze

    freeze_heap()

    result = analyze(
        IngestedFolder(ingested.path).train,
        load_spec_text(spec_yaml),
        transform_graph.path,
        beam_args=shlex.split(beam_args),
    )
    transform_metrics.log_metric("seconds", result.seconds)


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def train(
    ingested: Input[Dataset],
    transform_graph: Input[Artifact],
    spec_yaml: str,
    hparams: dict,
    model: Output[Model],
    tensorboard: Output[Artifact],
    train_metrics: Output[Metrics],
    eval_scores: Output[Dataset],
):
    """Trains the ranking model and exports one SavedModel that carries the transform.

    ``hparams`` holds the hyperparameters that differ from :class:`HParams`' defaults;
    ``eval_scores`` is the eval split scored through the exported model, for the evaluate step.
    """
    from skewless.runtime import freeze_heap, one_thread_per_op

    one_thread_per_op()  # before TensorFlow's import: small ops, two models training at once

    from skewless.config import from_overrides
    from skewless.contract.spec import load_spec_text
    from skewless.model.hparams import HParams
    from skewless.model.inputs import TrainingData
    from skewless.model.train import train as run_train

    freeze_heap()

    data = TrainingData.ingested(ingested.path, transform_graph.path, load_spec_text(spec_yaml))
    settings = from_overrides(HParams, hparams, "hparams")
    # TensorBoard's logs and the training summary are the tensorboard artifact.
    result = run_train(
        data, tensorboard.path, settings, model_dir=model.path, scores_path=eval_scores.path
    )
    model.metadata["framework"] = "tensorflow"
    model.metadata["signatures"] = ["serving_default", "serve_tf_examples"]
    train_metrics.log_metric("eval_auc", result.eval_auc)
    train_metrics.log_metric("epochs_run", result.epochs_run)
    if result.baseline_eval_auc is not None:  # evaluate reports the model's AUC beside it
        train_metrics.log_metric("baseline_eval_auc", result.baseline_eval_auc)
    for key, seconds in result.timings.items():
        train_metrics.log_metric(key, seconds)


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def evaluate(
    model: Input[Model],
    ingested: Input[Dataset],
    train_metrics: Input[Metrics],
    eval_scores: Input[Dataset],
    spec_yaml: str,
    model_name: str,
    model_repository: str,
    registry: str,
    gate: dict,
    eval_metrics: Output[Metrics],
    classification: Output[ClassificationMetrics],
    report: Output[HTML],
    evaluation: Output[Artifact],
) -> bool:
    """Measures the candidate on the eval split, slices the metrics, and gates.

    The candidate's scores come from the train step (``eval_scores``: the eval split through
    the exported model), so this step loads TensorFlow only to score production or measure
    retrieval. The model to beat is whatever the registry says is production when this step
    runs; ``gate`` holds the thresholds that differ from :class:`GateConfig`'s defaults.

    Returns:
        Whether the gate promotes the model. A single ``bool`` output rather than a named one,
        because kfp.local's condition evaluator resolves only a task's single ``Output``.
    """
    import json

    from skewless.config import from_overrides
    from skewless.contract.spec import load_spec_text
    from skewless.evaluation.candidate import evaluate_candidate
    from skewless.evaluation.evaluate import GateConfig
    from skewless.runtime import freeze_heap

    freeze_heap()

    outcome = evaluate_candidate(
        model.path,
        ingested.path,
        load_spec_text(spec_yaml),
        model_name=model_name,
        repository=model_repository,
        registry=registry,
        report_path=report.path,
        evaluation_path=evaluation.path,
        gate_config=from_overrides(GateConfig, gate, "gate"),
        baseline_auc=train_metrics.metadata.get("baseline_eval_auc"),
        scores_path=eval_scores.path,
    )
    result = outcome.evaluation
    for key, value in result.metrics.items():
        eval_metrics.log_metric(key, value)
    roc = result.roc
    classification.log_roc_curve(roc["fpr"], roc["tpr"], roc["thresholds"])
    classification.log_confusion_matrix(["0", "1"], result.confusion_matrix)
    evaluation.metadata["promote"] = result.gate["promote"]
    evaluation.metadata["compared_with_version"] = outcome.compared_with_version
    evaluation.metadata["reasons"] = json.dumps(result.gate["reasons"])
    return bool(result.gate["promote"])


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def register(
    model: Input[Model],
    evaluation: Input[Artifact],
    ingested: Input[Dataset],
    model_name: str,
    model_repository: str,
    registry: str,
    run_id: str,
) -> int:
    """Registers the candidate as the next version (promoted or not); returns its number."""
    import json
    from pathlib import Path

    from skewless.data.folder import IngestedFolder
    from skewless.rollout.deploy import register_version
    from skewless.runtime import freeze_heap

    freeze_heap()

    return register_version(
        model.path,
        model.uri,
        model_repository,
        model_name,
        registry=registry,
        evaluation=json.loads(Path(evaluation.path).read_text()),
        stats_path=IngestedFolder(ingested.path).stats,
        run_id=run_id,
    )


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def deploy(
    model_name: str,
    model_repository: str,
    registry: str,
    version: int,
    run_id: str,
    canary_percent: int,
    deploy_target: str,
    kserve_namespace: str,
    kserve_mode: str,
    kserve_runtime: str,
    feature_repo: str,
) -> str:
    """Puts the gate-approved version into service (production, or a canary beside it).

    Returns the deployment as JSON: role, version, canary share and artifact. On KServe the
    InferenceService serves by id from ``feature_repo`` (when given).
    """
    import json

    from skewless.rollout.deploy import deploy_version
    from skewless.runtime import freeze_heap

    freeze_heap()

    return json.dumps(
        deploy_version(
            model_repository,
            model_name,
            version,
            run_id,
            canary_percent,
            registry=registry,
            target=deploy_target,
            namespace=kserve_namespace,
            mode=kserve_mode,
            feature_store=feature_repo,
            runtime=kserve_runtime,
        )
    )
