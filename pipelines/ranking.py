"""The ranking pipeline: ingest -> materialize -> transform -> train -> evaluate -> register ->
(gate) -> deploy. Materialize writes the feature store (Feast) that serving reads by id.

The deploy step makes a passing model production, or (when one already serves) a canary taking
``canary_percent`` of requests until ``skewless promote``.

One typed factory, compiled by ``skewless compile`` to ``pipelines/ranking_pipeline.yaml``
(committed; a test recompiles and compares). The hyperparameters and the gate thresholds each
travel whole, as one dict parameter holding what differs from the defaults of
:class:`skewless.model.train.HParams` and :class:`skewless.evaluation.evaluate.GateConfig`
(:mod:`skewless.config` rebuilds them), so a new one is a field of one dataclass and nothing else.
No ``from __future__ import annotations``: KFP reads the parameter annotations as live types.
"""

from pathlib import Path
from typing import NamedTuple

from kfp import compiler, dsl, kubernetes
from kfp.dsl import Artifact, Dataset, Model, PipelineTask

from skewless.components.ranking import (
    deploy,
    evaluate,
    ingest,
    materialize,
    register,
    train,
    transform,
)
from skewless.data.storage import MINIO_SECRET, MINIO_SECRET_ENV

PIPELINE_NAME = "skewless-ranking"
COMPILED_PATH = Path(__file__).with_name("ranking_pipeline.yaml")


class RunOutputs(NamedTuple):
    """What a run hands back: kfp.local returns these from the pipeline call, a cluster records
    them as the run's outputs. ``skewless run`` summarizes them without knowing where a runner
    keeps its artifacts."""

    ingested: Dataset  # the clean splits, quarantine, statistics, ingestion's summary
    feature_summary: Artifact  # the feature store materialize wrote, and its check
    model: Model  # the SavedModel train exported
    tensorboard: Artifact  # training's logs and summary
    evaluation: Artifact  # metrics, retrieval's recall, the gate's decision


def _reads_object_store(task: PipelineTask) -> None:
    """Gives a step that reads object-store URIs KFP's MinIO credentials, from KFP's own Secret.

    Ingest reads the data, evaluate downloads the production model, deploy checksums the
    artifact before it serves. kfp.local ignores this (its steps read local paths).
    """
    kubernetes.use_secret_as_env(
        task, secret_name=MINIO_SECRET, secret_key_to_env=dict(MINIO_SECRET_ENV)
    )


@dsl.pipeline(
    name=PIPELINE_NAME,
    description="Validated ingestion, TFT on Beam, Keras ranking model, gated promotion.",
)
def ranking_pipeline(
    data_uri: str,
    spec_yaml: str = "",
    max_quarantine_fraction: float = 0.05,
    beam_args: str = "",
    hparams: dict = {},  # noqa: B006 - KFP reads the default; it is never mutated
    gate: dict = {},  # noqa: B006
    model_name: str = "ranking",
    model_repository: str = "",
    canary_percent: int = 10,
    registry: str = "",
    deploy_target: str = "local",
    kserve_namespace: str = "kubeflow",
    kserve_mode: str = "Standard",
    kserve_runtime: str = "skewless",
    feature_repo: str = "",
    feature_online_store: str = "",
) -> RunOutputs:
    """Trains, evaluates and (if the gate passes) deploys a ranking model.

    Args:
        data_uri: Raw CSV or Parquet file: a local path (kfp.local), or on a cluster an object-store
            URI such as ``minio://mlpipeline/data/interactions.csv`` (KFP's own MinIO), ``s3://``
            or ``gs://``.
        spec_yaml: Feature spec as YAML text; empty means the spec shipped for the default data.
        max_quarantine_fraction: Ingestion fails above this share of quarantined rows.
        beam_args: Beam pipeline options for TFT analysis, space-separated.
        hparams: Hyperparameters that differ from HParams' defaults, e.g. ``{"epochs": 5}``.
        gate: Gate thresholds that differ from GateConfig's defaults, e.g. ``{"min_auc": 0.7}``.
        model_name: Name under which the model is deployed.
        model_repository: Model repository root the deploy step publishes into (its registry,
            registry.db, lives there too).
        canary_percent: Share of requests (0-100) a passing model takes beside production
            until it is promoted; 0 (or no production yet) makes it production at once.
        registry: Kubeflow Model Registry URL; empty means the SQLite registry beside
            model_repository (the local default).
        deploy_target: "local" (registry only; local servers follow it) or "kserve" (also
            create/patch the InferenceService and wait for Ready).
        kserve_namespace: Namespace of the InferenceService.
        kserve_mode: KServe deployment mode, "Standard" or "Knative".
        kserve_runtime: What serves a new InferenceService: "skewless" (our server) or
            "tf-serving" (KServe's TF Serving runtime, on a layout the deploy step writes; no
            serving by id). An existing InferenceService keeps its runtime.
        feature_repo: Feature store (Feast repository) the materialize step writes: offline
            tables, feature views and the online store that ``skewless serve --feature-store``
            reads: a folder, or on a cluster a ``minio://`` folder; empty skips it
            (docs/feature-store.md). With ``deploy_target="kserve"`` the InferenceService
            serves by id from it.
        feature_online_store: "" for SQLite inside the repository, or ``redis://HOST:PORT`` (a
            cluster's; a repository in the object store needs it).

    Returns:
        The artifacts a run is summarized from (:data:`RunOutputs`).
    """
    ingest_task = ingest(
        data_uri=data_uri, spec_yaml=spec_yaml, max_quarantine_fraction=max_quarantine_fraction
    )
    _reads_object_store(ingest_task)
    materialize_task = materialize(
        ingested=ingest_task.outputs["ingested"],
        spec_yaml=spec_yaml,
        feature_repo=feature_repo,
        feature_online_store=feature_online_store,
    )
    _reads_object_store(materialize_task)
    transform_task = transform(
        ingested=ingest_task.outputs["ingested"], spec_yaml=spec_yaml, beam_args=beam_args
    )
    train_task = train(
        ingested=ingest_task.outputs["ingested"],
        transform_graph=transform_task.outputs["transform_graph"],
        spec_yaml=spec_yaml,
        hparams=hparams,
    ).after(materialize_task)
    # Where the model's versions live: evaluate reads production there, register and deploy write.
    versions = {
        "model_name": model_name,
        "model_repository": model_repository,
        "registry": registry,
    }
    evaluate_task = evaluate(
        model=train_task.outputs["model"],
        ingested=ingest_task.outputs["ingested"],
        train_metrics=train_task.outputs["train_metrics"],
        eval_scores=train_task.outputs["eval_scores"],
        spec_yaml=spec_yaml,
        gate=gate,
        **versions,
    )
    _reads_object_store(evaluate_task)
    register_task = register(
        model=train_task.outputs["model"],
        evaluation=evaluate_task.outputs["evaluation"],
        ingested=ingest_task.outputs["ingested"],
        run_id=dsl.PIPELINE_JOB_NAME_PLACEHOLDER,
        **versions,
    )
    with dsl.If(evaluate_task.outputs["Output"] == True, name="gate-passed"):  # noqa: E712
        deploy_task = deploy(
            **versions,
            version=register_task.output,
            run_id=dsl.PIPELINE_JOB_NAME_PLACEHOLDER,
            canary_percent=canary_percent,
            deploy_target=deploy_target,
            kserve_namespace=kserve_namespace,
            kserve_mode=kserve_mode,
            kserve_runtime=kserve_runtime,
            # The repository materialize wrote ("" when it skipped): never one it did not write.
            feature_repo=materialize_task.outputs["Output"],
        )
        _reads_object_store(deploy_task)
    return RunOutputs(
        ingested=ingest_task.outputs["ingested"],
        feature_summary=materialize_task.outputs["feature_summary"],
        model=train_task.outputs["model"],
        tensorboard=train_task.outputs["tensorboard"],
        evaluation=evaluate_task.outputs["evaluation"],
    )


def compile_pipeline(path: str | Path = COMPILED_PATH) -> Path:
    """Compiles :func:`ranking_pipeline` to YAML at ``path``."""
    compiler.Compiler().compile(ranking_pipeline, str(path))
    return Path(path)
